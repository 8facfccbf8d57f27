#pragma once

#include "core/unique_fd.h"

#include <sys/types.h>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>

namespace sockdispatch::test {

// One datagram on $NOTIFY_SOCKET and who sent it.
struct Notification {
  std::string text;
  pid_t sender = 0;
};

// The receiving end of $NOTIFY_SOCKET, in a private temporary directory.
class NotifySocket {
public:
  NotifySocket();
  ~NotifySocket();
  NotifySocket(const NotifySocket &) = delete;
  NotifySocket &operator=(const NotifySocket &) = delete;

  [[nodiscard]] const std::string &path() const { return path_; }

  // The next datagram and its sender's pid (SCM_CREDENTIALS), or nullopt after `timeout`.
  std::optional<Notification> receive(std::chrono::milliseconds timeout);

private:
  std::string dir_;
  std::string path_;
  UniqueFd fd_;
};

// Sets an environment variable for the scope (children started meanwhile inherit it).
class ScopedEnv {
public:
  ScopedEnv(const char *name, const std::string &value) : name_(name) {
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() { ::unsetenv(name_); }
  ScopedEnv(const ScopedEnv &) = delete;
  ScopedEnv &operator=(const ScopedEnv &) = delete;

private:
  const char *name_;
};

} // namespace sockdispatch::test
