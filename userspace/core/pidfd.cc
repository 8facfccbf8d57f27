#include "core/pidfd.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <string>

namespace sockdispatch {

Result<UniqueFd> openPidfd(pid_t pid) {
  UniqueFd fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!fd) {
    return osError("open a pidfd for pid " + std::to_string(pid));
  }
  return fd;
}

Result<void> signalPidfd(int pidfd, pid_t pid, int signo) {
  if (::syscall(SYS_pidfd_send_signal, pidfd, signo, nullptr, 0) != 0) {
    return osError("signal pid " + std::to_string(pid));
  }
  return {};
}

Result<UniqueFd> copyDescriptor(int pidfd, pid_t pid, int targetFd) {
  UniqueFd fd(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, targetFd, 0)));
  if (!fd) {
    Error error =
        osError("copy descriptor " + std::to_string(targetFd) + " of pid " + std::to_string(pid));
    if (error.code == EPERM) {
      error.detail = "not permitted: pidfd_getfd needs ptrace access to the process "
                     "(CAP_SYS_PTRACE, and kernel.yama.ptrace_scope below 3)";
    } else if (error.code == ENOSYS) {
      error.detail = "pidfd_getfd is not available (Linux 5.6 or newer is needed)";
    }
    return error;
  }
  return fd;
}

} // namespace sockdispatch
