// The agent port's responder (control/agent_responder) on a real loopback socket and a real
// libevent loop, over a hand-made scoreboard: every connection gets one line in HAProxy's
// syntax and a clean close; what a client sends is read and ignored; clients that never close
// (more than the cap) do not keep others from their answers; a stop answers drain.
#include "control/agent_responder.h"
#include "core/event_ptr.h"
#include "support/agent_syntax.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace sockdispatch {
namespace {

class AgentResponderTest : public testing::Test {
protected:
  void SetUp() override {
    for (uint32_t slot = 0; slot < 4; ++slot) {
      board_.prepareSlot(slot, 1);
      board_.setPid(slot, static_cast<pid_t>(1000 + slot));
      board_.setState(slot, SD_SLOT_RUNNING);
    }
    storeRelease<__u32>(config_.nr_slots, 4);
    storeRelease<__u32>(config_.agent_capacity, 10);
    auto address = parseAddress("127.0.0.1", 0);
    ASSERT_TRUE(address);
    auto opened = AgentResponder::open(*address, board_);
    ASSERT_TRUE(opened) << opened.error().message();
    responder_ = std::move(opened.value());
    responder_->setStoppedProbe([this](pid_t pid) { return pid == stoppedPid_; });
    base_.reset(event_base_new());
    ASSERT_TRUE(responder_->start(base_.get()));
  }

  // Runs the master's loop here while `clients` runs on a thread of its own; returns when it
  // is done.
  void withLoop(const std::function<void()> &clients) {
    std::array<int, 2> done{};
    ASSERT_EQ(::pipe(done.data()), 0) << "pipe";
    EventPtr wake(event_new(
        base_.get(), done[0], EV_READ,
        [](evutil_socket_t, short, void *base) {
          event_base_loopbreak(static_cast<event_base *>(base));
        },
        base_.get()));
    event_add(wake.get(), nullptr);
    std::thread thread([&] {
      clients();
      char one = 1;
      (void)::write(done[1], &one, 1);
    });
    event_base_dispatch(base_.get());
    thread.join();
    ::close(done[0]);
    ::close(done[1]);
  }

  [[nodiscard]] UniqueFd connectToAgent() const {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    timeval bound{5, 0}; // a test that fails does not hang
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof(bound));
    const SocketAddress &address = responder_->address();
    if (::connect(fd.get(), reinterpret_cast<const sockaddr *>(&address.storage), address.length) !=
        0) {
      ADD_FAILURE() << "connect to the agent port: " << std::strerror(errno);
    }
    return fd;
  }

  // Everything until the responder closes; `error` is the errno of a failed read (0: EOF).
  static std::string readToEnd(int fd, int *error) {
    std::string text;
    std::array<char, 256> buffer{};
    *error = 0;
    for (;;) {
      ssize_t got = ::recv(fd, buffer.data(), buffer.size(), 0);
      if (got == 0) {
        return text;
      }
      if (got < 0) {
        *error = errno;
        return text;
      }
      text.append(buffer.data(), static_cast<size_t>(got));
    }
  }

  std::vector<sd_slot> slots_ = std::vector<sd_slot>(SD_MAX_WORKERS);
  sd_config config_{};
  Scoreboard board_{slots_.data(), &config_};
  pid_t stoppedPid_ = 0;
  EventBasePtr base_;
  std::unique_ptr<AgentResponder> responder_; // its events go before the loop
};

TEST_F(AgentResponderTest, AnswersOneLineInHAProxysSyntaxThenCloses) {
  for (uint32_t slot = 0; slot < 4; ++slot) {
    board_.connectionOpened(slot); // 1 of 10 each: 90 % free
  }
  std::string text;
  int error = 0;
  withLoop([&] {
    UniqueFd client = connectToAgent();
    text = readToEnd(client.get(), &error);
  });
  EXPECT_EQ(error, 0) << "closed with a FIN, not a reset: " << std::strerror(error);
  EXPECT_EQ(text, "up ready 90%\n");
  std::string problem;
  auto reply = test::parseAgentReply(text, &problem);
  ASSERT_TRUE(reply) << problem;
  EXPECT_EQ(reply->weightPercent, 90);
}

TEST_F(AgentResponderTest, WhatTheClientSendsIsIgnored) {
  std::string text;
  int error = 0;
  withLoop([&] {
    UniqueFd client = connectToAgent();
    std::string junk = "be_web/host1\ndrain\nmaint\n" + std::string(10000, 'x');
    ASSERT_EQ(::send(client.get(), junk.data(), junk.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(junk.size()))
        << "send agent-send text";
    text = readToEnd(client.get(), &error);
  });
  EXPECT_EQ(error, 0) << std::strerror(error);
  EXPECT_EQ(text, "up ready 100%\n") << "nothing a client says changes the answer";
}

TEST_F(AgentResponderTest, ClientsThatNeverCloseDoNotHoldOthersBack) {
  std::string text;
  int error = 0;
  withLoop([&] {
    std::vector<UniqueFd> silent;
    for (size_t i = 0; i < AgentResponder::kMaxClients + 16; ++i) {
      silent.push_back(connectToAgent()); // never read, never closed (until the end)
    }
    UniqueFd client = connectToAgent();
    text = readToEnd(client.get(), &error);
  });
  EXPECT_EQ(error, 0) << std::strerror(error);
  EXPECT_EQ(text, "up ready 100%\n");
}

TEST_F(AgentResponderTest, StoppedWorkersLowerTheWeightAndNoneLiveIsDown) {
  stoppedPid_ = 1002;
  std::vector<std::string> texts;
  withLoop([&] {
    int error = 0;
    UniqueFd first = connectToAgent();
    texts.push_back(readToEnd(first.get(), &error));
  });
  for (uint32_t slot = 0; slot < 4; ++slot) {
    board_.setState(slot, SD_SLOT_DEAD);
  }
  withLoop([&] {
    int error = 0;
    UniqueFd second = connectToAgent();
    texts.push_back(readToEnd(second.get(), &error));
  });
  ASSERT_EQ(texts.size(), 2U);
  EXPECT_EQ(texts[0], "up ready 75%\n");
  EXPECT_EQ(texts[1], "down#no live worker\n");
}

TEST_F(AgentResponderTest, LeavingAndStoppingAnswerDrain) {
  storeRelease<__u32>(config_.leaving, 1);
  std::vector<std::string> texts;
  auto ask = [&] {
    withLoop([&] {
      int error = 0;
      UniqueFd client = connectToAgent();
      texts.push_back(readToEnd(client.get(), &error));
    });
  };
  ask();
  storeRelease<__u32>(config_.leaving, 0);
  responder_->stopping();
  ask();
  EXPECT_EQ(texts, (std::vector<std::string>{"drain\n", "drain\n"}));
}

} // namespace
} // namespace sockdispatch
