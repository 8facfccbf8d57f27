#include "process/process_ops.h"

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

namespace sockdispatch {

namespace {

class SystemProcesses final : public ProcessOps {
public:
  pid_t fork() override { return ::fork(); }
  int kill(pid_t pid, int signo) override { return ::kill(pid, signo); }
  pid_t reap(int *status) override { return ::waitpid(-1, status, WNOHANG); }
};

} // namespace

ProcessOps &systemProcesses() {
  static SystemProcesses processes;
  return processes;
}

} // namespace sockdispatch
