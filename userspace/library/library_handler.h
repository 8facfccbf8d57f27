#pragma once

#include "library/handler.h"
#include "library/offload_pool.h"
#include "library/server_hooks.h"
#include "sockdispatch/server.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace sockdispatch {

// Turns a public HttpResponse into the connection's Response (moves everything).
struct ResponseAccess {
  static Response toInternal(HttpResponse &&from);
};

// What a Server was given: routes, fallback and worker hooks. Shared, read-only, by every
// worker (each gets its copy with the fork).
struct ServerRoutes {
  struct Route {
    std::string method;
    RequestHandler handler;
  };
  std::map<std::string, std::vector<Route>, std::less<>> byPath;
  RequestHandler fallback;
  WorkerHook workerStart;
  WorkerHook workerStop;
};

// The internal Handler behind a Server, one per worker: routes each request to the user's
// handler through an Exchange, and runs offloaded work on the worker's OffloadPool, counting
// it as load on the worker's scoreboard slot. Freed before the worker's loop: its destructor
// stops the pool (cancelling queued work, waiting for running work), then runs the worker's
// stop hook.
class LibraryHandler : public Handler {
public:
  struct Settings {
    OffloadPool::Options pool;
    uint32_t retryAfterSeconds = 1;
  };
  // Runs the start hook and creates the pool; nullptr (the reason logged) when either fails.
  static std::unique_ptr<LibraryHandler> create(std::shared_ptr<const ServerRoutes> routes,
                                                Settings settings, WorkerContext &context);
  ~LibraryHandler() override;
  LibraryHandler(const LibraryHandler &) = delete;
  LibraryHandler &operator=(const LibraryHandler &) = delete;

  void handle(const Request &request, Response &response) const override;
  void respond(const Request &request, Response &response, Deferral &later) const override;

private:
  class WorkerExchange;
  LibraryHandler(std::shared_ptr<const ServerRoutes> routes, Settings settings, WorkerInfo who);
  [[nodiscard]] const RequestHandler *find(const Request &request, Response &response) const;

  std::shared_ptr<const ServerRoutes> routes_;
  Settings settings_;
  WorkerInfo who_;
  std::unique_ptr<OffloadPool> pool_; // mutable work on a const handler: the loop owns it
  bool started_ = false;
};

} // namespace sockdispatch
