#pragma once

#include "core/result.h"
#include "http/http_message.h"
#include "sockdispatch/abi.h"

#include <chrono>
#include <csignal>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sockdispatch {

// Process exit codes the CLI promises to scripts.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;      // a runtime failure (bind, BPF load, ...)
inline constexpr int kExitUsage = 2;        // bad flag, value or configuration
inline constexpr int kExitFatalConfig = 78; // a worker that must not be respawned (EX_CONFIG)

// --mode: how connections reach the workers. kAuto: the eBPF program where it loads, else
// the line (with one warning saying why).
enum class DispatchModeOption { kAuto, kEbpf, kLine };

inline std::optional<DispatchModeOption> parseDispatchMode(std::string_view name) {
  if (name == "auto") {
    return DispatchModeOption::kAuto;
  }
  if (name == "ebpf") {
    return DispatchModeOption::kEbpf;
  }
  if (name == "line") {
    return DispatchModeOption::kLine;
  }
  return std::nullopt;
}

struct ServerHooks; // server_hooks.h

// Everything `sockdispatch attach` is told.
struct AttachOptions {
  uint16_t port = 0;
  std::string bind = "0.0.0.0";
  int workers = 1;
  // A dynamic pool when maxWorkers > 0: between minWorkers and maxWorkers workers, grown while
  // the workers hold more than poolBusyConnections open connections each on average, shrunk
  // once they have held fewer than a quarter of that for poolIdleSeconds.
  int minWorkers = 0;
  int maxWorkers = 0;
  int poolBusyConnections = 16;
  int poolIdleSeconds = 10;
  int backlog = 511;
  // Open connections at which a worker takes no more (0: no limit). In line mode a full
  // worker passes new connections on, and when every worker is full the master stops
  // accepting; in eBPF mode a full worker leaves the line (SD_SLOT_FULL) until one closes.
  uint32_t maxConnections = 0;
  DispatchModeOption mode = DispatchModeOption::kAuto;
  // The balancing policy the attachment starts with (enum sd_policy; `tune` changes it live).
  // least_conn by default: docs/design/dispatch.md, "The default policy".
  uint32_t policy = SD_POLICY_LEAST_CONN;
  // Line mode: the most connections the master hands to the line in one message (1: one
  // message per connection; 253: SCM_RIGHTS's limit).
  int lineBatch = 253;
  // Built-in workers: TCP_DEFER_ACCEPT on the listeners, in seconds (0: off, the default). A
  // connection is accepted once its request has begun to arrive (or after this long without
  // one), so accepting it is answering it: docs/design/deferred-accept.md.
  std::chrono::seconds deferAccept{0};
  std::string root; // empty: the built-in page
  std::chrono::seconds shutdownTimeout{10};
  // How long a worker whose master died serves on, waiting for a restarted master to take it
  // over (docs/design/takeover.md), before it drains and exits; 0: it leaves at once.
  std::chrono::seconds orphanTimeout{30};
  HttpLimits limits;
  // Workers run as this user, with no capabilities (empty: as the master's user).
  std::string user;
  bool dotfiles = false; // serve files and directories whose names start with a dot
  // How long a small file's copy in a worker's memory is answered without a stat of its path
  // (0: checked on every request). Like nginx's open_file_cache_valid.
  std::chrono::milliseconds fileCacheValid{0};
  // A program run as each worker (`attach PORT -- COMMAND ARGS...`): it gets its slot's
  // listener as fd 3 by the socket-activation protocol (docs/design/exec.md). Empty: our own
  // workers serve.
  std::vector<std::string> command;
  // The signal that asks a COMMAND worker to stop gracefully (--stop-signal).
  int stopSignal = SIGTERM;
  // With a COMMAND: fd 3 without the LISTEN_FDS variables (--fd-only), for a program told the
  // descriptor by an argument that would also take it from LISTEN_FDS (gunicorn --bind fd://3).
  bool fdOnly = false;
  bool verbose = false;
  // The status page, /status.json and /metrics, served by the master (0: none). Bound at
  // start; a reload keeps the port it has.
  uint16_t statusPort = 0;
  std::string statusBind = "127.0.0.1"; // this host only, unless told otherwise
  // The fleet (docs/fleet.md). A TCP port on which the master answers a balancer's agent
  // check with the host's state and weight (0: none), the address it binds, the open and
  // queued connections per worker that count as a full worker in that weight (0: --max-conns,
  // and when that is 0 too the weight counts live workers only), and how long a graceful stop
  // tells the balancer `drain` while still taking connections, in seconds (-1: not given,
  // kDefaultDrainGrace with an agent port, else none).
  uint16_t agentPort = 0;
  std::string agentBind = "0.0.0.0";
  uint32_t agentCapacity = 0;
  int drainGraceSeconds = -1;
  // Set by the library's Server: makes each worker's handler instead of the built-in choice.
  std::shared_ptr<const ServerHooks> hooks;
  // Set by the command for its built-in workers: what each worker runs last before it serves
  // (its system-call filter, docs/design/sandbox.md). A failure is logged; the worker serves.
  std::function<Result<void>()> confineWorker;
};

// How many workers a generation starts with.
inline int initialWorkers(const AttachOptions &options) {
  return options.maxWorkers > 0 ? options.minWorkers : options.workers;
}

// How long a graceful stop answers `drain` before the workers stop taking connections: the
// --drain-grace, when an agent port tells a balancer so; otherwise none.
// Twice HAProxy's default agent-inter (2 s): every balancer polling at that pace hears `drain`
// at least once before the host stops taking connections.
inline constexpr std::chrono::seconds kDefaultDrainGrace{4};

inline std::chrono::seconds effectiveDrainGrace(const AttachOptions &options) {
  if (options.drainGraceSeconds >= 0) {
    return std::chrono::seconds(options.drainGraceSeconds);
  }
  return options.agentPort != 0 ? kDefaultDrainGrace : std::chrono::seconds(0);
}

// The per-worker capacity the host's weight counts against (sd_config.agent_capacity).
inline uint32_t effectiveAgentCapacity(const AttachOptions &options) {
  return options.agentCapacity != 0 ? options.agentCapacity : options.maxConnections;
}

} // namespace sockdispatch
