#pragma once

#include "support/process.h"
#include "support/temp_dir.h"

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sockdispatch::test {

// Debian's nginx, run in the foreground from a temporary prefix: `workers` worker processes,
// each with its own `listen 127.0.0.1:PORT reuseport` listener (one SO_REUSEPORT group of
// `workers` sockets), answering every request with 200 "ok". Stopped and reaped on
// destruction.
class Nginx {
public:
  // Fails the current test (and returns nullptr) when nginx is missing or does not serve.
  static std::unique_ptr<Nginx> start(int workers, bool reuseport = true);
  ~Nginx();
  Nginx(const Nginx &) = delete;
  Nginx &operator=(const Nginx &) = delete;

  [[nodiscard]] uint16_t port() const { return port_; }
  [[nodiscard]] pid_t masterPid() const { return process_->pid(); }
  // Its worker processes now (the master's children).
  [[nodiscard]] std::vector<pid_t> workerPids() const;
  // `nginx -s reload` (SIGHUP) and waits until none of the old workers is among the master's
  // children and `workers` new ones run. False on timeout.
  bool reload(std::chrono::milliseconds timeout = std::chrono::seconds(15));
  // The same with `workers` worker processes from now on (so as many listeners).
  bool reload(int workers, std::chrono::milliseconds timeout = std::chrono::seconds(15));
  // Graceful stop (SIGQUIT) and wait; returns the exit code.
  std::optional<int> stop(std::chrono::milliseconds timeout = std::chrono::seconds(15));
  [[nodiscard]] std::string stderrText() const { return process_->stderrText(); }

private:
  Nginx() = default;
  TempDir prefix_;
  std::unique_ptr<Process> process_;
  uint16_t port_ = 0;
  int workers_ = 0;
  bool reuseport_ = true;
  bool stopped_ = false;
};

// Whether Debian's nginx is installed (tests skip, saying why, without it: CI has it).
bool haveNginx();

// A TCP port on 127.0.0.1 that nothing listens on now.
uint16_t unusedPort();

} // namespace sockdispatch::test
