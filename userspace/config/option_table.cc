#include "config/option_table.h"

#include "bpf/names.h"
#include "core/address.h"
#include "process/exec_worker_kind.h"
#include "process/privileges.h"
#include "sockdispatch/server.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace sockdispatch {

namespace {

// `field` is a pointer to an AttachOptions member, or a generic lambda `[](auto &o) -> auto &`
// for a nested one (`o.limits.maxBodyBytes`): std::invoke reaches the setting either way.
template <typename Field> auto copier(Field field) {
  return [field](const AttachOptions &from, AttachOptions &to) {
    std::invoke(field, to) = std::invoke(field, from);
  };
}

OptionSpec row(std::string_view key, std::string_view names, OptionType type,
               std::string_view help) {
  OptionSpec spec;
  spec.key = key;
  spec.names = names;
  spec.type = type;
  spec.help = help;
  return spec;
}

template <typename Field>
OptionSpec integer(std::string_view key, std::string_view names, Field field, IntRange range,
                   std::string_view help) {
  OptionSpec spec = row(key, names, OptionType::integer, help);
  spec.integers = range;
  spec.setInteger = [field](AttachOptions &options, int64_t value) {
    auto &target = std::invoke(field, options);
    target = static_cast<std::remove_reference_t<decltype(target)>>(value);
  };
  spec.show = [field](const AttachOptions &options) {
    return std::to_string(std::invoke(field, options));
  };
  spec.copy = copier(field);
  return spec;
}

template <typename Field>
OptionSpec seconds(std::string_view key, std::string_view names, Field field, IntRange range,
                   std::string_view help) {
  OptionSpec spec = row(key, names, OptionType::seconds, help);
  spec.integers = range;
  spec.setInteger = [field](AttachOptions &options, int64_t value) {
    std::invoke(field, options) = std::chrono::seconds(value);
  };
  spec.show = [field](const AttachOptions &options) {
    return std::to_string(std::invoke(field, options).count());
  };
  spec.copy = copier(field);
  return spec;
}

template <typename Field>
OptionSpec timeout(std::string_view key, std::string_view names, Field field, std::string_view help,
                   SecondsRange range = kTimeoutSecondsRange) {
  OptionSpec spec = row(key, names, OptionType::timeout, help);
  spec.fractional = range;
  spec.setSeconds = [field](AttachOptions &options, double value) {
    std::invoke(field, options) = std::chrono::milliseconds(std::llround(value * 1000.0));
  };
  spec.show = [field](const AttachOptions &options) {
    return fmt::format("{}", static_cast<double>(std::invoke(field, options).count()) / 1000.0);
  };
  spec.copy = copier(field);
  return spec;
}

template <typename Field>
OptionSpec boolean(std::string_view key, std::string_view names, Field field,
                   std::string_view help) {
  OptionSpec spec = row(key, names, OptionType::boolean, help);
  spec.setBoolean = [field](AttachOptions &options, bool value) {
    std::invoke(field, options) = value;
  };
  spec.showDefault = false;
  spec.copy = copier(field);
  return spec;
}

// A string setting; `check` returns the problem with a value, or nullopt.
template <typename Field, typename Check>
OptionSpec text(std::string_view key, std::string_view names, std::string_view valueName,
                Field field, Check check, std::string_view help) {
  OptionSpec spec = row(key, names, OptionType::string, help);
  spec.valueName = valueName;
  spec.setText = [field, check](AttachOptions &options,
                                const std::string &value) -> std::optional<std::string> {
    if (auto problem = check(value)) {
      return problem;
    }
    std::invoke(field, options) = value;
    return std::nullopt;
  };
  spec.show = [field](const AttachOptions &options) { return std::invoke(field, options); };
  spec.copy = copier(field);
  return spec;
}

std::optional<std::string> numericAddress(const std::string &value) {
  if (parseAddress(value, 0)) {
    return std::nullopt;
  }
  return "'" + value + "' is not a numeric IPv4 or IPv6 address";
}

std::optional<std::string> existingDirectory(const std::string &value) {
  struct stat info {};
  if (::stat(value.c_str(), &info) != 0) {
    return fmt::format("directory '{}': {}", value, std::strerror(errno));
  }
  if (!S_ISDIR(info.st_mode)) {
    return fmt::format("'{}' is not a directory", value);
  }
  return std::nullopt;
}

OptionSpec commandOption() {
  OptionSpec spec = row("command", "command", OptionType::words,
                        "After --: a program to run as each worker, given its listener as fd 3 "
                        "(LISTEN_FDS=1), e.g. -- gunicorn --bind fd://3 app:app");
  spec.setWords = [](AttachOptions &options, std::vector<std::string> words) {
    options.command = std::move(words);
  };
  spec.showDefault = false;
  spec.copy = copier(&AttachOptions::command);
  return spec;
}

OptionSpec stopSignalOption() {
  OptionSpec spec = row("stop-signal", "--stop-signal", OptionType::choice,
                        "With a COMMAND: the signal that asks a worker to stop gracefully "
                        "(SIGKILL follows after --shutdown-timeout)");
  spec.choices = stopSignalNames();
  spec.setText = [](AttachOptions &options,
                    const std::string &value) -> std::optional<std::string> {
    auto signo = stopSignalFromName(value);
    if (!signo) {
      std::vector<std::string> names = stopSignalNames();
      std::string last = names.back();
      names.pop_back();
      return fmt::format("'{}' is not a stop signal ({} or {})", value, fmt::join(names, ", "),
                         last);
    }
    options.stopSignal = *signo;
    return std::nullopt;
  };
  spec.show = [](const AttachOptions &options) { return stopSignalName(options.stopSignal); };
  spec.copy = copier(&AttachOptions::stopSignal);
  return spec;
}

OptionSpec modeOption() {
  OptionSpec spec = row("mode", "--mode", OptionType::choice,
                        "How connections reach the workers: ebpf (the kernel program chooses), "
                        "line (the master accepts and the workers pass connections down a "
                        "line), auto (ebpf where the program loads, else line, with a warning "
                        "saying why)");
  spec.choices = {"auto", "ebpf", "line"};
  spec.setText = [](AttachOptions &options,
                    const std::string &value) -> std::optional<std::string> {
    auto mode = parseDispatchMode(value);
    if (!mode) {
      return fmt::format("'{}' is not a mode (auto, ebpf or line)", value);
    }
    options.mode = *mode;
    return std::nullopt;
  };
  spec.show = [](const AttachOptions &options) -> std::string {
    switch (options.mode) {
    case DispatchModeOption::kEbpf: return "ebpf";
    case DispatchModeOption::kLine: return "line";
    case DispatchModeOption::kAuto: break;
    }
    return "auto";
  };
  spec.copy = copier(&AttachOptions::mode);
  return spec;
}

OptionSpec policyOption() {
  OptionSpec spec = row("policy", "--policy", OptionType::choice,
                        "Balancing policy to start with (sockdispatch tune changes it live)");
  spec.choices = {"skip_load", "least_conn", "p2c", "round_robin", "weighted", "hash"};
  spec.setText = [](AttachOptions &options,
                    const std::string &value) -> std::optional<std::string> {
    auto policy = policyFromName(value);
    if (!policy) {
      return fmt::format("'{}' is not a policy ({})", value, policyNames());
    }
    options.policy = *policy;
    return std::nullopt;
  };
  spec.show = [](const AttachOptions &options) { return std::string(policyName(options.policy)); };
  spec.copy = copier(&AttachOptions::policy);
  return spec;
}

// Binds a numeric row to the library field `get` reads: the value is checked against the
// row's range and set as the flag's would be. `unset`: a value that means "not given" (the
// dynamic pool's 0), left at AttachOptions' default unchecked.
template <typename Get>
void libraryInteger(OptionSpec &spec, std::string_view field, Get get,
                    std::optional<int64_t> unset = std::nullopt) {
  spec.serverOptionsField = field;
  spec.fromLibrary = [field, range = spec.integers, set = spec.setInteger, get,
                      unset](const ServerOptions &from,
                             AttachOptions &to) -> std::optional<std::string> {
    auto raw = get(from);
    if (std::cmp_greater(raw, std::numeric_limits<int64_t>::max())) {
      return fmt::format("{} {} is outside {}..{}", field, raw, range.min, range.max);
    }
    auto value = static_cast<int64_t>(raw);
    if (unset && value == *unset) {
      return std::nullopt;
    }
    if (!range.contains(value)) {
      return fmt::format("{} {} is outside {}..{}", field, value, range.min, range.max);
    }
    set(to, value);
    return std::nullopt;
  };
}

// Binds a timeout row to a library field in milliseconds.
template <typename Get> void libraryTimeout(OptionSpec &spec, std::string_view field, Get get) {
  spec.serverOptionsField = field;
  spec.fromLibrary = [field, range = spec.fractional, set = spec.setSeconds,
                      get](const ServerOptions &from,
                           AttachOptions &to) -> std::optional<std::string> {
    std::chrono::milliseconds value = get(from);
    double seconds = static_cast<double>(value.count()) / 1000.0;
    if (!range.contains(seconds)) {
      return fmt::format("{} {} ms is outside {}..{} s", field, value.count(), range.min,
                         range.max);
    }
    set(to, seconds);
    return std::nullopt;
  };
}

// Binds a string or choice row to a library field `get` turns into the text a flag would
// carry.
template <typename Get> void libraryText(OptionSpec &spec, std::string_view field, Get get) {
  spec.serverOptionsField = field;
  spec.fromLibrary = [field, set = spec.setText,
                      get](const ServerOptions &from,
                           AttachOptions &to) -> std::optional<std::string> {
    if (auto problem = set(to, get(from))) {
      return fmt::format("{}: {}", field, *problem);
    }
    return std::nullopt;
  };
}

template <typename Get> void libraryBoolean(OptionSpec &spec, std::string_view field, Get get) {
  spec.serverOptionsField = field;
  spec.fromLibrary = [set = spec.setBoolean, get](const ServerOptions &from,
                                                  AttachOptions &to) -> std::optional<std::string> {
    set(to, get(from));
    return std::nullopt;
  };
}

std::string modeName(DispatchMode mode) {
  switch (mode) {
  case DispatchMode::ebpf: return "ebpf";
  case DispatchMode::line: return "line";
  case DispatchMode::automatic: break;
  }
  return "auto";
}

std::string libraryPolicyName(Policy policy) {
  switch (policy) {
  case Policy::skip_load: return "skip_load";
  case Policy::p2c: return "p2c";
  case Policy::round_robin: return "round_robin";
  case Policy::weighted: return "weighted";
  case Policy::hash: return "hash";
  case Policy::least_conn: break;
  }
  return "least_conn";
}

// The library's fields, each bound to its row by key.
void bindLibrary(std::vector<OptionSpec> &table) {
  auto rowOf = [&table](std::string_view key) -> OptionSpec & {
    auto found = std::find_if(table.begin(), table.end(),
                              [key](const OptionSpec &spec) { return spec.key == key; });
    if (found == table.end()) {
      throw std::logic_error("no option row " + std::string(key));
    }
    return *found;
  };
  using O = const ServerOptions &;
  libraryInteger(rowOf("port"), "port", [](O o) { return o.port; });
  libraryText(rowOf("bind"), "bind", [](O o) { return o.bind; });
  libraryInteger(rowOf("workers"), "workers", [](O o) { return o.workers; });
  libraryInteger(
      rowOf("min-workers"), "minWorkers", [](O o) { return o.minWorkers; }, 0);
  libraryInteger(
      rowOf("max-workers"), "maxWorkers", [](O o) { return o.maxWorkers; }, 0);
  libraryInteger(rowOf("backlog"), "backlog", [](O o) { return o.backlog; });
  libraryText(rowOf("mode"), "mode", [](O o) { return modeName(o.mode); });
  libraryText(rowOf("policy"), "policy", [](O o) { return libraryPolicyName(o.policy); });
  libraryInteger(rowOf("max-conns"), "maxConnections", [](O o) { return o.maxConnections; });
  libraryInteger(rowOf("shutdown-timeout"), "shutdownTimeout",
                 [](O o) { return o.shutdownTimeout.count(); });
  libraryInteger(rowOf("defer-accept"), "deferAccept", [](O o) { return o.deferAccept.count(); });
  libraryInteger(rowOf("max-target-bytes"), "limits.maxTargetBytes",
                 [](O o) { return o.limits.maxTargetBytes; });
  libraryInteger(rowOf("max-header-bytes"), "limits.maxHeaderBytes",
                 [](O o) { return o.limits.maxHeaderBytes; });
  libraryInteger(rowOf("max-header-fields"), "limits.maxHeaderFields",
                 [](O o) { return o.limits.maxHeaderFields; });
  libraryInteger(rowOf("max-body-bytes"), "limits.maxBodyBytes",
                 [](O o) { return o.limits.maxBodyBytes; });
  libraryInteger(rowOf("max-keepalive-requests"), "limits.maxRequestsPerConnection",
                 [](O o) { return o.limits.maxRequestsPerConnection; });
  libraryTimeout(rowOf("header-timeout"), "limits.headerTimeout",
                 [](O o) { return o.limits.headerTimeout; });
  libraryTimeout(rowOf("body-timeout"), "limits.bodyTimeout",
                 [](O o) { return o.limits.bodyTimeout; });
  libraryTimeout(rowOf("idle-timeout"), "limits.idleTimeout",
                 [](O o) { return o.limits.idleTimeout; });
  libraryTimeout(rowOf("write-timeout"), "limits.writeTimeout",
                 [](O o) { return o.limits.writeTimeout; });
  libraryBoolean(rowOf("verbose"), "verbose", [](O o) { return o.verbose; });
}

std::vector<OptionSpec> makeTable() {
  std::vector<OptionSpec> table{
      integer("port", "port", &AttachOptions::port, kPortRange,
              "TCP port to serve (0: pick an ephemeral port); required unless the --config "
              "file sets 'port'"),
      integer("workers", "--workers,-w", &AttachOptions::workers, kWorkersRange,
              "Worker processes (default: CPU count)"),
      integer("min-workers", "--min-workers", &AttachOptions::minWorkers, kWorkersRange,
              "Dynamic pool: fewest workers (with --max-workers; not with --workers)"),
      integer("max-workers", "--max-workers", &AttachOptions::maxWorkers, kWorkersRange,
              "Dynamic pool: most workers, grown while they are busy"),
      integer("pool-busy-conns", "--pool-busy-conns", &AttachOptions::poolBusyConnections,
              kPoolBusyConnsRange,
              "Dynamic pool: grow while workers hold more open connections each"),
      integer("pool-idle-seconds", "--pool-idle-seconds", &AttachOptions::poolIdleSeconds,
              kPoolIdleSecondsRange,
              "Dynamic pool: shrink after this long below a quarter of --pool-busy-conns"),
      text("bind", "--bind,-b", "ADDRESS", &AttachOptions::bind, numericAddress,
           "Numeric IPv4 or IPv6 address to bind"),
      integer("backlog", "--backlog", &AttachOptions::backlog, kBacklogRange,
              "listen() backlog of each worker's socket"),
      modeOption(),
      policyOption(),
      integer("max-conns", "--max-conns", &AttachOptions::maxConnections, kMaxConnsRange,
              "Open connections per worker at which it takes no more (0: no limit); a full "
              "worker is chosen by no policy, and when all are, connections wait in the "
              "kernel's backlog"),
      integer("line-batch", "--line-batch", &AttachOptions::lineBatch, kLineBatchRange,
              "Line mode: most connections the master hands to the line in one message"),
      text("root", "--root,-r", "DIR", &AttachOptions::root, existingDirectory,
           "Serve static files from this directory (default: the built-in page)"),
      seconds("defer-accept", "--defer-accept", &AttachOptions::deferAccept, kDeferAcceptRange,
              "Built-in workers: accept a connection once its request begins to arrive, or "
              "after this many seconds without one (TCP_DEFER_ACCEPT; 0: at the handshake). "
              "Not with TCP health checks that reset: docs/design/deferred-accept.md"),
      seconds("shutdown-timeout", "--shutdown-timeout", &AttachOptions::shutdownTimeout,
              kShutdownTimeoutRange, "Seconds workers get to finish in-flight requests on stop"),
      seconds("orphan-timeout", "--orphan-timeout", &AttachOptions::orphanTimeout,
              kOrphanTimeoutRange,
              "Seconds workers whose master died keep serving, for a restarted master to take "
              "them over, before they drain and exit (0: they leave with the master)"),
      integer(
          "max-target-bytes", "--max-target-bytes",
          [](auto &o) -> auto & { return o.limits.maxTargetBytes; }, kMaxTargetBytesRange,
          "Longest request target; longer is answered 414"),
      integer(
          "max-header-bytes", "--max-header-bytes",
          [](auto &o) -> auto & { return o.limits.maxHeaderBytes; }, kMaxHeaderBytesRange,
          "Largest request line plus header fields; larger is answered 431"),
      integer(
          "max-header-fields", "--max-header-fields",
          [](auto &o) -> auto & { return o.limits.maxHeaderFields; }, kMaxHeaderFieldsRange,
          "Most header fields in a request; more are answered 431"),
      integer(
          "max-body-bytes", "--max-body-bytes",
          [](auto &o) -> auto & { return o.limits.maxBodyBytes; }, kMaxBodyBytesRange,
          "Largest request body; larger is answered 413"),
      integer(
          "max-pending-output", "--max-pending-output",
          [](auto &o) -> auto & { return o.limits.maxPendingOutput; }, kMaxPendingOutputRange,
          "Answer bytes a connection may have unsent before its requests stop being read"),
      integer(
          "max-keepalive-requests", "--max-keepalive-requests",
          [](auto &o) -> auto & { return o.limits.maxRequestsPerConnection; },
          kMaxKeepaliveRequestsRange,
          "Requests per connection; the last is answered with Connection: close (0: no limit)"),
      timeout(
          "header-timeout", "--header-timeout",
          [](auto &o) -> auto & { return o.limits.headerTimeout; },
          "Seconds from a request's first byte to the end of its header fields (408)"),
      timeout(
          "body-timeout", "--body-timeout", [](auto &o) -> auto & { return o.limits.bodyTimeout; },
          "Seconds from the end of the header fields to the end of the body (408)"),
      timeout(
          "idle-timeout", "--idle-timeout", [](auto &o) -> auto & { return o.limits.idleTimeout; },
          "Seconds a keep-alive connection may wait for its next request"),
      timeout(
          "write-timeout", "--write-timeout",
          [](auto &o) -> auto & { return o.limits.writeTimeout; },
          "Seconds without progress writing answers before the connection is closed"),
      text("user", "--user,-u", "NAME", &AttachOptions::user, checkUser,
           "Run the workers as this user, with no capabilities (the master stays root)"),
      boolean("dotfiles", "--dotfiles", &AttachOptions::dotfiles,
              "With --root: serve files whose names start with a dot (.git, .env, ...); "
              "hidden (404) by default"),
      timeout(
          "file-cache-valid", "--file-cache-valid", &AttachOptions::fileCacheValid,
          "With --root: seconds a small file kept in memory is answered without looking at "
          "the file again (0: a stat of its path on every request, so a change is seen at once)",
          kFileCacheValidRange),
      boolean("verbose", "--verbose,-v", &AttachOptions::verbose,
              "Debug logging (libbpf's log included)"),
      integer("status-port", "--status-port", &AttachOptions::statusPort, kPortRange,
              "Serve the status page (/), /status.json and /metrics on this port from the "
              "master (0: none); read-only"),
      text("status-bind", "--status-bind", "ADDRESS", &AttachOptions::statusBind, numericAddress,
           "Numeric address of the status port (127.0.0.1: this host only)"),
      integer("agent-port", "--agent-port", &AttachOptions::agentPort, kAgentPortRange,
              "A TCP port on which the master answers a balancer's agent check (HAProxy "
              "agent-check) with this host's state and weight, one line, then closes (0: "
              "none; docs/fleet.md)"),
      text("agent-bind", "--agent-bind", "ADDRESS", &AttachOptions::agentBind, numericAddress,
           "Numeric IPv4 or IPv6 address the --agent-port binds (the balancer must reach it)"),
      integer("agent-capacity", "--agent-capacity", &AttachOptions::agentCapacity,
              kAgentCapacityRange,
              "Open and queued connections per worker that count as a full worker in the "
              "agent's weight (0: --max-conns; both 0: live workers only)"),
      integer("drain-grace", "--drain-grace", &AttachOptions::drainGraceSeconds, kDrainGraceRange,
              "Seconds a graceful stop (detach, SIGQUIT) tells the balancer 'drain' while still "
              "serving, before the workers stop taking connections (default: 4 with "
              "--agent-port, else 0)"),
      commandOption(),
      stopSignalOption(),
      boolean("fd-only", "--fd-only", &AttachOptions::fdOnly,
              "With a COMMAND: pass the listener as fd 3 without LISTEN_FDS/LISTEN_PID, for a "
              "program given the fd by an argument that would also read LISTEN_FDS (gunicorn "
              "--bind fd://3)"),
  };
  for (OptionSpec &spec : table) {
    // No default worth printing: required (port), the machine's CPU count (workers, said in
    // the help), or 0 for "no dynamic pool".
    if (spec.key == "port" || spec.key == "workers" || spec.key == "min-workers" ||
        spec.key == "max-workers" || spec.key == "drain-grace") {
      spec.showDefault = false;
    }
  }
  bindLibrary(table);
  return table;
}

} // namespace

std::string_view OptionSpec::flag() const {
  return names.substr(0, names.find(','));
}

std::string_view OptionSpec::typeName() const {
  switch (type) {
  case OptionType::integer: return "integer";
  case OptionType::seconds: return "integer (seconds)";
  case OptionType::timeout: return "number (seconds)";
  case OptionType::boolean: return "boolean";
  case OptionType::words: return "array of strings";
  case OptionType::string:
  case OptionType::choice: break;
  }
  return "string";
}

const std::vector<OptionSpec> &optionTable() {
  static const std::vector<OptionSpec> table = makeTable();
  return table;
}

const OptionSpec *findOption(std::string_view key) {
  const auto &table = optionTable();
  auto found = std::find_if(table.begin(), table.end(),
                            [key](const OptionSpec &spec) { return spec.key == key; });
  return found == table.end() ? nullptr : &*found;
}

std::optional<std::string> applyLibraryOptions(const ServerOptions &from, AttachOptions &to) {
  AttachOptions staged = to; // nothing is half-applied
  for (const OptionSpec &spec : optionTable()) {
    if (spec.fromLibrary) {
      if (auto problem = spec.fromLibrary(from, staged)) {
        return problem;
      }
    }
  }
  to = std::move(staged);
  return std::nullopt;
}

} // namespace sockdispatch
