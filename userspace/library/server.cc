// The public Server (include/sockdispatch/server.h): the attach path with a handler factory.
#include "sockdispatch/server.h"

#include "config/option_table.h"
#include "config/options.h"
#include "control/attach.h"
#include "library/library_handler.h"
#include "library/server_hooks.h"

#include <spdlog/spdlog.h>

#include <optional>

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

// What the option table does not check: the dynamic pool's bounds together, and the
// library's own settings (the offload pool). False (logged) on a bad value.
bool validateLibraryOnly(const ServerOptions &options) {
  auto bad = [](const std::string &what) {
    spdlog::error("server: {}", what);
    return false;
  };
  if (options.maxWorkers > 0 &&
      (options.minWorkers < 1 || options.minWorkers > options.maxWorkers)) {
    return bad("minWorkers " + std::to_string(options.minWorkers) + " and maxWorkers " +
               std::to_string(options.maxWorkers) + " must satisfy 1 <= min <= max");
  }
  if (options.offloadThreads > 1024) {
    return bad("offloadThreads " + std::to_string(options.offloadThreads) + " is above 1024");
  }
  return true;
}

// The ServerOptions as `attach` takes them: every field bound to a row of the option table
// is checked by that row's range or check, as its flag would be (config/option_table.cc).
std::optional<AttachOptions> toAttachOptions(const ServerOptions &from) {
  AttachOptions to;
  if (auto problem = applyLibraryOptions(from, to)) {
    spdlog::error("server: {}", *problem);
    return std::nullopt;
  }
  if (!validateLibraryOnly(from)) {
    return std::nullopt;
  }
  return to;
}

} // namespace

int Server::run() {
  std::optional<AttachOptions> checked = toAttachOptions(options_);
  if (!checked) {
    return kExitUsage;
  }
  AttachOptions options = std::move(*checked);
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
