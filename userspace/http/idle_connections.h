#pragma once

#include "core/event_ptr.h"

#include <event2/event.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace sockdispatch {

class HttpConnection;

// Where an idle connection waits, kept in the connection itself (no allocation per wait).
struct IdleLink {
  HttpConnection *previous = nullptr;
  HttpConnection *next = nullptr;
  std::chrono::steady_clock::time_point deadline;
  uint8_t queue = 0;
  bool linked = false;
};

// The idle keep-alive connections of one loop, each until its deadline, with one timer for
// all of them (a connection waiting costs no timer event of its own).
//
// Two queues, each in deadline order by construction: a connection joins the tail of the
// queue whose wait it gets (the keep-alive timeout, or the shorter linger of a draining loop),
// so its deadline, its idle start plus that queue's wait, is never before the one ahead of it.
// Adding and removing cost O(1) and never search. The timer is armed for the earliest head;
// it is not moved when a head leaves (the next firing finds the new head and re-arms).
class IdleConnections {
public:
  using Clock = std::chrono::steady_clock;
  enum Queue : uint8_t { kKeepAlive = 0, kDraining = 1 };

  explicit IdleConnections(event_base *base);
  ~IdleConnections();
  IdleConnections(const IdleConnections &) = delete;
  IdleConnections &operator=(const IdleConnections &) = delete;

  // At the tail of `queue`; `deadline` is not before that of any connection already in it.
  void add(HttpConnection &connection, Clock::time_point deadline, Queue queue);
  void remove(HttpConnection &connection);
  [[nodiscard]] size_t size() const { return size_; }

private:
  struct Ends {
    HttpConnection *head = nullptr;
    HttpConnection *tail = nullptr;
  };
  void onTimer();
  void armFor(Clock::time_point when);

  std::array<Ends, 2> queues_{};
  size_t size_ = 0;
  EventPtr timer_;
  bool armed_ = false;
  Clock::time_point armedFor_;
};

} // namespace sockdispatch
