// The two ways adopt learns a group: the BPF iterator (listeners, queues, attached program)
// and /proc (who holds and who polls each listener), on real sockets and processes.
#include "adopt/group_scan.h"
#include "adopt/socket_holders.h"
#include "bpf/dispatch_program.h"
#include "support/nginx.h"
#include "support/process.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace sockdispatch::test {
namespace {

UniqueFd reuseportListener(uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr *>(&address), sizeof(address)), 0);
  EXPECT_EQ(::listen(fd.get(), 64), 0);
  return fd;
}

uint64_t inodeOf(int fd) {
  struct stat status {};
  ::fstat(fd, &status);
  return status.st_ino;
}

UniqueFd connectTo(uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr *>(&address), sizeof(address)), 0);
  return fd;
}

class GroupDiscovery : public BpfTest {};

TEST_F(GroupDiscovery, TheIteratorSeesEveryListenerItsQueueAndTheGroupsProgram) {
  uint16_t port = unusedPort();
  UniqueFd first = reuseportListener(port);
  UniqueFd second = reuseportListener(port);
  UniqueFd other = reuseportListener(unusedPort());
  std::vector<UniqueFd> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(connectTo(port));
  }

  auto scan = GroupScan::load(port);
  ASSERT_TRUE(scan) << scan.error().message();
  auto listeners = scan.value()->scan();
  ASSERT_TRUE(listeners) << listeners.error().message();
  ASSERT_EQ(listeners->size(), 2U) << "the other port's listener is not reported";
  uint32_t queued = 0;
  std::set<uint64_t> inodes;
  for (const ListenerRecord &listener : *listeners) {
    EXPECT_TRUE(listener.inGroup);
    EXPECT_EQ(listener.programId, 0U);
    EXPECT_EQ(listener.backlog, 64U);
    EXPECT_EQ(listener.address.toString(), "127.0.0.1:" + std::to_string(port));
    EXPECT_EQ(listener.uid, ::getuid());
    queued += listener.acceptQueue;
    inodes.insert(listener.inode);
  }
  EXPECT_EQ(queued, 3U) << "every connection nobody accepted";
  EXPECT_EQ(inodes, (std::set<uint64_t>{inodeOf(first.get()), inodeOf(second.get())}));

  auto program = DispatchProgram::load();
  ASSERT_TRUE(program) << program.error().message();
  ASSERT_TRUE(program.value()->attachTo(first.get()));
  listeners = scan.value()->scan();
  ASSERT_TRUE(listeners);
  for (const ListenerRecord &listener : *listeners) {
    EXPECT_EQ(listener.programId, program.value()->programId()) << "the whole group's program";
  }
  EXPECT_EQ(bpfProgramName(program.value()->programId()), kDispatchProgramName);
  ASSERT_TRUE(detachReuseportProgram(second.get()));
  listeners = scan.value()->scan();
  ASSERT_TRUE(listeners);
  EXPECT_EQ(listeners->front().programId, 0U);
  EXPECT_EQ(detachReuseportProgram(second.get()).error().code, ENOENT);
}

TEST_F(GroupDiscovery, AListenersWorkerIsTheProcessThatPollsIt) {
  uint16_t port = unusedPort();
  UniqueFd polled = reuseportListener(port);
  UniqueFd idle = reuseportListener(port);
  // A child that polls only `polled`, as an nginx worker polls its own listener while its
  // master holds all of them.
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t child = ::fork();
  if (child == 0) {
    int epoll = ::epoll_create1(0);
    epoll_event event{};
    event.events = EPOLLIN;
    ::epoll_ctl(epoll, EPOLL_CTL_ADD, polled.get(), &event);
    (void)::write(ready[1], "x", 1);
    ::pause();
    ::_exit(0);
  }
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);
  ::close(ready[0]);
  ::close(ready[1]);

  std::set<uint64_t> inodes{inodeOf(polled.get()), inodeOf(idle.get())};
  SocketHolders holders = findSocketHolders(inodes, 0);
  auto polledWorker = workerOf(inodeOf(polled.get()), holders);
  ASSERT_TRUE(polledWorker);
  EXPECT_EQ(polledWorker->pid, child);
  EXPECT_TRUE(polledWorker->polls);
  EXPECT_EQ(holders[inodeOf(polled.get())].size(), 2U) << "this process and the child";
  // Nobody polls `idle`: of its two holders, both hold both listeners; the newer one wins.
  auto idleWorker = workerOf(inodeOf(idle.get()), holders);
  ASSERT_TRUE(idleWorker);
  EXPECT_EQ(idleWorker->pid, child);
  EXPECT_FALSE(idleWorker->polls);
  SocketHolders withoutChild = findSocketHolders(inodes, child);
  EXPECT_EQ(workerOf(inodeOf(idle.get()), withoutChild)->pid, ::getpid());
  EXPECT_FALSE(workerOf(12345678, holders));

  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
}

} // namespace
} // namespace sockdispatch::test
