// A server built on the public library API (<sockdispatch/server.h>), for the library's
// integration tests. Flags: --workers N --threads N --queue N --shutdown-timeout S
// --hook-log FILE. Routes:
//   GET  /fast             200 "fast" at once (X-Pid: the worker's pid)
//   GET  /slow?ms=N        200 "slow N" after sleeping N ms on the offload pool
//   GET  /then?ms=N        sleeps on the pool, then the loop makes the answer "then N"
//   GET  /block?ms=N       200 "block N" after sleeping N ms in the handler (its worker's
//                          loop is held meanwhile, and its slot is marked busy)
//   GET  /throw            the handler throws (500)
//   GET  /throw-offload    the offloaded work throws (500)
//   POST /echo             the body back
//   GET  /stream?n=N       a streamed body: "piece 0\n" ... "piece N-1\n"
// The hook log gets "start SLOT PID" and "stop SLOT PID" lines from the worker hooks.
#include <sockdispatch/server.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

namespace {

// The number in a query of the form "KEY=N" (0 when the query is not that).
int queryNumber(std::string_view query, std::string_view key) {
  int number = 0;
  if (query.starts_with(key) && query.size() > key.size() && query[key.size()] == '=') {
    std::from_chars(query.data() + key.size() + 1, query.data() + query.size(), number);
  }
  return number;
}

void logHook(const std::string &path, const char *what, const sockdispatch::WorkerInfo &who) {
  if (path.empty()) {
    return;
  }
  std::ofstream(path, std::ios::app) << what << ' ' << who.slot << ' ' << who.pid << '\n';
}

} // namespace

int main(int argc, char **argv) {
  sockdispatch::ServerOptions options;
  options.bind = "127.0.0.1";
  std::string hookLog;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    std::string value = argv[i + 1];
    if (flag == "--workers") {
      options.workers = std::stoi(value);
    } else if (flag == "--threads") {
      options.offloadThreads = std::stoul(value);
    } else if (flag == "--queue") {
      options.offloadQueue = std::stoul(value);
    } else if (flag == "--shutdown-timeout") {
      options.shutdownTimeout = std::chrono::seconds(std::stoi(value));
    } else if (flag == "--hook-log") {
      hookLog = value;
    } else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  sockdispatch::Server server(options);
  server.onWorkerStart([hookLog](const auto &who) { logHook(hookLog, "start", who); });
  server.onWorkerStop([hookLog](const auto &who) { logHook(hookLog, "stop", who); });
  server.route("GET", "/fast", [](sockdispatch::Exchange &exchange) {
    exchange.response().setBody("fast").addHeader("X-Pid", std::to_string(exchange.worker().pid));
  });
  server.route("GET", "/slow", [](sockdispatch::Exchange &exchange) {
    int ms = queryNumber(exchange.request().query(), "ms");
    exchange.offload([ms] {
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
      return sockdispatch::HttpResponse(200, "slow " + std::to_string(ms));
    });
  });
  server.route("GET", "/block", [](sockdispatch::Exchange &exchange) {
    int ms = queryNumber(exchange.request().query(), "ms");
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    exchange.response().setBody("block " + std::to_string(ms));
  });
  server.route("GET", "/then", [](sockdispatch::Exchange &exchange) {
    int ms = queryNumber(exchange.request().query(), "ms");
    exchange.offload(
        [ms] {
          std::this_thread::sleep_for(std::chrono::milliseconds(ms));
          return ms;
        },
        [](int slept) { return sockdispatch::HttpResponse(200, "then " + std::to_string(slept)); });
  });
  server.route("GET", "/throw", [](sockdispatch::Exchange &) -> void {
    throw std::runtime_error("a handler that throws");
  });
  server.route("GET", "/throw-offload", [](sockdispatch::Exchange &exchange) {
    exchange.offload([]() -> sockdispatch::HttpResponse {
      throw std::runtime_error("offloaded work that throws");
    });
  });
  server.route("GET", "/stream", [](sockdispatch::Exchange &exchange) {
    int count = queryNumber(exchange.request().query(), "n");
    exchange.response().setStreamedBody([next = 0, count]() mutable -> std::optional<std::string> {
      if (next == count) {
        return std::nullopt;
      }
      return "piece " + std::to_string(next++) + "\n";
    });
  });
  server.route("POST", "/echo", [](sockdispatch::Exchange &exchange) {
    exchange.response().setBody(std::string(exchange.request().body()));
  });
  return server.run();
}
