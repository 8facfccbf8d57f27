#pragma once

#include "support/http_client.h"

#include <cstdint>
#include <string>
#include <vector>

namespace sockdispatch::test {

// Keep-alive connections that each had one request answered, with the worker that answered.
struct HeldConnection {
  TcpClient client;
  int slot = -1;
};

// Opens `count` connections to 127.0.0.1:port, one at a time, each answered once. Fails the
// current test (and returns fewer) when one is not.
std::vector<HeldConnection> holdAnswered(uint16_t port, int count);

// Connections to `port` with a request sent and not yet read: they queue wherever the
// dispatch puts them. Fails the current test (and returns fewer) when one cannot connect.
std::vector<TcpClient> sendQueued(uint16_t port, int count);

// How many of `held` answered by `slot`.
int heldBy(const std::vector<HeldConnection> &held, int slot);

// After `deadSlot`'s worker died: sends one more request on every held connection. Those of
// the dead worker must get no answer; every other one must be answered by its own worker
// (else the current test fails). Returns how many of the dead worker's got no answer.
int countLostWith(std::vector<HeldConnection> &held, int deadSlot);

} // namespace sockdispatch::test
