#include "support/held_connections.h"

#include <gtest/gtest.h>

namespace sockdispatch::test {

std::vector<HeldConnection> holdAnswered(uint16_t port, int count) {
  std::vector<HeldConnection> held;
  for (int i = 0; i < count; ++i) {
    auto client = TcpClient::connect(port);
    if (!client || !client->send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")) {
      ADD_FAILURE() << "held connection " << i << " could not be made";
      return held;
    }
    auto reply = client->readReply();
    if (!reply) {
      ADD_FAILURE() << "held connection " << i << " was not answered";
      return held;
    }
    held.push_back({std::move(*client), reply->workerSlot()});
  }
  return held;
}

std::vector<TcpClient> sendQueued(uint16_t port, int count) {
  std::vector<TcpClient> queued;
  for (int i = 0; i < count; ++i) {
    auto client = TcpClient::connect(port);
    if (!client || !client->send("GET /?queued HTTP/1.1\r\nHost: x\r\n\r\n")) {
      ADD_FAILURE() << "queued connection " << i << " could not be made";
      return queued;
    }
    queued.push_back(std::move(*client));
  }
  return queued;
}

int heldBy(const std::vector<HeldConnection> &held, int slot) {
  int count = 0;
  for (const auto &h : held) {
    count += h.slot == slot ? 1 : 0;
  }
  return count;
}

int countLostWith(std::vector<HeldConnection> &held, int deadSlot) {
  int lost = 0;
  for (auto &h : held) {
    bool sent = h.client.send("GET /?again HTTP/1.1\r\nHost: x\r\n\r\n");
    auto reply = sent ? h.client.readReply() : std::nullopt;
    if (h.slot == deadSlot) {
      EXPECT_FALSE(reply) << "a connection of the killed worker was answered";
      lost += reply ? 0 : 1;
      continue;
    }
    EXPECT_TRUE(reply) << "a connection of slot " << h.slot << " died";
    if (reply) {
      EXPECT_EQ(reply->status, 200);
      EXPECT_EQ(reply->workerSlot(), h.slot);
    }
  }
  return lost;
}

} // namespace sockdispatch::test
