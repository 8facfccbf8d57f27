// ConnectionContext: what a loop's connections share, and the spare exchanges.
#include "http/connection_context.h"

namespace sockdispatch {

ConnectionContext::ConnectionContext(event_base *base, const Handler &handler,
                                     const WorkerIdentity &who, const HttpLimits &limits,
                                     ConnectionHooks hooks)
    : base_(base), handler_(handler), who_(who), limits_(limits), hooks_(std::move(hooks)),
      idle_(base) {
  spare_.reserve(kMaxSpare);
}

ConnectionContext::~ConnectionContext() = default;

std::unique_ptr<HttpExchange> ConnectionContext::takeExchange(HttpConnection &owner, int fd) {
  std::unique_ptr<HttpExchange> exchange;
  if (spare_.empty()) {
    exchange = std::make_unique<HttpExchange>(base_, fd, who_, limits_);
  } else {
    exchange = std::move(spare_.back());
    spare_.pop_back();
  }
  exchange->bind(owner, fd);
  return exchange;
}

void ConnectionContext::giveBack(std::unique_ptr<HttpExchange> exchange) {
  if (spare_.size() < kMaxSpare) {
    spare_.push_back(std::move(exchange));
  }
}

} // namespace sockdispatch
