#pragma once

#include "core/result.h"
#include "core/unique_fd.h"

#include <sys/types.h>

namespace sockdispatch {

// A process by pidfd (Linux 5.3): stable against pid reuse, and pollable for its exit.
Result<UniqueFd> openPidfd(pid_t pid);

// Sends `signo` to the process `pidfd` refers to (pidfd_send_signal, Linux 5.1): never to
// a process that reused its pid. ESRCH once it has exited.
Result<void> signalPidfd(int pidfd, pid_t pid, int signo);

// A copy of descriptor `targetFd` of the process `pidfd` refers to (pidfd_getfd, Linux 5.6):
// the same open file, close-on-exec here. Needs ptrace access to the process
// (CAP_SYS_PTRACE for another user's; Yama's kernel.yama.ptrace_scope below 3): a refusal
// says so. `pid` only names the process in the error.
Result<UniqueFd> copyDescriptor(int pidfd, pid_t pid, int targetFd);

} // namespace sockdispatch
