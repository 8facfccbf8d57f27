#include "address.h"
#include "attach.h"
#include "commands.h"
#include "config_file.h"
#include "option_ranges.h"
#include "sockdispatch/abi.h"

#include <unistd.h>

#include <algorithm>
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
  sockdispatch attach --config /etc/sockdispatch/web.toml --workers 2
                                                   the file's settings, --workers overridden

Runs in the foreground. SIGTERM or SIGINT stops the workers (in-flight requests finish
within --shutdown-timeout) and removes the pinned state under /sys/fs/bpf/sockdispatch/PORT.
Flags given on the command line override the --config file's keys (see check-config).
Exit codes: 0 stopped cleanly, 1 runtime failure, 2 bad flag, bad configuration file or
port already attached.)");
  CLI::Option *port =
      cmd->add_option("port", options->port,
                      "TCP port to serve (0: pick an ephemeral port); required unless the "
                      "--config file sets 'port'")
          ->check(rangeCheck(kPortRange));
  cmd->add_option("--config,-c", flags->configPath,
                  "Read settings from this TOML file (keys named like the flags)");
  cmd->add_option("--workers,-w", options->workers, "Worker processes (default: CPU count)")
      ->check(rangeCheck(kWorkersRange));
  cmd->add_option("--bind,-b", options->bind, "Numeric IPv4 or IPv6 address to bind")
      ->check(numericAddress())
      ->capture_default_str();
  cmd->add_option("--backlog", options->backlog, "listen() backlog of each worker's socket")
      ->check(rangeCheck(kBacklogRange))
      ->capture_default_str();
  cmd->add_option("--root,-r", options->root,
                  "Serve static files from this directory (default: the built-in page)")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--shutdown-timeout", flags->shutdownSeconds,
                  "Seconds workers get to finish in-flight requests on stop")
      ->check(rangeCheck(kShutdownTimeoutRange))
      ->capture_default_str();
  cmd->add_flag("--verbose,-v", options->verbose, "Debug logging (libbpf's log included)");

  return [flags, cmd, port] {
    flags->options.shutdownTimeout = std::chrono::seconds(flags->shutdownSeconds);
    bool havePort = port->count() > 0;
    if (!flags->configPath.empty()) {
      auto file = loadConfigFile(flags->configPath, flags->options);
      if (!file) {
        std::fprintf(stderr, "attach: %s\n", file.error().message().c_str());
        return kExitUsage;
      }
      // The file fills in every setting the command line did not give.
      for (const ConfigKey &key : file->keys) {
        if (cmd->get_option(std::string(key.flag))->count() == 0) {
          copyConfigKey(key.name, file->options, flags->options);
        }
        havePort = havePort || key.name == "port";
      }
    }
    if (!havePort) {
      std::fprintf(stderr, "attach: no port: give PORT, or set 'port' in the --config file\n"
                           "Run 'sockdispatch attach --help' for usage.\n");
      return kExitUsage;
    }
    return runAttach(flags->options);
  };
}

} // namespace sockdispatch::cli
