#include "library/library_handler.h"

#include <spdlog/spdlog.h>

#include <exception>
#include <stdexcept>

namespace sockdispatch {

namespace {

Response failed(std::string_view what, const std::exception_ptr &failure) {
  try {
    std::rethrow_exception(failure);
  } catch (const std::exception &error) {
    spdlog::error("{} failed: {}", what, error.what());
  } catch (...) {
    spdlog::error("{} failed: unknown exception", what);
  }
  return simpleResponse(500, reasonPhrase(500));
}

} // namespace

// The Exchange a user's handler sees for one request. Lives only during the handler's call;
// offloaded work keeps what it needs in its own closures.
class LibraryHandler::WorkerExchange : public Exchange {
public:
  WorkerExchange(const Request &request, const WorkerInfo &who, OffloadPool *pool, Deferral &later,
                 uint32_t retryAfterSeconds)
      : request_(request), who_(who), pool_(pool), later_(later),
        retryAfterSeconds_(retryAfterSeconds) {}

  [[nodiscard]] const HttpRequest &request() const override { return request_; }
  HttpResponse &response() override { return response_; }
  [[nodiscard]] const WorkerInfo &worker() const override { return who_; }
  bool offload(std::function<HttpResponse()> work) override {
    auto result = std::make_shared<HttpResponse>();
    return offloadThen([result, work = std::move(work)] { *result = work(); },
                       [result] { return std::move(*result); });
  }
  [[nodiscard]] bool deferred() const { return deferred_; }

protected:
  bool offloadThen(std::function<void()> work, std::function<HttpResponse()> then) override {
    if (deferred_) {
      throw std::logic_error("offload() called twice for one request");
    }
    if (pool_ == nullptr || pool_->full()) {
      // Back-pressure: every thread busy and the queue full (or no pool at all).
      response_ = HttpResponse(503, "the server is busy; retry later\n");
      response_.addHeader("Retry-After", std::to_string(retryAfterSeconds_));
      return false;
    }
    auto token = std::make_shared<PendingResponse>(later_.defer());
    deferred_ = true;
    bool accepted = pool_->submit(
        std::move(work), [token, then = std::move(then)](const std::exception_ptr &failure) {
          Response answer;
          if (failure) {
            answer = failed("offloaded work", failure);
          } else {
            try {
              answer = ResponseAccess::toInternal(then());
            } catch (...) {
              answer = failed("the offload completion", std::current_exception());
            }
          }
          token->complete(std::move(answer)); // false once the client has gone: dropped
        });
    if (!accepted) {
      throw std::logic_error("the offload pool refused a job it had room for");
    }
    return true;
  }

private:
  HttpRequest request_;
  HttpResponse response_;
  const WorkerInfo &who_;
  OffloadPool *pool_;
  Deferral &later_;
  uint32_t retryAfterSeconds_;
  bool deferred_ = false;
};

std::unique_ptr<LibraryHandler> LibraryHandler::create(std::shared_ptr<const ServerRoutes> routes,
                                                       Settings settings, WorkerContext &context) {
  WorkerInfo who{context.identity.slot, context.identity.pid};
  std::unique_ptr<LibraryHandler> handler(new LibraryHandler(std::move(routes), settings, who));
  if (settings.pool.threads > 0) {
    Scoreboard &board = context.scoreboard;
    uint32_t slot = who.slot;
    // Outstanding offloaded work counts as open load on the slot: load-aware policies
    // (least_conn, p2c, skip_load) see a worker whose pool is busy as busy.
    auto pool = OffloadPool::create(context.base, settings.pool, [&board, slot](int delta) {
      if (delta > 0) {
        board.connectionOpened(slot);
      } else {
        board.connectionClosed(slot);
      }
    });
    if (!pool) {
      spdlog::critical("{}", pool.error().message());
      return nullptr;
    }
    handler->pool_ = std::move(pool.value());
  }
  if (handler->routes_->workerStart) {
    try {
      handler->routes_->workerStart(who);
    } catch (const std::exception &error) {
      spdlog::critical("the worker start hook failed: {}", error.what());
      return nullptr;
    } catch (...) {
      spdlog::critical("the worker start hook failed: unknown exception");
      return nullptr;
    }
  }
  handler->started_ = true;
  return handler;
}

LibraryHandler::LibraryHandler(std::shared_ptr<const ServerRoutes> routes, Settings settings,
                               WorkerInfo who)
    : routes_(std::move(routes)), settings_(settings), who_(who) {}

LibraryHandler::~LibraryHandler() {
  pool_.reset(); // queued work cancelled, running work waited for
  if (started_ && routes_->workerStop) {
    try {
      routes_->workerStop(who_);
    } catch (const std::exception &error) {
      spdlog::error("the worker stop hook failed: {}", error.what());
    } catch (...) {
      spdlog::error("the worker stop hook failed: unknown exception");
    }
  }
}

const RequestHandler *LibraryHandler::find(const Request &request, Response &response) const {
  auto routes = routes_->byPath.find(HttpRequest(request).path());
  if (routes == routes_->byPath.end()) {
    if (routes_->fallback) {
      return &routes_->fallback;
    }
    response = simpleResponse(404, reasonPhrase(404));
    return nullptr;
  }
  std::string allow;
  for (const ServerRoutes::Route &route : routes->second) {
    if (route.method == request.method) {
      return &route.handler;
    }
  }
  for (const ServerRoutes::Route &route : routes->second) {
    if (request.method == "HEAD" && route.method == "GET") {
      return &route.handler;
    }
  }
  for (const ServerRoutes::Route &route : routes->second) {
    allow += allow.empty() ? "" : ", ";
    allow += route.method;
  }
  response = simpleResponse(405, reasonPhrase(405));
  response.setHeader("Allow", allow);
  return nullptr;
}

void LibraryHandler::handle(const Request &request, Response &response) const {
  // Only respond() can defer; a caller without a Deferral gets offload() refused.
  class Refuse : public Deferral {
  public:
    PendingResponse defer() override { throw std::logic_error("this call cannot defer"); }
  } refuse;
  respond(request, response, refuse);
}

void LibraryHandler::respond(const Request &request, Response &response, Deferral &later) const {
  const RequestHandler *handler = find(request, response);
  if (handler == nullptr) {
    return;
  }
  WorkerExchange exchange(request, who_, pool_.get(), later, settings_.retryAfterSeconds);
  (*handler)(exchange); // an exception reaches the connection: 500
  if (!exchange.deferred()) {
    response = ResponseAccess::toInternal(std::move(exchange.response()));
  }
}

} // namespace sockdispatch
