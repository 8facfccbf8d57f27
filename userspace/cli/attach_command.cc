#include "address.h"
#include "attach.h"
#include "commands.h"
#include "config_file.h"
#include "names.h"
#include "option_ranges.h"
#include "privileges.h"
#include "sockdispatch/abi.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>

namespace sockdispatch::cli {

namespace {

CLI::Validator numericAddress() {
  return CLI::Validator(
      [](std::string &value) -> std::string {
        if (!parseAddress(value, 0)) {
          return "'" + value + "' is not a numeric IPv4 or IPv6 address";
        }
        return {};
      },
      "ADDRESS");
}

// The flag's check, from the range the configuration file checks too.
CLI::Range rangeCheck(const IntRange &range) {
  return CLI::Range(range.min, range.max);
}

int defaultWorkers() {
  long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  return static_cast<int>(std::clamp<long>(cpus, 1, SD_MAX_WORKERS));
}

// A timeout flag in seconds (fractions allowed) written into a millisecond field.
void addTimeoutFlag(CLI::App *cmd, const std::string &name, std::chrono::milliseconds &field,
                    const std::string &help) {
  cmd->add_option_function<double>(
         name,
         [&field](const double &value) {
           field = std::chrono::milliseconds(std::llround(value * 1000.0));
         },
         help)
      ->check(CLI::Range(kTimeoutSecondsRange.min, kTimeoutSecondsRange.max))
      ->default_str(CLI::detail::to_string(static_cast<double>(field.count()) / 1000.0));
}

void addHttpFlags(CLI::App *cmd, HttpLimits &limits) {
  cmd->add_option("--max-target-bytes", limits.maxTargetBytes,
                  "Longest request target; longer is answered 414")
      ->check(rangeCheck(kMaxTargetBytesRange))
      ->capture_default_str();
  cmd->add_option("--max-header-bytes", limits.maxHeaderBytes,
                  "Largest request line plus header fields; larger is answered 431")
      ->check(rangeCheck(kMaxHeaderBytesRange))
      ->capture_default_str();
  cmd->add_option("--max-header-fields", limits.maxHeaderFields,
                  "Most header fields in a request; more are answered 431")
      ->check(rangeCheck(kMaxHeaderFieldsRange))
      ->capture_default_str();
  cmd->add_option("--max-body-bytes", limits.maxBodyBytes,
                  "Largest request body; larger is answered 413")
      ->check(rangeCheck(kMaxBodyBytesRange))
      ->capture_default_str();
  cmd->add_option("--max-pending-output", limits.maxPendingOutput,
                  "Answer bytes a connection may have unsent before its requests stop being read")
      ->check(rangeCheck(kMaxPendingOutputRange))
      ->capture_default_str();
  cmd->add_option("--max-keepalive-requests", limits.maxRequestsPerConnection,
                  "Requests per connection; the last is answered with Connection: close (0: no "
                  "limit)")
      ->check(rangeCheck(kMaxKeepaliveRequestsRange))
      ->capture_default_str();
  addTimeoutFlag(cmd, "--header-timeout", limits.headerTimeout,
                 "Seconds from a request's first byte to the end of its header fields (408)");
  addTimeoutFlag(cmd, "--body-timeout", limits.bodyTimeout,
                 "Seconds from the end of the header fields to the end of the body (408)");
  addTimeoutFlag(cmd, "--idle-timeout", limits.idleTimeout,
                 "Seconds a keep-alive connection may wait for its next request");
  addTimeoutFlag(cmd, "--write-timeout", limits.writeTimeout,
                 "Seconds without progress writing answers before the connection is closed");
}

void addPoolFlags(CLI::App *cmd, CLI::Option *workers, AttachOptions &options) {
  auto *minWorkers =
      cmd->add_option("--min-workers", options.minWorkers,
                      "Dynamic pool: fewest workers (with --max-workers; not with --workers)")
          ->check(rangeCheck(kWorkersRange))
          ->excludes(workers);
  auto *maxWorkers = cmd->add_option("--max-workers", options.maxWorkers,
                                     "Dynamic pool: most workers, grown while they are busy")
                         ->check(rangeCheck(kWorkersRange))
                         ->excludes(workers);
  minWorkers->needs(maxWorkers);
  maxWorkers->needs(minWorkers);
  cmd->add_option("--pool-busy-conns", options.poolBusyConnections,
                  "Dynamic pool: grow while workers hold more open connections each")
      ->check(rangeCheck(kPoolBusyConnsRange))
      ->capture_default_str();
  cmd->add_option("--pool-idle-seconds", options.poolIdleSeconds,
                  "Dynamic pool: shrink after this long below a quarter of --pool-busy-conns")
      ->check(rangeCheck(kPoolIdleSecondsRange))
      ->capture_default_str();
}

// A usage problem that is no failed operation: the message alone.
Error usageError(std::string message) {
  return Error{0, {}, std::move(message)};
}

std::string describe(const Error &error) {
  return error.context.empty() ? error.detail : error.message();
}

} // namespace

AttachOptions defaultAttachOptions() {
  AttachOptions options;
  options.workers = defaultWorkers();
  return options;
}

Action addAttachCommand(CLI::App &app) {
  // CLI11 writes into these after this function returns: they live as long as the action.
  struct Flags {
    AttachOptions options;
    long shutdownSeconds = 10;
    std::string configPath;
  };
  auto flags = std::make_shared<Flags>();
  AttachOptions *options = &flags->options;
  *options = defaultAttachOptions();
  flags->shutdownSeconds = options->shutdownTimeout.count();

  CLI::App *cmd = app.add_subcommand("attach", "Serve HTTP on PORT with kernel-dispatched workers");
  cmd->footer(R"(Examples:
  sockdispatch attach 8080                         built-in page, one worker per CPU
  sockdispatch attach 8080 --workers 4 --root /var/www --bind 127.0.0.1
  sockdispatch attach 0 --bind 127.0.0.1           ephemeral port, printed once serving
  sockdispatch attach 8080 --min-workers 2 --max-workers 8   a pool that grows when busy
  sockdispatch attach 8080 --mode line             no BPF: the workers pass connections
  sockdispatch attach --config /etc/sockdispatch/web.toml --workers 2
                                                   the file's settings, --workers overridden

Runs in the foreground; the pinned state lives under /sys/fs/bpf/sockdispatch/PORT (line
mode: the scoreboard file /run/sockdispatch/PORT/scoreboard).
Flags given on the command line override the --config file's keys (see check-config).
Signals to the master:
  SIGTERM, SIGINT  stop: workers finish in-flight requests within --shutdown-timeout
  SIGQUIT          graceful stop: workers stop accepting, serve what is queued and in
                   flight, close idle connections, then exit
  SIGHUP           reload: re-read the --config file, start a new generation of workers,
                   then retire the old one (nothing queued or in flight is lost)
  SIGUSR1          restart: a new generation with the same options
Exit codes: 0 stopped cleanly, 1 runtime failure (--mode ebpf where the program cannot
load included), 2 bad flag, bad configuration file or
port already attached.)");
  CLI::Option *port =
      cmd->add_option("port", options->port,
                      "TCP port to serve (0: pick an ephemeral port); required unless the "
                      "--config file sets 'port'")
          ->check(rangeCheck(kPortRange));
  cmd->add_option("--config,-c", flags->configPath,
                  "Read settings from this TOML file (keys named like the flags)");
  auto *workers =
      cmd->add_option("--workers,-w", options->workers, "Worker processes (default: CPU count)")
          ->check(rangeCheck(kWorkersRange));
  addPoolFlags(cmd, workers, *options);
  cmd->add_option("--bind,-b", options->bind, "Numeric IPv4 or IPv6 address to bind")
      ->check(numericAddress())
      ->capture_default_str();
  cmd->add_option("--backlog", options->backlog, "listen() backlog of each worker's socket")
      ->check(rangeCheck(kBacklogRange))
      ->capture_default_str();
  cmd->add_option_function<std::string>(
         "--mode",
         [options](const std::string &value) { options->mode = *parseDispatchMode(value); },
         "How connections reach the workers: ebpf (the kernel program chooses), line (the "
         "master accepts and the workers pass connections down a line), auto (ebpf where the "
         "program loads, else line, with a warning saying why)")
      ->check(CLI::IsMember({"auto", "ebpf", "line"}))
      ->default_str("auto");
  cmd->add_option_function<std::string>(
         "--policy",
         [options](const std::string &value) { options->policy = *policyFromName(value); },
         "Balancing policy to start with (sockdispatch tune changes it live): " + policyNames())
      ->check(CLI::IsMember({"skip_load", "least_conn", "p2c", "round_robin", "weighted", "hash"}))
      ->default_str("least_conn");
  cmd->add_option("--max-conns", options->maxConnections,
                  "Open connections per worker at which it takes no more (0: no limit); a full "
                  "worker is chosen by no policy, and when all are, connections wait in the "
                  "kernel's backlog")
      ->check(rangeCheck(kMaxConnsRange))
      ->capture_default_str();
  cmd->add_option("--line-batch", options->lineBatch,
                  "Line mode: most connections the master hands to the line in one message")
      ->check(rangeCheck(kLineBatchRange))
      ->capture_default_str();
  cmd->add_option("--root,-r", options->root,
                  "Serve static files from this directory (default: the built-in page)")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--shutdown-timeout", flags->shutdownSeconds,
                  "Seconds workers get to finish in-flight requests on stop")
      ->check(rangeCheck(kShutdownTimeoutRange))
      ->capture_default_str();
  addHttpFlags(cmd, options->limits);
  cmd->add_option("--user,-u", options->user,
                  "Run the workers as this user, with no capabilities (the master stays root)")
      ->check(CLI::Validator(
          [](std::string &name) { return checkUser(name).value_or(std::string{}); }, "NAME"));
  cmd->add_flag("--dotfiles", options->dotfiles,
                "With --root: serve files whose names start with a dot (.git, .env, ...); "
                "hidden (404) by default");
  cmd->add_flag("--verbose,-v", options->verbose, "Debug logging (libbpf's log included)");

  return [flags, cmd, port] {
    flags->options.shutdownTimeout = std::chrono::seconds(flags->shutdownSeconds);
    const std::string &configPath = flags->configPath;
    // The command line's options, then the file's keys for every setting the command line
    // did not give. A reload (SIGHUP) does this again with the file as it is then.
    auto resolve = [flags, cmd, port, configPath]() -> Result<AttachOptions> {
      AttachOptions resolved = flags->options;
      bool havePort = port->count() > 0;
      if (!configPath.empty()) {
        auto file = loadConfigFile(configPath, flags->options);
        if (!file) {
          return file.error();
        }
        for (const ConfigKey &key : file->keys) {
          if (cmd->get_option(std::string(key.flag))->count() == 0) {
            copyConfigKey(key.name, file->options, resolved);
          }
          havePort = havePort || key.name == "port";
        }
      }
      if (!havePort) {
        return usageError("no port: give PORT, or set 'port' in the --config file\n"
                          "Run 'sockdispatch attach --help' for usage.");
      }
      if (resolved.maxWorkers > 0 && resolved.minWorkers > resolved.maxWorkers) {
        return usageError("--min-workers " + std::to_string(resolved.minWorkers) +
                          " is more than --max-workers " + std::to_string(resolved.maxWorkers));
      }
      return resolved;
    };
    auto first = resolve();
    if (!first) {
      std::fprintf(stderr, "attach: %s\n", describe(first.error()).c_str());
      return kExitUsage;
    }
    // Every connection is a descriptor: workers inherit the raised limit.
    if (auto raised = raiseDescriptorLimit(); !raised) {
      std::fprintf(stderr, "attach: %s\n", raised.error().message().c_str());
    }
    return runAttach(first.value(), resolve);
  };
}

} // namespace sockdispatch::cli
