#pragma once

#include <sys/types.h>

namespace sockdispatch {

// The process calls the master makes about its workers, behind a seam: the system's in
// production, a fake in the master's unit tests (which then check its decisions without
// forking anything).
class ProcessOps {
public:
  virtual ~ProcessOps() = default;
  // fork(2): the child's pid in the parent, 0 in the child, -1 with errno.
  virtual pid_t fork() = 0;
  // kill(2).
  virtual int kill(pid_t pid, int signo) = 0;
  // waitpid(-1, status, WNOHANG): a child that exited, 0 when none has, -1 when there is none.
  virtual pid_t reap(int *status) = 0;
};

// The system calls themselves.
ProcessOps &systemProcesses();

} // namespace sockdispatch
