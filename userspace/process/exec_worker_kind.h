#pragma once

#include "process/worker_kind.h"

#include <optional>
#include <string>
#include <vector>

namespace sockdispatch {

// Workers that are a program nobody changed (`attach PORT -- COMMAND ARGS...`,
// docs/design/exec.md): the forked child puts its slot's listener on fd 3, says so by the
// systemd socket-activation protocol (LISTEN_FDS=1, LISTEN_PID its own pid, LISTEN_FDNAMES),
// adds SOCKDISPATCH_SLOT and SOCKDISPATCH_PORT, announces itself running in the scoreboard
// and execs COMMAND. It reads no control channel: it is asked to stop with --stop-signal.
class ExecWorkerKind final : public WorkerKind {
public:
  int runInChild(const AttachOptions &options, uint32_t slot, WorkerSockets sockets,
                 Scoreboard scoreboard, const char *mode) override;
  [[nodiscard]] bool readsControlChannel() const override { return false; }
  [[nodiscard]] int stopSignal(const AttachOptions &options) const override {
    return options.stopSignal;
  }
};

// Where `name` would be executed from: itself when it holds a '/', else the first
// executable of that name on PATH. nullopt when there is none (checked before any fork, so a
// typo is a usage error and nothing is started).
std::optional<std::string> findExecutable(const std::string &name);

// --stop-signal's names (TERM, QUIT, INT, HUP, USR1, USR2, WINCH) and back.
std::optional<int> stopSignalFromName(std::string_view name);
std::vector<std::string> stopSignalNames();
std::string stopSignalName(int signo);

} // namespace sockdispatch
