#pragma once

#include "http/http_exchange.h"
#include "http/http_message.h"
#include "http/idle_connections.h"
#include "library/handler.h"

#include <event2/event.h>

#include <functional>
#include <memory>
#include <vector>

namespace sockdispatch {

class HttpConnection;

struct ConnectionHooks {
  // The connection is done: the owner must free it, but not from inside this call.
  std::function<void(HttpConnection *)> closed;
  std::function<void()> requestAnswered; // scoreboard counter
};

// What the connections of one loop share: the loop, the handler, the limits, the worker's
// identity and the hooks to their owner; the exchanges that busy connections borrow (a few
// spare kept for reuse), and the idle connections with their one timer. It outlives them.
class ConnectionContext {
public:
  // At most this many spare exchanges are kept; one given back beyond it is freed. A loop
  // takes its connections one readiness at a time, so few are busy at once unless their
  // clients stop reading.
  static constexpr size_t kMaxSpare = 16;

  ConnectionContext(event_base *base, const Handler &handler, const WorkerIdentity &who,
                    const HttpLimits &limits, ConnectionHooks hooks);
  ~ConnectionContext();
  ConnectionContext(const ConnectionContext &) = delete;
  ConnectionContext &operator=(const ConnectionContext &) = delete;

  [[nodiscard]] event_base *base() const { return base_; }
  [[nodiscard]] const Handler &handler() const { return handler_; }
  [[nodiscard]] const HttpLimits &limits() const { return limits_; }
  [[nodiscard]] const ConnectionHooks &hooks() const { return hooks_; }
  IdleConnections &idle() { return idle_; }

  // An exchange serving `owner` on `fd`: a spare one when there is one, else a new one.
  std::unique_ptr<HttpExchange> takeExchange(HttpConnection &owner, int fd);
  // Back from a connection gone idle (settled): kept for the next one, or freed.
  void giveBack(std::unique_ptr<HttpExchange> exchange);
  [[nodiscard]] size_t spare() const { return spare_.size(); }

private:
  event_base *base_;
  const Handler &handler_;
  const WorkerIdentity &who_;
  const HttpLimits &limits_;
  ConnectionHooks hooks_;
  std::vector<std::unique_ptr<HttpExchange>> spare_;
  IdleConnections idle_;
};

} // namespace sockdispatch
