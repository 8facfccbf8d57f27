-- wrk script for bench/policy_bench.py: records the latency of every request, as the client
-- saw it, one line per response ("<ms> <worker slot>") in $LATENCY_OUT.<thread number>.
--
-- Run it with one connection per thread (wrk -tN -cN): each thread then has one request in
-- flight at a time, so the time from writing a request (request()) to its response
-- (response()) is that request's latency. wrk's own percentiles correct for coordinated
-- omission (they add synthetic samples for every slow answer), which is a different
-- question; the benchmark reports both.
--
-- Every request asks for `Connection: close`, so each one is a new connection that the
-- balancing policy places.
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } fast_latency_timespec;
int clock_gettime(int clock_id, fast_latency_timespec *tp);
]]

local CLOCK_MONOTONIC = 1
local clock = ffi.new("fast_latency_timespec")
local function nowMs()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
  return tonumber(clock.tv_sec) * 1000.0 + tonumber(clock.tv_nsec) / 1e6
end

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end

local out
local started
local path = "/fast"

function init(args)
  if args[1] then
    path = args[1]
  end
  local prefix = os.getenv("LATENCY_OUT")
  if not prefix then
    error("fast_latency.lua: set LATENCY_OUT to the output file prefix")
  end
  out = assert(io.open(string.format("%s.%d", prefix, thread_number), "w"))
end

function request()
  started = nowMs()
  return wrk.format("GET", path, { ["Connection"] = "close" })
end

function response(status, headers, body)
  local worker = headers["X-Sockdispatch-Worker"] or "-1"
  out:write(string.format("%.4f %s %d\n", nowMs() - started, worker, status))
end
