#include "bpf/names.h"
#include "commands.h"
#include "config/config_file.h"
#include "config/option_table.h"
#include "control/attach.h"
#include "process/exec_worker_kind.h"
#include "process/privileges.h"
#include "process/syscall_filter.h"
#include "sockdispatch/abi.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>

namespace sockdispatch::cli {

namespace {

int defaultWorkers() {
  long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  return static_cast<int>(std::clamp<long>(cpus, 1, SD_MAX_WORKERS));
}

// One flag from its row of the option table: the same name, help, range or check and field
// as the configuration key. CLI11 checks the value before the callback sets it.
CLI::Option *addFlag(CLI::App *cmd, const OptionSpec &spec, AttachOptions &options) {
  const std::string names(spec.names);
  const std::string help(spec.help);
  AttachOptions *target = &options;
  CLI::Option *flag = nullptr;
  switch (spec.type) {
  case OptionType::integer:
  case OptionType::seconds:
    flag = cmd->add_option_function<int64_t>(
                  names, [&spec, target](const int64_t &value) { spec.setInteger(*target, value); },
                  help)
               ->check(CLI::Range(spec.integers.min, spec.integers.max));
    break;
  case OptionType::timeout:
    flag = cmd->add_option_function<double>(
                  names, [&spec, target](const double &value) { spec.setSeconds(*target, value); },
                  help)
               ->check(CLI::Range(spec.fractional.min, spec.fractional.max));
    break;
  case OptionType::boolean:
    return cmd->add_flag_function(
        names, [&spec, target](int64_t /*count*/) { spec.setBoolean(*target, true); }, help);
  case OptionType::choice:
    flag = cmd->add_option_function<std::string>(
                  names,
                  [&spec, target](const std::string &value) { spec.setText(*target, value); }, help)
               ->check(CLI::IsMember(spec.choices));
    break;
  case OptionType::words:
    return cmd->add_option_function<std::vector<std::string>>(
        names,
        [&spec, target](const std::vector<std::string> &words) { spec.setWords(*target, words); },
        help);
  case OptionType::string:
    flag = cmd->add_option_function<std::string>(
                  names,
                  [&spec, target](const std::string &value) { spec.setText(*target, value); }, help)
               ->check(CLI::Validator(
                   [&spec](std::string &value) {
                     AttachOptions scratch;
                     return spec.setText(scratch, value).value_or(std::string{});
                   },
                   std::string(spec.valueName)));
    break;
  }
  if (spec.showDefault) {
    if (std::string shown = spec.show(options); !shown.empty()) {
      flag->default_str(shown);
    }
  }
  return flag;
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
    std::string configPath;
  };
  auto flags = std::make_shared<Flags>();
  AttachOptions *options = &flags->options;
  *options = defaultAttachOptions();

  CLI::App *cmd = app.add_subcommand("attach", "Serve HTTP on PORT with kernel-dispatched workers");
  cmd->footer(R"(Examples:
  sockdispatch attach 8080                         built-in page, one worker per CPU
  sockdispatch attach 8080 --workers 4 --root /var/www --bind 127.0.0.1
  sockdispatch attach 0 --bind 127.0.0.1           ephemeral port, printed once serving
  sockdispatch attach 8080 --min-workers 2 --max-workers 8   a pool that grows when busy
  sockdispatch attach 8080 --mode line             no BPF: the workers pass connections
  sockdispatch attach --config /etc/sockdispatch/web.toml --workers 2
                                                   the file's settings, --workers overridden
  sockdispatch attach 8000 --workers 4 -- gunicorn --workers 1 app:app
                                                   an unmodified program as each worker (it
                                                   finds fd 3 by LISTEN_FDS)
  sockdispatch attach 8000 --workers 4 -- python3 -m uvicorn --fd 3 app:app

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
  cmd->add_option("--config,-c", flags->configPath,
                  "Read settings from this TOML file (keys named like the flags)");
  for (const OptionSpec &spec : optionTable()) {
    addFlag(cmd, spec, *options);
  }
  // What the table cannot say: how flags combine.
  CLI::Option *port = cmd->get_option("port");
  CLI::Option *workers = cmd->get_option("--workers");
  CLI::Option *minWorkers = cmd->get_option("--min-workers");
  CLI::Option *maxWorkers = cmd->get_option("--max-workers");
  minWorkers->excludes(workers)->needs(maxWorkers);
  maxWorkers->excludes(workers)->needs(minWorkers);

  return [flags, cmd, port] {
    const std::string &configPath = flags->configPath;
    // The command line's options, then the file's keys for every setting the command line
    // did not give. A reload (SIGHUP) does this again with the file as it is then.
    auto resolve = [flags, cmd, port, configPath]() -> Result<AttachOptions> {
      AttachOptions resolved = flags->options;
      resolved.confineWorker = confineToWorkerSyscalls; // the built-in workers only
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
      if (!resolved.command.empty()) {
        if (resolved.mode == DispatchModeOption::kLine) {
          return usageError("a COMMAND's workers take their own listener: --mode line cannot "
                            "run one (use --mode ebpf or auto)");
        }
        if (!findExecutable(resolved.command.front())) {
          return usageError("COMMAND '" + resolved.command.front() +
                            "': no such executable (looked up in PATH)");
        }
        if (!resolved.root.empty()) {
          return usageError("--root serves files with the built-in workers: not with a COMMAND");
        }
      }
      if (resolved.agentPort != 0 && resolved.agentPort == resolved.port) {
        return usageError("--agent-port " + std::to_string(resolved.agentPort) +
                          " is the served port: the agent needs a port of its own");
      }
      if (resolved.agentPort == 0 && resolved.agentBind != defaultAttachOptions().agentBind) {
        return usageError("--agent-bind " + resolved.agentBind +
                          " needs --agent-port (the address of the agent's port)");
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
