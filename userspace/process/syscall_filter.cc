#include "process/syscall_filter.h"

#include <linux/sched.h>
#include <seccomp.h>
#include <sys/mman.h>

#include <array>
#include <cerrno>
#include <memory>
#include <string>

namespace sockdispatch {

namespace {

// What a serving worker calls, found by tracing workers of both modes through every path the
// suite drives (docs/design/sandbox.md), plus what the C library may use instead of a call
// seen there (fstat for newfstatat, epoll_pwait for epoll_wait, a clock without the vDSO).
constexpr std::array kAllowed = {
    // the event loop and its wake-ups
    "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2", "poll", "ppoll",
    "select", "pselect6", "eventfd2", "pipe2", "signalfd4", "timerfd_create", "timerfd_settime",
    "timerfd_gettime",
    // connections: taking them, reading and answering, the line's fd passing
    "accept", "accept4", "read", "readv", "recvfrom", "recvmsg", "write", "writev", "sendto",
    "sendmsg", "sendfile", "shutdown", "close", "setsockopt", "getsockopt", "getsockname",
    "getpeername", "ioctl", "fcntl", "dup", "dup3",
    // files under --root
    "openat", "openat2", "newfstatat", "fstat", "statx", "lseek", "pread64", "preadv", "getdents64",
    "readlink", "readlinkat", "fadvise64", "flock",
    // memory (mmap and mprotect below, without PROT_EXEC)
    "brk", "munmap", "mremap", "madvise", "msync", "membarrier",
    // threads (clone below, CLONE_THREAD only) and their synchronisation
    "futex", "set_robust_list", "get_robust_list", "set_tid_address", "rseq", "sched_yield",
    "sched_getaffinity", "gettid",
    // time
    "clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep", "gettimeofday", "time",
    // signals: the loop's handlers, abort() on a fatal check
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigtimedwait",
    "sigaltstack", "tgkill", "tkill", "restart_syscall",
    // who and where am I
    "getpid", "getppid", "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid",
    "getgroups", "uname", "getrandom", "getrlimit", "getrusage", "prctl", "capget",
    // leaving
    "exit", "exit_group"};

struct FilterDeleter {
  void operator()(void *filter) const { seccomp_release(filter); }
};
using Filter = std::unique_ptr<void, FilterDeleter>;

Error seccompError(int negativeErrno, const std::string &what) {
  return Error{-negativeErrno, what, {}};
}

// Adds one rule; a name this architecture does not have is skipped.
Result<void> allow(void *filter, const char *name, unsigned int count = 0,
                   const scmp_arg_cmp *conditions = nullptr) {
  int number = seccomp_syscall_resolve_name(name);
  if (number == __NR_SCMP_ERROR) {
    return {};
  }
  int rc = seccomp_rule_add_array(filter, SCMP_ACT_ALLOW, number, count, conditions);
  if (rc != 0) {
    return seccompError(rc, std::string("add the system call ") + name + " to the worker's filter");
  }
  return {};
}

} // namespace

Result<void> confineToWorkerSyscalls() {
  Filter filter(seccomp_init(SCMP_ACT_KILL_PROCESS));
  if (!filter) {
    return Error{ENOMEM, "create the worker's system-call filter", {}};
  }
  for (const char *name : kAllowed) {
    if (auto added = allow(filter.get(), name); !added) {
      return added;
    }
  }
  // No executable memory: nothing is loaded once a worker serves.
  const std::array noExec = {SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)};
  for (const char *name : {"mmap", "mprotect"}) {
    if (auto added = allow(filter.get(), name, noExec.size(), noExec.data()); !added) {
      return added;
    }
  }
  // Threads (a library's offload pool, the C library's own), never a new process.
  const std::array thread = {SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD)};
  if (auto added = allow(filter.get(), "clone", thread.size(), thread.data()); !added) {
    return added;
  }
  // clone3 passes its flags in memory, where a filter cannot read them: ENOSYS makes the C
  // library use clone.
  if (int rc = seccomp_rule_add(filter.get(), SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
      rc != 0) {
    return seccompError(rc, "add clone3 to the worker's filter");
  }
  // Reading the limits is allowed (prlimit64 with no new value), raising them is not.
  const std::array readOnly = {SCMP_A2_64(SCMP_CMP_EQ, 0)};
  if (auto added = allow(filter.get(), "prlimit64", readOnly.size(), readOnly.data()); !added) {
    return added;
  }
  if (int rc = seccomp_load(filter.get()); rc != 0) {
    return seccompError(rc, "load the worker's system-call filter");
  }
  return {};
}

} // namespace sockdispatch
