// The line's message channel (userspace/line/fd_channel.cc): framing of LineMessage with 0..253
// descriptors over real SOCK_SEQPACKET socketpairs, the receiver's checks on foreign or broken
// messages (every descriptor that arrives with one is closed), back-pressure and EOF.
#include "line/fd_channel.h"

#include <dirent.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <ostream>
#include <string>
#include <vector>

namespace sockdispatch {
namespace {

using testing::HasSubstr;

struct Channel {
  UniqueFd a;
  UniqueFd b;
};

Channel channel() {
  auto pair = makeChannelPair();
  EXPECT_TRUE(pair.ok()) << (pair.ok() ? "" : pair.error().message());
  return {std::move(pair->first), std::move(pair->second)};
}

// Distinct open files, each with its own inode.
std::vector<UniqueFd> memfds(size_t count) {
  std::vector<UniqueFd> fds;
  for (size_t i = 0; i < count; ++i) {
    fds.emplace_back(::memfd_create(("line-test-" + std::to_string(i)).c_str(), MFD_CLOEXEC));
    EXPECT_TRUE(fds.back().valid()) << "memfd_create: " << std::strerror(errno);
  }
  return fds;
}

std::vector<int> raw(const std::vector<UniqueFd> &fds) {
  std::vector<int> out;
  out.reserve(fds.size());
  for (const auto &fd : fds) {
    out.push_back(fd.get());
  }
  return out;
}

ino_t inodeOf(int fd) {
  struct stat status {};
  EXPECT_EQ(::fstat(fd, &status), 0) << "fstat fd " << fd;
  return status.st_ino;
}

bool isOpen(int fd) {
  return ::fcntl(fd, F_GETFD) != -1 || errno != EBADF;
}

size_t openFdCount() {
  size_t count = 0;
  DIR *dir = ::opendir("/proc/self/fd");
  EXPECT_NE(dir, nullptr) << "opendir /proc/self/fd";
  while (dirent *entry = ::readdir(dir)) {
    count += entry->d_name[0] != '.' ? 1 : 0;
  }
  ::closedir(dir);
  return count - 1; // the directory stream's own fd
}

// A sender that breaks the protocol: arbitrary bytes, arbitrary SCM_RIGHTS, optional
// SCM_CREDENTIALS.
void rawSend(int fd, const void *data, size_t length, std::span<const int> fds,
             bool credentials = false) {
  iovec iov{const_cast<void *>(data), length};
  msghdr header{};
  header.msg_iov = &iov;
  header.msg_iovlen = 1;
  alignas(cmsghdr)
      std::array<unsigned char, CMSG_SPACE(16 * sizeof(int)) + CMSG_SPACE(sizeof(ucred))>
          control{};
  size_t used = 0;
  if (!fds.empty()) {
    auto *cmsg = reinterpret_cast<cmsghdr *>(control.data());
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
    std::memcpy(CMSG_DATA(cmsg), fds.data(), fds.size() * sizeof(int));
    used += CMSG_SPACE(fds.size() * sizeof(int));
  }
  if (credentials) {
    auto *cmsg = reinterpret_cast<cmsghdr *>(control.data() + used);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_CREDENTIALS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(ucred));
    ucred self{::getpid(), ::getuid(), ::getgid()};
    std::memcpy(CMSG_DATA(cmsg), &self, sizeof(self));
    used += CMSG_SPACE(sizeof(ucred));
  }
  header.msg_control = used != 0 ? control.data() : nullptr;
  header.msg_controllen = used;
  ASSERT_EQ(::sendmsg(fd, &header, MSG_NOSIGNAL), static_cast<ssize_t>(length))
      << "raw sendmsg: " << std::strerror(errno);
}

// Records the descriptors the kernel installed, so tests can prove the receiver closed them.
class RecordingSyscalls : public ChannelSyscalls {
public:
  ssize_t sendMessage(int fd, const msghdr *message, int flags) override {
    return systemChannelSyscalls().sendMessage(fd, message, flags);
  }
  ssize_t receiveMessage(int fd, msghdr *message, int flags) override {
    if (controlLimit_ != 0) {
      message->msg_controllen = controlLimit_;
    }
    ssize_t got = systemChannelSyscalls().receiveMessage(fd, message, flags);
    int saved = errno;
    if (got >= 0) {
      for (cmsghdr *c = CMSG_FIRSTHDR(message); c != nullptr; c = CMSG_NXTHDR(message, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
          size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
          for (size_t i = 0; i < count; ++i) {
            int installed = -1;
            std::memcpy(&installed, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            installed_.push_back(installed);
          }
        }
      }
    }
    errno = saved;
    return got;
  }
  void limitControl(size_t bytes) { controlLimit_ = bytes; }
  [[nodiscard]] const std::vector<int> &installed() const { return installed_; }

private:
  size_t controlLimit_ = 0;
  std::vector<int> installed_;
};

// Fails the first `failures` calls of each kind with `code`, then calls the kernel.
class FailingSyscalls : public ChannelSyscalls {
public:
  FailingSyscalls(int code, int failures) : code_(code), failures_(failures) {}
  ssize_t sendMessage(int fd, const msghdr *message, int flags) override {
    if (++sends_ <= failures_) {
      errno = code_;
      return -1;
    }
    return systemChannelSyscalls().sendMessage(fd, message, flags);
  }
  ssize_t receiveMessage(int fd, msghdr *message, int flags) override {
    if (++receives_ <= failures_) {
      errno = code_;
      return -1;
    }
    return systemChannelSyscalls().receiveMessage(fd, message, flags);
  }
  [[nodiscard]] int sends() const { return sends_; }
  [[nodiscard]] int receives() const { return receives_; }

private:
  int code_;
  int failures_;
  int sends_ = 0;
  int receives_ = 0;
};

TEST(MakeChannelPair, NonBlockingCloseOnExecSeqpacket) {
  Channel c = channel();
  for (int fd : {c.a.get(), c.b.get()}) {
    EXPECT_NE(::fcntl(fd, F_GETFL) & O_NONBLOCK, 0) << "O_NONBLOCK on fd " << fd;
    EXPECT_NE(::fcntl(fd, F_GETFD) & FD_CLOEXEC, 0) << "FD_CLOEXEC on fd " << fd;
    int type = 0;
    socklen_t length = sizeof(type);
    ASSERT_EQ(::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length), 0) << "SO_TYPE";
    EXPECT_EQ(type, SOCK_SEQPACKET);
  }
}

class RoundTrip : public testing::TestWithParam<size_t> {};

TEST_P(RoundTrip, SameOpenFilesInOrderWithTheMessage) {
  const size_t count = GetParam();
  Channel c = channel();
  std::vector<UniqueFd> originals = memfds(count);
  size_t baseline = openFdCount();
  auto message = LineMessage::make(LineMessageType::kConnections, 4242, 3);
  auto sent = sendFds(c.a.get(), message, raw(originals));
  ASSERT_TRUE(sent.ok()) << sent.error().message();
  {
    auto got = receive(c.b.get());
    ASSERT_TRUE(got.ok()) << got.error().message();
    EXPECT_FALSE(got->peerClosed);
    EXPECT_EQ(got->message.magic, kLineMagic);
    EXPECT_EQ(got->message.messageType(), LineMessageType::kConnections);
    EXPECT_EQ(got->message.count, count);
    EXPECT_EQ(got->message.hops, 3U);
    EXPECT_EQ(got->message.sequence, 4242U);
    ASSERT_EQ(got->fds.size(), count);
    for (size_t i = 0; i < count; ++i) {
      EXPECT_EQ(inodeOf(got->fds[i].get()), inodeOf(originals[i].get())) << "fd #" << i;
      EXPECT_NE(::fcntl(got->fds[i].get(), F_GETFD) & FD_CLOEXEC, 0) << "MSG_CMSG_CLOEXEC #" << i;
    }
    EXPECT_EQ(openFdCount(), baseline + count);
  }
  EXPECT_EQ(openFdCount(), baseline) << "the received fds are owned by Received";
  auto empty = receive(c.b.get());
  ASSERT_FALSE(empty.ok());
  EXPECT_TRUE(wouldBlock(empty.error())) << empty.error().message();
}

INSTANTIATE_TEST_SUITE_P(Fds, RoundTrip, testing::Values(0, 1, 16, kMaxFdsPerMessage),
                         [](const testing::TestParamInfo<size_t> &p) {
                           return std::to_string(p.param) + "_fds";
                         });

TEST(RoundTrip, ReceivedDescriptorIsTheSameOpenFile) {
  Channel c = channel();
  std::array<int, 2> ends{};
  ASSERT_EQ(::pipe2(ends.data(), O_CLOEXEC), 0) << "pipe2";
  UniqueFd readEnd(ends[0]);
  UniqueFd writeEnd(ends[1]);
  std::array<int, 1> fds{writeEnd.get()};
  ASSERT_TRUE(sendFds(c.a.get(), LineMessage::make(LineMessageType::kSuccessor), fds).ok());
  writeEnd.reset();
  auto got = receive(c.b.get());
  ASSERT_TRUE(got.ok()) << got.error().message();
  ASSERT_EQ(got->fds.size(), 1U);
  ASSERT_EQ(::write(got->fds[0].get(), "x", 1), 1) << "write through the received fd";
  char byte = 0;
  ASSERT_EQ(::read(readEnd.get(), &byte, 1), 1) << "read the pipe";
  EXPECT_EQ(byte, 'x');
}

TEST(RoundTrip, ControlMessagesBothWays) {
  Channel c = channel();
  for (auto type : {LineMessageType::kStopGracefully, LineMessageType::kReload}) {
    ASSERT_TRUE(sendFds(c.a.get(), LineMessage::make(type, 7), {}).ok());
    auto got = receive(c.b.get());
    ASSERT_TRUE(got.ok()) << got.error().message();
    EXPECT_EQ(got->message.messageType(), type);
  }
  ASSERT_TRUE(sendFds(c.b.get(), LineMessage::make(LineMessageType::kReady), {}).ok());
  auto ready = receive(c.a.get());
  ASSERT_TRUE(ready.ok()) << ready.error().message();
  EXPECT_EQ(ready->message.messageType(), LineMessageType::kReady);
}

TEST(SendFds, RefusesMoreFdsThanTheTypeCarries) {
  Channel c = channel();
  std::vector<UniqueFd> fds = memfds(kMaxFdsPerMessage + 1);
  std::vector<int> all = raw(fds);
  auto tooMany = sendFds(c.a.get(), LineMessage::make(LineMessageType::kConnections), all);
  ASSERT_FALSE(tooMany.ok());
  EXPECT_EQ(tooMany.error().code, EINVAL);
  EXPECT_THAT(tooMany.error().message(), HasSubstr("254 fds given, it carries at most 253"));
  auto onReload = sendFds(c.a.get(), LineMessage::make(LineMessageType::kReload),
                          std::span<const int>(all).first(1));
  ASSERT_FALSE(onReload.ok());
  EXPECT_THAT(onReload.error().message(),
              HasSubstr("Failed to send a reload message on fd " + std::to_string(c.a.get())));
  auto twoSuccessors = sendFds(c.a.get(), LineMessage::make(LineMessageType::kSuccessor),
                               std::span<const int>(all).first(2));
  EXPECT_FALSE(twoSuccessors.ok());
  LineMessage unknown;
  unknown.type = 99;
  EXPECT_FALSE(sendFds(c.a.get(), unknown, {}).ok());
  auto nothing = receive(c.b.get());
  ASSERT_FALSE(nothing.ok());
  EXPECT_TRUE(wouldBlock(nothing.error())) << "refused messages are not sent";
}

TEST(SendFds, FullSocketBufferIsEagainAndTheCallerKeepsItsFds) {
  Channel c = channel();
  int small = 1;
  ASSERT_EQ(::setsockopt(c.a.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0)
      << "SO_SNDBUF";
  std::vector<UniqueFd> fds = memfds(1);
  std::array<int, 1> one{fds[0].get()};
  int sent = 0;
  Result<void> last;
  for (int i = 0; i < 100000; ++i) { // bounded: the buffer fills long before
    last = sendFds(c.a.get(), LineMessage::make(LineMessageType::kConnections, i), one);
    if (!last.ok()) {
      break;
    }
    ++sent;
  }
  ASSERT_FALSE(last.ok()) << "the socket buffer never filled";
  EXPECT_TRUE(wouldBlock(last.error())) << last.error().message();
  EXPECT_GT(sent, 0);
  EXPECT_TRUE(isOpen(fds[0].get())) << "a refused send leaves the fd with the caller";

  auto first = receive(c.b.get());
  ASSERT_TRUE(first.ok()) << first.error().message();
  EXPECT_EQ(first->message.sequence, 0U);
  ASSERT_TRUE(sendFds(c.a.get(), LineMessage::make(LineMessageType::kConnections, sent), one).ok())
      << "room again after the receiver read one";
  int drained = 1;
  for (;; ++drained) {
    auto next = receive(c.b.get());
    if (!next.ok()) {
      EXPECT_TRUE(wouldBlock(next.error())) << next.error().message();
      break;
    }
    EXPECT_EQ(next->message.sequence, static_cast<uint64_t>(drained)) << "in order";
  }
  EXPECT_EQ(drained, sent + 1);
}

TEST(SendFds, PeerGoneIsEpipeWithoutSigpipe) {
  Channel c = channel();
  c.b.reset();
  auto sent = sendFds(c.a.get(), LineMessage::make(LineMessageType::kReady), {});
  ASSERT_FALSE(sent.ok());
  EXPECT_EQ(sent.error().code, EPIPE) << sent.error().message();
}

TEST(Receive, PeerClosedIsItsOwnOutcome) {
  Channel c = channel();
  ASSERT_TRUE(sendFds(c.a.get(), LineMessage::make(LineMessageType::kReload), {}).ok());
  c.a.reset();
  auto queued = receive(c.b.get());
  ASSERT_TRUE(queued.ok()) << queued.error().message();
  EXPECT_FALSE(queued->peerClosed) << "what was queued before the close is delivered first";
  auto closed = receive(c.b.get());
  ASSERT_TRUE(closed.ok()) << closed.error().message();
  EXPECT_TRUE(closed->peerClosed);
  EXPECT_TRUE(closed->fds.empty());
}

TEST(Receive, InterruptedCallsAreRetried) {
  Channel c = channel();
  FailingSyscalls interrupted(EINTR, 3);
  ASSERT_TRUE(
      sendFds(c.a.get(), LineMessage::make(LineMessageType::kReload), {}, interrupted).ok());
  auto got = receive(c.b.get(), interrupted);
  ASSERT_TRUE(got.ok()) << got.error().message();
  EXPECT_EQ(interrupted.sends(), 4);
  EXPECT_EQ(interrupted.receives(), 4);
}

TEST(Receive, EndlessInterruptionsGiveUpAfterABound) {
  Channel c = channel();
  FailingSyscalls storm(EINTR, 1000);
  auto sent = sendFds(c.a.get(), LineMessage::make(LineMessageType::kReload), {}, storm);
  ASSERT_FALSE(sent.ok());
  EXPECT_EQ(sent.error().code, EINTR);
  EXPECT_EQ(storm.sends(), 16);
  auto got = receive(c.b.get(), storm);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.error().code, EINTR);
  EXPECT_EQ(storm.receives(), 16);
}

TEST(Receive, InjectedEagainIsWouldBlock) {
  Channel c = channel();
  ASSERT_TRUE(sendFds(c.a.get(), LineMessage::make(LineMessageType::kReload), {}).ok());
  FailingSyscalls busy(EAGAIN, 1);
  auto first = receive(c.b.get(), busy);
  ASSERT_FALSE(first.ok());
  EXPECT_TRUE(wouldBlock(first.error()));
  EXPECT_TRUE(receive(c.b.get(), busy).ok()) << "the message is still queued";
}

TEST(Receive, TruncatedControlDataClosesWhatArrived) {
  Channel c = channel();
  std::vector<UniqueFd> fds = memfds(5);
  size_t baseline = openFdCount();
  ASSERT_TRUE(sendFds(c.a.get(), LineMessage::make(LineMessageType::kConnections), raw(fds)).ok());
  RecordingSyscalls shortControl;
  shortControl.limitControl(CMSG_SPACE(2 * sizeof(int)));
  auto got = receive(c.b.get(), shortControl);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.error().code, EPROTO);
  EXPECT_THAT(got.error().message(),
              HasSubstr("control data truncated (MSG_CTRUNC): 2 fds arrived and were closed"));
  ASSERT_EQ(shortControl.installed().size(), 2U);
  for (int fd : shortControl.installed()) {
    EXPECT_FALSE(isOpen(fd)) << "fd " << fd << " that arrived is closed";
  }
  EXPECT_EQ(openFdCount(), baseline);
}

TEST(Receive, CredentialsAreAnUnexpectedControlMessage) {
  Channel c = channel();
  int on = 1;
  ASSERT_EQ(::setsockopt(c.b.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)), 0) << "SO_PASSCRED";
  auto message = LineMessage::make(LineMessageType::kConnections);
  message.count = 2;
  std::vector<UniqueFd> fds = memfds(2);
  size_t baseline = openFdCount();
  rawSend(c.a.get(), &message, sizeof(message), raw(fds), true);
  RecordingSyscalls recording;
  auto got = receive(c.b.get(), recording);
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(got.error().message(),
              HasSubstr("unexpected control message (level 1, type 2); 2 fds that came with it "
                        "closed"));
  ASSERT_EQ(recording.installed().size(), 2U);
  for (int fd : recording.installed()) {
    EXPECT_FALSE(isOpen(fd)) << "fd " << fd;
  }
  EXPECT_EQ(openFdCount(), baseline);
}

struct BadMessage {
  const char *name;
  uint32_t magic;
  uint32_t type;
  uint32_t count;   // announced
  size_t attached;  // actually sent
  size_t length;    // bytes sent
  const char *says; // in the error message
};

void PrintTo(const BadMessage &c, std::ostream *os) {
  *os << c.name;
}

class Refused : public testing::TestWithParam<BadMessage> {};

TEST_P(Refused, WithAPreciseMessageAndEveryFdClosed) {
  const BadMessage &c = GetParam();
  Channel channelPair = channel();
  std::array<unsigned char, 64> bytes{};
  LineMessage message;
  message.magic = c.magic;
  message.type = c.type;
  message.count = c.count;
  message.sequence = 1;
  std::memcpy(bytes.data(), &message, sizeof(message));
  std::vector<UniqueFd> fds = memfds(c.attached);
  size_t baseline = openFdCount();
  rawSend(channelPair.a.get(), bytes.data(), c.length, raw(fds));

  RecordingSyscalls recording;
  auto got = receive(channelPair.b.get(), recording);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.error().code, EPROTO);
  EXPECT_THAT(got.error().message(), HasSubstr(c.says));
  EXPECT_THAT(got.error().message(), HasSubstr("Failed to receive a line message on fd " +
                                               std::to_string(channelPair.b.get())));
  ASSERT_EQ(recording.installed().size(), c.attached);
  for (int fd : recording.installed()) {
    EXPECT_FALSE(isOpen(fd)) << "fd " << fd << " is closed (fcntl gives EBADF)";
  }
  EXPECT_EQ(openFdCount(), baseline);
}

constexpr auto kConn = static_cast<uint32_t>(LineMessageType::kConnections);
constexpr auto kReloadType = static_cast<uint32_t>(LineMessageType::kReload);
constexpr auto kSuccessorType = static_cast<uint32_t>(LineMessageType::kSuccessor);

INSTANTIATE_TEST_SUITE_P(
    Table, Refused,
    testing::Values(
        BadMessage{"fds_beyond_count", kLineMagic, kConn, 1, 3, 24,
                   "2 fds beyond the announced 1 arrived on a connections message; 3 fds"},
        BadMessage{"fewer_fds_than_count", kLineMagic, kConn, 3, 1, 24,
                   "a connections message announces 3 fds, 1 arrived; 1 fds"},
        BadMessage{"fds_on_a_type_without_fds", kLineMagic, kReloadType, 0, 2, 24,
                   "2 fds arrived on a reload message, which carries none"},
        BadMessage{"count_above_the_type_limit", kLineMagic, kSuccessorType, 2, 2, 24,
                   "a successor message announces 2 fds, it carries at most 1"},
        BadMessage{"short_message", kLineMagic, kConn, 1, 1, 16,
                   "a message of 16 bytes (expected 24); 1 fds that came with it closed"},
        BadMessage{"long_message", kLineMagic, kConn, 1, 1, 32,
                   "a message of more than 24 bytes (expected 24)"},
        BadMessage{"bad_magic", 0xdeadbeef, kConn, 1, 1, 24,
                   "bad magic 0xdeadbeef (expected 0x53444c31)"},
        BadMessage{"unknown_type", kLineMagic, 99, 0, 0, 24, "unknown message type 99"},
        BadMessage{"type_zero", kLineMagic, 0, 0, 0, 24, "unknown message type 0"},
        BadMessage{"empty_message_with_fds", kLineMagic, kConn, 1, 1, 0,
                   "a message of 0 bytes (expected 24)"}),
    [](const testing::TestParamInfo<BadMessage> &p) { return p.param.name; });

} // namespace
} // namespace sockdispatch
