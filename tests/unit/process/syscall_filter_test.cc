// The workers' system-call filter, loaded for real: each case forks a child that confines
// itself with confineToWorkerSyscalls() and makes one call. What a worker does (files,
// threads, passing a descriptor, accepting) goes on; what it never does (run a program, fork,
// open a socket, map executable memory, trace, signal another process, raise a limit) ends
// the child with SIGSYS; clone3 answers ENOSYS, so the C library falls back to clone.
#include "process/syscall_filter.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/sched.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <functional>
#include <string>
#include <thread>

namespace sockdispatch {
namespace {

// What the child reports by its exit code.
constexpr int kDone = 0;
constexpr int kNotConfined = 90;
constexpr int kCallFailed = 91;

struct Case {
  std::string name;
  std::function<bool()> call; // true: the call did what it should
  bool killed;                // the filter must end the child with SIGSYS
};

std::ostream &operator<<(std::ostream &out, const Case &c) {
  return out << c.name;
}

// Runs `call` in a confined child; returns its wait status.
int runConfined(const std::function<bool()> &call) {
  pid_t child = ::fork();
  if (child == 0) {
    if (!confineToWorkerSyscalls()) {
      ::_exit(kNotConfined);
    }
    ::_exit(call() ? kDone : kCallFailed);
  }
  int status = 0;
  if (child < 0 || ::waitpid(child, &status, 0) != child) {
    ADD_FAILURE() << "fork or waitpid: " << std::strerror(errno);
  }
  return status;
}

class SyscallFilter : public ::testing::TestWithParam<Case> {};

TEST_P(SyscallFilter, EndsTheCallAsTheWorkersFilterSays) {
  int status = runConfined(GetParam().call);
  if (GetParam().killed) {
    ASSERT_TRUE(WIFSIGNALED(status)) << "exit code " << WEXITSTATUS(status);
    EXPECT_EQ(WTERMSIG(status), SIGSYS);
  } else {
    ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status);
    EXPECT_EQ(WEXITSTATUS(status), kDone) << "90: not confined, 91: the call failed";
  }
}

bool readsAFile() {
  int fd = ::open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  std::array<char, 64> buffer{};
  bool read = fd >= 0 && ::read(fd, buffer.data(), buffer.size()) > 0;
  ::close(fd);
  return read;
}

bool startsAThread() {
  bool ran = false;
  std::thread([&ran] { ran = true; }).join();
  return ran;
}

bool clone3AnswersEnosys() {
  clone_args args{};
  args.exit_signal = SIGCHLD;
  long rc = ::syscall(SYS_clone3, &args, sizeof(args));
  if (rc == 0) {
    ::_exit(kDone); // a new process: the filter failed
  }
  return rc == -1 && errno == ENOSYS;
}

INSTANTIATE_TEST_SUITE_P(
    Worker, SyscallFilter,
    ::testing::Values(
        Case{"ReadsAFile", readsAFile, false}, Case{"StartsAThread", startsAThread, false},
        Case{"MapsMemory",
             [] {
               void *page = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE,
                                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
               return page != MAP_FAILED && ::munmap(page, 4096) == 0;
             },
             false},
        Case{"ReadsItsLimits",
             [] {
               rlimit limit{};
               return ::getrlimit(RLIMIT_NOFILE, &limit) == 0;
             },
             false},
        Case{"Clone3AnswersEnosys", clone3AnswersEnosys, false},
        Case{"RunsNoProgram",
             [] {
               char *const argv[] = {const_cast<char *>("/bin/true"), nullptr};
               ::execv("/bin/true", argv);
               return false;
             },
             true},
        Case{"ForksNoProcess",
             [] {
               pid_t pid = ::fork();
               if (pid == 0) {
                 ::_exit(kDone);
               }
               return false;
             },
             true},
        Case{"OpensNoSocket", [] { return ::socket(AF_INET, SOCK_STREAM, 0) < -1; }, true},
        Case{"MapsNoExecutableMemory",
             [] {
               (void)::mmap(nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                            0);
               return false;
             },
             true},
        Case{"MakesNoMemoryExecutable",
             [] {
               static std::array<char, 8192> area{};
               auto page = reinterpret_cast<uintptr_t>(area.data() + 4095) & ~uintptr_t{4095};
               (void)::mprotect(reinterpret_cast<void *>(page), 4096, PROT_READ | PROT_EXEC);
               return false;
             },
             true},
        Case{"TracesNothing", [] { return ::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) < -1; },
             true},
        Case{"SignalsNoOtherProcess", [] { return ::kill(::getppid(), 0) < -1; }, true},
        Case{"RaisesNoLimit",
             [] {
               rlimit limit{};
               ::getrlimit(RLIMIT_NOFILE, &limit);
               return ::setrlimit(RLIMIT_NOFILE, &limit) < -1;
             },
             true},
        Case{"ChangesNoIdentity", [] { return ::setuid(0) < -1; }, true},
        Case{"LoadsNoBpf", [] { return ::syscall(SYS_bpf, 0, nullptr, 0) < -1; }, true}),
    [](const auto &testInfo) { return testInfo.param.name; });

/*
 * A worker passes connections down the line with SCM_RIGHTS over a socketpair made before its
 * filter: sending and receiving a descriptor goes on under it.
 */
TEST(SyscallFilterLine, PassesADescriptorMadeBeforeTheFilter) {
  std::array<int, 2> pair{};
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair.data()), 0);
  int status = runConfined([&pair] {
    int passed = ::open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    std::array<char, CMSG_SPACE(sizeof(int))> control{};
    char byte = 'x';
    iovec data{&byte, 1};
    msghdr message{};
    message.msg_iov = &data;
    message.msg_iovlen = 1;
    message.msg_control = control.data();
    message.msg_controllen = control.size();
    cmsghdr *header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(header), &passed, sizeof(int));
    if (::sendmsg(pair[0], &message, 0) != 1) {
      return false;
    }
    control.fill(0);
    message.msg_controllen = control.size();
    if (::recvmsg(pair[1], &message, 0) != 1) {
      return false;
    }
    header = CMSG_FIRSTHDR(&message);
    return header != nullptr && header->cmsg_type == SCM_RIGHTS;
  });
  ::close(pair[0]);
  ::close(pair[1]);
  ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), kDone);
}

} // namespace
} // namespace sockdispatch
