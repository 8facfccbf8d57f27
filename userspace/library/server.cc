// The public Server (include/sockdispatch/server.h): the attach path with a handler factory.
#include "sockdispatch/server.h"

#include "config/options.h"
#include "control/attach.h"
#include "library/library_handler.h"
#include "library/server_hooks.h"
#include "sockdispatch/abi.h"

#include <spdlog/spdlog.h>

namespace sockdispatch {

struct Server::Routes : ServerRoutes {};

Server::Server(ServerOptions options)
    : routes_(std::make_shared<Routes>()), options_(std::move(options)) {}

Server::~Server() = default;

Server &Server::route(std::string method, std::string path, RequestHandler handler) {
  routes_->byPath[std::move(path)].push_back({std::move(method), std::move(handler)});
  return *this;
}

Server &Server::fallback(RequestHandler handler) {
  routes_->fallback = std::move(handler);
  return *this;
}

Server &Server::onWorkerStart(WorkerHook hook) {
  routes_->workerStart = std::move(hook);
  return *this;
}

Server &Server::onWorkerStop(WorkerHook hook) {
  routes_->workerStop = std::move(hook);
  return *this;
}

ServerOptions &Server::options() {
  return options_;
}

namespace {

// The checks `sockdispatch attach` makes on its flags; false (logged) on a bad value.
bool validate(const ServerOptions &options) {
  auto bad = [](const std::string &what) {
    spdlog::error("server: {}", what);
    return false;
  };
  if (options.maxWorkers > 0) {
    if (options.minWorkers < 1 || options.minWorkers > options.maxWorkers ||
        options.maxWorkers > SD_MAX_WORKERS) {
      return bad("minWorkers " + std::to_string(options.minWorkers) + " and maxWorkers " +
                 std::to_string(options.maxWorkers) +
                 " must satisfy 1 <= min <= max <= " + std::to_string(SD_MAX_WORKERS));
    }
  } else if (options.workers < 1 || options.workers > SD_MAX_WORKERS) {
    return bad("workers " + std::to_string(options.workers) + " is outside 1.." +
               std::to_string(SD_MAX_WORKERS));
  }
  if (options.backlog < 1) {
    return bad("backlog " + std::to_string(options.backlog) + " must be at least 1");
  }
  if (options.offloadThreads > 1024) {
    return bad("offloadThreads " + std::to_string(options.offloadThreads) + " is above 1024");
  }
  return true;
}

AttachOptions toAttachOptions(const ServerOptions &from) {
  AttachOptions to;
  to.port = from.port;
  to.bind = from.bind;
  to.workers = from.workers;
  to.minWorkers = from.minWorkers;
  to.maxWorkers = from.maxWorkers;
  to.backlog = from.backlog;
  switch (from.mode) {
  case DispatchMode::automatic: to.mode = DispatchModeOption::kAuto; break;
  case DispatchMode::ebpf: to.mode = DispatchModeOption::kEbpf; break;
  case DispatchMode::line: to.mode = DispatchModeOption::kLine; break;
  }
  to.maxConnections = from.maxConnections;
  switch (from.policy) {
  case Policy::skip_load: to.policy = SD_POLICY_SKIP_LOAD; break;
  case Policy::least_conn: to.policy = SD_POLICY_LEAST_CONN; break;
  case Policy::p2c: to.policy = SD_POLICY_P2C; break;
  case Policy::round_robin: to.policy = SD_POLICY_ROUND_ROBIN; break;
  case Policy::weighted: to.policy = SD_POLICY_WEIGHTED; break;
  case Policy::hash: to.policy = SD_POLICY_HASH; break;
  }
  to.shutdownTimeout = from.shutdownTimeout;
  to.verbose = from.verbose;
  const ServerLimits &limits = from.limits;
  to.limits.maxTargetBytes = limits.maxTargetBytes;
  to.limits.maxHeaderBytes = limits.maxHeaderBytes;
  to.limits.maxHeaderFields = limits.maxHeaderFields;
  to.limits.maxBodyBytes = limits.maxBodyBytes;
  to.limits.maxRequestsPerConnection = limits.maxRequestsPerConnection;
  to.limits.headerTimeout = limits.headerTimeout;
  to.limits.bodyTimeout = limits.bodyTimeout;
  to.limits.idleTimeout = limits.idleTimeout;
  to.limits.writeTimeout = limits.writeTimeout;
  return to;
}

} // namespace

int Server::run() {
  if (!validate(options_)) {
    return kExitUsage;
  }
  AttachOptions options = toAttachOptions(options_);
  LibraryHandler::Settings settings;
  settings.pool.threads = options_.offloadThreads;
  settings.pool.queueLimit = options_.offloadQueue;
  settings.retryAfterSeconds = options_.retryAfterSeconds;
  auto hooks = std::make_shared<ServerHooks>();
  std::shared_ptr<const ServerRoutes> routes = routes_;
  hooks->makeHandler = [routes, settings](WorkerContext &context) -> std::unique_ptr<Handler> {
    return LibraryHandler::create(routes, settings, context);
  };
  options.hooks = std::move(hooks);
  // A reload (SIGHUP) starts a new generation with the same options and handlers.
  return runAttach(options, [options] { return Result<AttachOptions>(options); });
}

} // namespace sockdispatch
