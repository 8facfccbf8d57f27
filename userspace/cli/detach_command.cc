#include "adopt/leftover_release.h"
#include "bpf/pin_dir.h"
#include "commands.h"
#include "config/options.h"
#include "control/master_control.h"

#include <cstdio>
#include <memory>

namespace sockdispatch::cli {

Action addDetachCommand(CLI::App &app) {
  struct Flags {
    int port = -1;
    long timeoutSeconds = 30;
  };
  auto flags = std::make_shared<Flags>();
  CLI::App *cmd = app.add_subcommand("detach", "Stop the attachment of PORT gracefully");
  cmd->footer(R"(Examples:
  sockdispatch detach 8080
  sockdispatch detach 8080 --timeout 120     wait longer for long requests to finish

Sends SIGQUIT to the port's master (its pid is in the pinned config): workers stop
accepting, queued connections are served, in-flight requests finish; then the master removes
/sys/fs/bpf/sockdispatch/PORT and exits. detach waits for that. A port that is not attached
is left as it is; the state of a master that is no longer running is removed.
Exit codes: 0 detached (or nothing to do), 1 the master did not stop in time or state
unreadable, 2 bad flag.)");
  cmd->add_option("port", flags->port, "The attached TCP port")
      ->required()
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--timeout", flags->timeoutSeconds,
                  "Seconds to wait for the master to stop (it is left running after)")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();

  return [flags]() {
    auto port = static_cast<uint16_t>(flags->port);
    auto done = detachPort(port, std::chrono::seconds(flags->timeoutSeconds));
    if (!done) {
      std::fprintf(stderr, "detach: %s\n", done.error().message().c_str());
      return kExitFailure;
    }
    const DetachOutcome &outcome = done.value();
    std::string dir = pinDirFor(port);
    switch (outcome.result) {
    case DetachResult::NotAttached:
      std::printf("port %u is not attached; nothing to do\n", port);
      break;
    case DetachResult::Stopped:
      std::printf("port %u detached: master pid %u stopped in %.1f s\n", port, outcome.masterPid,
                  static_cast<double>(outcome.took.count()) / 1000.0);
      break;
    case DetachResult::StaleRemoved:
      std::printf("port %u detached: master pid %u was not running; removed its stale state "
                  "in %s\n",
                  port, outcome.masterPid, dir.c_str());
      if (outcome.orphansAsked != 0) {
        std::printf("port %u: asked %zu of its workers, still serving, to finish and leave\n", port,
                    outcome.orphansAsked);
      }
      if (outcome.leftoverProgramId != 0) {
        auto released = releaseLeftoverSteering(port, outcome.leftoverProgramId);
        if (!released) {
          std::fprintf(stderr, "detach: %s\n", released.error().message().c_str());
          return kExitFailure;
        }
        if (released.value()) {
          std::printf("port %u: took the steering program %u that adopt left off the "
                      "service's group; the kernel's hash chooses again\n",
                      port, outcome.leftoverProgramId);
        }
      }
      break;
    case DetachResult::ExitedLeavingPins:
      std::printf("port %u detached: master pid %u exited without removing its state; removed "
                  "%s\n",
                  port, outcome.masterPid, dir.c_str());
      break;
    }
    return kExitOk;
  };
}

} // namespace sockdispatch::cli
