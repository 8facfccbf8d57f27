#include "process/exec_worker_kind.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace sockdispatch {

namespace {

// The socket-activation protocol's first descriptor (SD_LISTEN_FDS_START).
constexpr int kListenFd = 3;

constexpr std::array<std::pair<std::string_view, int>, 7> kStopSignals{{
    {"TERM", SIGTERM},
    {"QUIT", SIGQUIT},
    {"INT", SIGINT},
    {"HUP", SIGHUP},
    {"USR1", SIGUSR1},
    {"USR2", SIGUSR2},
    {"WINCH", SIGWINCH},
}};

// A regular file this process may execute (access(X_OK) alone also takes directories).
bool isExecutable(const std::string &path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode) &&
         ::access(path.c_str(), X_OK) == 0;
}

} // namespace

std::optional<std::string> findExecutable(const std::string &name) {
  if (name.empty()) {
    return std::nullopt;
  }
  if (name.find('/') != std::string::npos) {
    return isExecutable(name) ? std::optional(name) : std::nullopt;
  }
  const char *path = std::getenv("PATH");
  std::string_view dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  while (true) {
    size_t colon = dirs.find(':');
    std::string dir(dirs.substr(0, colon));
    std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + name;
    if (isExecutable(candidate)) {
      return candidate;
    }
    if (colon == std::string_view::npos) {
      return std::nullopt;
    }
    dirs.remove_prefix(colon + 1);
  }
}

std::optional<int> stopSignalFromName(std::string_view name) {
  if (name.substr(0, 3) == "SIG") {
    name.remove_prefix(3);
  }
  for (const auto &[signalName, signo] : kStopSignals) {
    if (signalName == name) {
      return signo;
    }
  }
  return std::nullopt;
}

std::vector<std::string> stopSignalNames() {
  std::vector<std::string> names;
  names.reserve(kStopSignals.size());
  for (const auto &[signalName, signo] : kStopSignals) {
    names.emplace_back(signalName);
  }
  return names;
}

std::string stopSignalName(int signo) {
  for (const auto &[signalName, number] : kStopSignals) {
    if (number == signo) {
      return std::string(signalName);
    }
  }
  return std::to_string(signo);
}

int ExecWorkerKind::runInChild(const AttachOptions &options, uint32_t slot, WorkerSockets sockets,
                               Scoreboard scoreboard, const char * /*mode*/) {
  if (!sockets.listener) {
    spdlog::critical("a COMMAND worker needs its own listener (the eBPF path)");
    return kExitFatalConfig;
  }
  sockets.control.reset(); // read by nobody: the program is asked to stop by signal
  // The listener becomes fd 3, inherited across exec (dup2 clears FD_CLOEXEC; when it is
  // fd 3 already, clear the flag by hand).
  if (sockets.listener.get() == kListenFd) {
    int flags = ::fcntl(kListenFd, F_GETFD);
    if (flags < 0 || ::fcntl(kListenFd, F_SETFD, flags & ~FD_CLOEXEC) != 0) {
      spdlog::critical("Failed to pass the listener on fd 3: {}", std::strerror(errno));
      return kExitFailure;
    }
    (void)sockets.listener.release();
  } else if (::dup2(sockets.listener.get(), kListenFd) != kListenFd) {
    spdlog::critical("Failed to pass the listener on fd 3: {}", std::strerror(errno));
    return kExitFailure;
  }
  if (options.fdOnly) {
    ::unsetenv("LISTEN_FDS");
    ::unsetenv("LISTEN_PID");
    ::unsetenv("LISTEN_FDNAMES");
  } else {
    const std::string pid = std::to_string(::getpid());
    ::setenv("LISTEN_FDS", "1", 1);
    ::setenv("LISTEN_PID", pid.c_str(), 1);
    ::setenv("LISTEN_FDNAMES", "sockdispatch", 1);
  }
  // Under systemd the master is the service's main process and says when it is ready (once
  // every slot serves). A program that speaks sd_notify itself (gunicorn's arbiter sends
  // READY=1 as it boots) must not: systemd would log each copy's message as refused
  // (NotifyAccess=main), or take it for the service's readiness (NotifyAccess=all).
  ::unsetenv("NOTIFY_SOCKET");
  ::setenv("SOCKDISPATCH_SLOT", std::to_string(slot).c_str(), 1);
  ::setenv("SOCKDISPATCH_PORT", std::to_string(loadRelaxed(scoreboard.config()->port)).c_str(), 1);
  std::vector<char *> argv;
  argv.reserve(options.command.size() + 1);
  for (const std::string &word : options.command) {
    argv.push_back(const_cast<char *>(word.c_str()));
  }
  argv.push_back(nullptr);
  // Running from here on: the program owns the listener, and its process is the slot's.
  scoreboard.setState(slot, SD_SLOT_RUNNING);
  spdlog::default_logger()->flush();
  ::execvp(argv[0], argv.data());
  int code = errno;
  scoreboard.changeState(slot, SD_SLOT_RUNNING, SD_SLOT_DEAD);
  spdlog::critical("Failed to run {}: {}", options.command.front(), std::strerror(code));
  return kExitFatalConfig; // the same command fails again: not respawned
}

} // namespace sockdispatch
