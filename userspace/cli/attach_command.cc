#include "address.h"
#include "attach.h"
#include "commands.h"
#include "sockdispatch/abi.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>

namespace sockdispatch::cli {

namespace {

int defaultWorkers() {
  long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  return static_cast<int>(std::clamp<long>(cpus, 1, SD_MAX_WORKERS));
}

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

// A timeout flag in seconds (fractions allowed) written into a millisecond field.
void addTimeoutFlag(CLI::App *cmd, const std::string &name, std::chrono::milliseconds &field,
                    const std::string &help) {
  cmd->add_option_function<double>(
         name,
         [&field](const double &value) {
           field = std::chrono::milliseconds(std::llround(value * 1000.0));
         },
         help)
      ->check(CLI::Range(0.001, 86400.0))
      ->default_str(CLI::detail::to_string(static_cast<double>(field.count()) / 1000.0));
}

void addHttpFlags(CLI::App *cmd, HttpLimits &limits) {
  cmd->add_option("--max-target-bytes", limits.maxTargetBytes,
                  "Longest request target; longer is answered 414")
      ->check(CLI::Range(64UL, 1UL << 20))
      ->capture_default_str();
  cmd->add_option("--max-header-bytes", limits.maxHeaderBytes,
                  "Largest request line plus header fields; larger is answered 431")
      ->check(CLI::Range(256UL, 1UL << 24))
      ->capture_default_str();
  cmd->add_option("--max-body-bytes", limits.maxBodyBytes,
                  "Largest request body; larger is answered 413")
      ->check(CLI::Range(0UL, 1UL << 32))
      ->capture_default_str();
  cmd->add_option("--max-pending-output", limits.maxPendingOutput,
                  "Answer bytes a connection may have unsent before its requests stop being read")
      ->check(CLI::Range(4096UL, 1UL << 30))
      ->capture_default_str();
  cmd->add_option("--max-keepalive-requests", limits.maxRequestsPerConnection,
                  "Requests per connection; the last is answered with Connection: close (0: no "
                  "limit)")
      ->check(CLI::Range(0U, 1U << 30))
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

} // namespace

Action addAttachCommand(CLI::App &app) {
  // CLI11 writes into these after this function returns: they live as long as the action.
  struct Flags {
    AttachOptions options;
    long shutdownSeconds = 10;
  };
  auto flags = std::make_shared<Flags>();
  AttachOptions *options = &flags->options;
  options->workers = defaultWorkers();
  flags->shutdownSeconds = options->shutdownTimeout.count();

  CLI::App *cmd = app.add_subcommand("attach", "Serve HTTP on PORT with kernel-dispatched workers");
  cmd->footer(R"(Examples:
  sockdispatch attach 8080                         built-in page, one worker per CPU
  sockdispatch attach 8080 --workers 4 --root /var/www --bind 127.0.0.1
  sockdispatch attach 0 --bind 127.0.0.1           ephemeral port, printed once serving

  sockdispatch attach 8080 --min-workers 2 --max-workers 8   a pool that grows when busy

Runs in the foreground; the pinned state lives under /sys/fs/bpf/sockdispatch/PORT.
Signals to the master:
  SIGTERM, SIGINT  stop: workers finish in-flight requests within --shutdown-timeout
  SIGQUIT          graceful stop: workers stop accepting, serve what is queued and in
                   flight, close idle connections, then exit
  SIGHUP           reload: start a new generation of workers with the re-read options,
                   then retire the old one (nothing queued or in flight is lost)
  SIGUSR1          restart: a new generation with the same options
Exit codes: 0 stopped cleanly, 1 runtime failure, 2 bad flag or port already attached.)");
  cmd->add_option("port", options->port, "TCP port to serve (0: pick an ephemeral port)")
      ->required()
      ->check(CLI::Range(0, 65535));
  auto *workers =
      cmd->add_option("--workers,-w", options->workers, "Worker processes (default: CPU count)")
          ->check(CLI::Range(1, SD_MAX_WORKERS));
  auto *minWorkers =
      cmd->add_option("--min-workers", options->minWorkers,
                      "Dynamic pool: fewest workers (with --max-workers; not with --workers)")
          ->check(CLI::Range(1, SD_MAX_WORKERS))
          ->excludes(workers);
  auto *maxWorkers = cmd->add_option("--max-workers", options->maxWorkers,
                                     "Dynamic pool: most workers, grown while they are busy")
                         ->check(CLI::Range(1, SD_MAX_WORKERS))
                         ->excludes(workers);
  minWorkers->needs(maxWorkers);
  maxWorkers->needs(minWorkers);
  cmd->add_option("--pool-busy-conns", options->poolBusyConnections,
                  "Dynamic pool: grow while workers hold more open connections each")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  cmd->add_option("--pool-idle-seconds", options->poolIdleSeconds,
                  "Dynamic pool: shrink after this long below a quarter of --pool-busy-conns")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  cmd->add_option("--bind,-b", options->bind, "Numeric IPv4 or IPv6 address to bind")
      ->check(numericAddress())
      ->capture_default_str();
  cmd->add_option("--backlog", options->backlog, "listen() backlog of each worker's socket")
      ->check(CLI::Range(1, 65535))
      ->capture_default_str();
  cmd->add_option("--root,-r", options->root,
                  "Serve static files from this directory (default: the built-in page)")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--shutdown-timeout", flags->shutdownSeconds,
                  "Seconds workers get to finish in-flight requests on stop")
      ->check(CLI::Range(0, 3600))
      ->capture_default_str();
  addHttpFlags(cmd, options->limits);
  cmd->add_flag("--verbose,-v", options->verbose, "Debug logging (libbpf's log included)");

  return [flags] {
    const AttachOptions &o = flags->options;
    if (o.maxWorkers > 0 && o.minWorkers > o.maxWorkers) {
      std::fprintf(stderr, "attach: --min-workers %d is more than --max-workers %d\n", o.minWorkers,
                   o.maxWorkers);
      return kExitUsage;
    }
    flags->options.shutdownTimeout = std::chrono::seconds(flags->shutdownSeconds);
    return runAttach(flags->options);
  };
}

} // namespace sockdispatch::cli
