#pragma once

#include "core/event_ptr.h"
#include "http/http_connection.h"

#include <event2/event.h>
#include <event2/event_struct.h>

#include <cstddef>
#include <functional>
#include <vector>

namespace sockdispatch {

// Keep-alive connections set aside while they wait for their next request
// (docs/design/idle-connections.md): each is its socket, its keep-alive deadline and its
// count of answers, in one small record with its read event in it; the connection object,
// its buffers and parser are freed. Readable again, a connection is handed back (`wake`) to
// be taken up by a new HttpConnection. Past its deadline it is closed quietly here, as the
// connection itself would have, and `expired` says so. One timer serves them all: records
// are kept in deadline order, which park() expects (each call's deadlines no earlier than
// the last call's; it sorts a call's own).
class ParkedConnections {
public:
  struct Hooks {
    std::function<void(HttpConnection::Idle)> wake; // readable: take it up again
    std::function<void()> expired;                  // one closed at its deadline
  };

  ParkedConnections(event_base *base, Hooks hooks);
  ~ParkedConnections();
  ParkedConnections(const ParkedConnections &) = delete;
  ParkedConnections &operator=(const ParkedConnections &) = delete;

  void park(std::vector<HttpConnection::Idle> idle);
  // Hands every one back (a stop: each is then asked to close when idle).
  void wakeAll();
  [[nodiscard]] size_t size() const { return count_; }

private:
  struct Record;
  static void onReadable(evutil_socket_t fd, short events, void *ctx);
  void onTimer();
  void unlink(Record *record);
  void append(Record *record);
  void armTimer();
  void wake(Record *record);

  event_base *base_;
  Hooks hooks_;
  Record *head_ = nullptr; // earliest deadline
  Record *tail_ = nullptr;
  size_t count_ = 0;
  EventPtr timer_;
};

} // namespace sockdispatch
