#pragma once

#include "core/unique_fd.h"

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sockdispatch::test {

using namespace std::chrono_literals;

// A child process with stdout on a pipe and stderr in a temporary file (so a chatty child
// never blocks on a full pipe). The destructor kills and reaps it if it still runs.
class Process {
public:
  static std::unique_ptr<Process> start(const std::vector<std::string> &argv);
  ~Process();
  Process(const Process &) = delete;
  Process &operator=(const Process &) = delete;

  [[nodiscard]] pid_t pid() const { return pid_; }
  std::optional<std::string> readLine(std::chrono::milliseconds timeout);
  [[nodiscard]] std::string stderrText() const;
  void signal(int signo) const;
  // Waits for exit; returns the exit code, or 128 + signal, or nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout);

private:
  Process() = default;
  pid_t pid_ = -1;
  UniqueFd stdout_;
  std::string stdoutBuffer_;
  std::string stderrPath_;
  std::optional<int> exitCode_;
};

struct Completed {
  int code = -1;
  std::string out;
  std::string err;
};
// Runs the project's binary with these arguments to completion (bounded by `timeout`).
Completed runSockdispatch(const std::vector<std::string> &args,
                          std::chrono::milliseconds timeout = 20s);
// Runs any program to completion the same way.
Completed runCommand(const std::vector<std::string> &argv, std::chrono::milliseconds timeout = 20s);

// A running `sockdispatch attach 0 --bind 127.0.0.1 ...`, ready to serve.
class Attachment {
public:
  // Starts it and waits for its "listening on" line. Fails the current test (and returns
  // nullptr) when it does not come. `launcher` runs it (e.g. setpriv with its flags and --).
  static std::unique_ptr<Attachment> start(const std::vector<std::string> &extraArgs,
                                           std::chrono::milliseconds timeout = 20s,
                                           const std::vector<std::string> &launcher = {});
  ~Attachment();

  [[nodiscard]] uint16_t port() const { return port_; }
  [[nodiscard]] Process &process() { return *process_; }
  // SIGTERM and wait; returns the exit code (nullopt on timeout).
  std::optional<int> stop(std::chrono::milliseconds timeout = 20s);

private:
  std::unique_ptr<Process> process_;
  uint16_t port_ = 0;
};

// Polls `condition` every few milliseconds until it holds or `timeout` passes.
template <typename F> bool eventually(F condition, std::chrono::milliseconds timeout = 5s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) {
      return true;
    }
    ::usleep(5000);
  }
  return condition();
}

// SIGSTOP, then waits until the process has really stopped (state T in /proc/PID/stat):
// kill() returns before the signal is delivered, and a process that has not stopped yet may
// still accept. False when it did not stop within `timeout`.
bool freeze(pid_t pid, std::chrono::milliseconds timeout = 5s);

// How many TCP sockets the process holds open, from the kernel (its /proc/PID/fd links
// matched against the inodes in /proc/net/tcp and tcp6): counts every connection it holds,
// also one it received and has not yet counted anywhere.
size_t tcpSocketsHeldBy(pid_t pid);

// Whether this process may load BPF programs and mount bpffs (root in CI).
bool haveBpfPrivileges();

// Base fixture of the tests that load the real program: skips, saying why, without the
// privilege (CI runs as root, so nothing skips there).
class BpfTest : public testing::Test {
protected:
  void SetUp() override {
    if (!haveBpfPrivileges()) {
      GTEST_SKIP() << "needs root (CAP_BPF + CAP_NET_ADMIN; CAP_SYS_ADMIN to mount bpffs)";
    }
  }
};

} // namespace sockdispatch::test
