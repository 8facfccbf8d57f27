// IdleConnections: the idle keep-alive connections of a loop in two deadline-ordered queues,
// and the one timer that closes those whose deadline passed.
#include "http/idle_connections.h"

#include "core/timeval.h"
#include "http/http_connection.h"

namespace sockdispatch {

IdleConnections::IdleConnections(event_base *base)
    : timer_(evtimer_new(
          base,
          [](evutil_socket_t, short, void *ctx) { static_cast<IdleConnections *>(ctx)->onTimer(); },
          this)) {}

IdleConnections::~IdleConnections() {
  for (Ends &ends : queues_) {
    while (ends.head != nullptr) {
      remove(*ends.head);
    }
  }
}

void IdleConnections::add(HttpConnection &connection, Clock::time_point deadline, Queue queue) {
  IdleLink &link = connection.idleLink_;
  if (link.linked) {
    remove(connection);
  }
  Ends &ends = queues_[queue];
  link.deadline = deadline;
  link.queue = queue;
  link.linked = true;
  link.next = nullptr;
  link.previous = ends.tail;
  if (ends.tail != nullptr) {
    ends.tail->idleLink_.next = &connection;
  } else {
    ends.head = &connection;
  }
  ends.tail = &connection;
  ++size_;
  if (ends.head == &connection) {
    armFor(deadline);
  }
}

void IdleConnections::remove(HttpConnection &connection) {
  IdleLink &link = connection.idleLink_;
  if (!link.linked) {
    return;
  }
  Ends &ends = queues_[link.queue];
  (link.previous != nullptr ? link.previous->idleLink_.next : ends.head) = link.next;
  (link.next != nullptr ? link.next->idleLink_.previous : ends.tail) = link.previous;
  link = IdleLink{};
  --size_;
}

void IdleConnections::armFor(Clock::time_point when) {
  if (armed_ && armedFor_ <= when) {
    return; // it fires first, and re-arms for what is left then
  }
  armed_ = true;
  armedFor_ = when;
  timeval left = toTimeval(when - Clock::now());
  evtimer_add(timer_.get(), &left);
}

void IdleConnections::onTimer() {
  armed_ = false;
  Clock::time_point now = Clock::now();
  for (Ends &ends : queues_) {
    while (ends.head != nullptr && ends.head->idleLink_.deadline <= now) {
      HttpConnection &expired = *ends.head;
      remove(expired);
      expired.idleExpired(); // closes it; its owner frees it later, outside this call
    }
  }
  for (Ends &ends : queues_) {
    if (ends.head != nullptr) {
      armFor(ends.head->idleLink_.deadline);
    }
  }
}

} // namespace sockdispatch
