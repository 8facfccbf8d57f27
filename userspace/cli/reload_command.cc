#include "commands.h"
#include "config/options.h"
#include "control/master_control.h"

#include <cstdio>
#include <memory>

namespace sockdispatch::cli {

Action addReloadCommand(CLI::App &app) {
  struct Flags {
    int port = -1;
    long timeoutSeconds = 30;
  };
  auto flags = std::make_shared<Flags>();
  CLI::App *cmd =
      app.add_subcommand("reload", "Start a new generation of workers for PORT, without loss");
  cmd->footer(R"(Examples:
  sockdispatch reload 8080
  sockdispatch reload 8080 --timeout 60

Sends SIGHUP to the port's master (its pid is in the pinned config), the same as
'kill -HUP PID'. The master starts a new generation of workers beside the serving one and
retires the old one once the new one serves, then bumps the configuration generation;
reload waits for that and prints it.
Exit codes: 0 reloaded, 1 the reload did not complete in time (the master's log says why)
or the master is not running, 2 bad flag or port not attached.)");
  cmd->add_option("port", flags->port, "The attached TCP port")
      ->required()
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--timeout", flags->timeoutSeconds,
                  "Seconds to wait for the new generation to serve")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();

  return [flags]() {
    auto port = static_cast<uint16_t>(flags->port);
    auto done = reloadPort(port, std::chrono::seconds(flags->timeoutSeconds));
    if (!done) {
      if (done.error().code == ENOENT) {
        std::fprintf(stderr, "reload: port %u is not attached\n", port);
        return kExitUsage;
      }
      std::fprintf(stderr, "reload: %s\n", done.error().message().c_str());
      return kExitFailure;
    }
    std::printf("port %u reloaded: generation %llu -> %llu (master pid %u)\n", port,
                static_cast<unsigned long long>(done->generationBefore),
                static_cast<unsigned long long>(done->generationAfter), done->masterPid);
    return kExitOk;
  };
}

} // namespace sockdispatch::cli
