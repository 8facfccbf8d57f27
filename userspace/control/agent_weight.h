#pragma once

#include "bpf/scoreboard.h"

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace sockdispatch {

// What a host tells the balancer in front of it (docs/fleet.md, "The weight"): take new
// connections at a weight, take none because it is leaving, or none because nothing serves.
enum class HostState { up, drain, down };

struct HostAnswer {
  HostState state = HostState::down;
  uint32_t weightPercent = 0; // 0..100; meaningful when up
  std::string reason;         // why down, for the balancer's log ("no live worker")
};

// One worker as the weight sees it.
struct WorkerLoad {
  bool live = false;  // serving: running (or full) with a process, not drained by tune
  bool stuck = false; // live, but its process is stopped or one handler call has run too long
  uint64_t load = 0;  // open + queued connections
};

// The host as the weight sees it.
struct HostLoad {
  bool leaving = false;  // stopping, or inside a graceful stop's drain grace
  uint32_t capacity = 0; // open + queued connections that fill a worker (0: not counted)
  uint32_t expected = 0; // workers the host means to run (live, starting, respawning, drained)
  std::vector<WorkerLoad> workers;
};

// The answer for `host`:
//   leaving                         drain
//   no worker live and not stuck    down
//   otherwise                       up, weight = 100 * sum(free) / expected, where a live worker
//                                   that is not stuck has free = 1 - min(load, capacity) /
//                                   capacity (1 without a capacity), any other has 0; rounded
//                                   to the nearest percent, at least 1 while some worker is
//                                   free, 0 when every live worker is stuck.
HostAnswer hostAnswer(const HostLoad &host);

// The answer in HAProxy's agent-check syntax, one line: "up ready 60%\n" ("ready" undoes a
// drain the agent itself asked for earlier: only the agent may revert its own state),
// "drain\n", "down#no live worker\n".
std::string agentLine(const HostAnswer &answer);

// keepalived's MISC_CHECK misc_dynamic exit status: 2 + weight while up (2..102), 2 (weight
// 0: no new connections, the established ones stay) while draining, 1 when down.
int keepalivedStatus(const HostAnswer &answer);

// A handler call longer than this marks its worker stuck.
inline constexpr uint64_t kStuckHandlerNs = 1'000'000'000;

// The host's load from a scoreboard read: `config` (stopping, leaving, agent_capacity) and the
// slots; `nowNs` is CLOCK_MONOTONIC when they were read; `stopped` says whether a process is
// stopped (SIGSTOP, a debugger).
HostLoad hostLoadFrom(const sd_config &config, const std::vector<SlotSnapshot> &slots,
                      uint64_t nowNs, const std::function<bool(pid_t)> &stopped);

// Whether process `pid` is stopped ('T' or 't' in /proc/PID/stat). False when it cannot be
// read (it exited: the master's reaping says so).
bool processStopped(pid_t pid);

} // namespace sockdispatch
