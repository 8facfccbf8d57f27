#include "control/status_server.h"

#include "core/socket_options.h"

#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace sockdispatch {

namespace {

constexpr int kBacklog = 64;

} // namespace

Result<std::unique_ptr<StatusServer>> StatusServer::open(const SocketAddress &address,
                                                         StatusPageHandler::Source source) {
  UniqueFd fd(::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    return osError("create the status port's socket");
  }
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd.get(), reinterpret_cast<const sockaddr *>(&address.storage), address.length) != 0) {
    return osError("bind the status port " + address.toString());
  }
  if (::listen(fd.get(), kBacklog) != 0) {
    return osError("listen on the status port " + address.toString());
  }
  SocketAddress bound = address;
  bound.length = sizeof(bound.storage);
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr *>(&bound.storage), &bound.length) != 0) {
    return osError("read the status port's address");
  }
  return std::unique_ptr<StatusServer>(new StatusServer(std::move(fd), bound, std::move(source)));
}

StatusServer::StatusServer(UniqueFd listener, SocketAddress address,
                           StatusPageHandler::Source source)
    : listener_(std::move(listener)), address_(address), handler_(std::move(source)),
      limits_(limits()) {
  identity_.mode = "master";
  identity_.pid = ::getpid();
  identity_.stamped = false;
}

StatusServer::~StatusServer() {
  // Connections first: their events belong to base_, which outlives this object.
  connections_.clear();
  closed_.clear();
}

HttpLimits StatusServer::limits() {
  HttpLimits limits;
  limits.maxTargetBytes = 1024;
  limits.maxHeaderBytes = 8UL * 1024;
  limits.maxHeaderFields = 50;
  limits.maxBodyBytes = 1024; // nothing takes a body: a POST is answered 405
  limits.maxPendingOutput = 256UL * 1024;
  limits.maxRequestsPerConnection = 10000; // the page polls once a second on one connection
  limits.headerTimeout = std::chrono::milliseconds(5000);
  limits.bodyTimeout = std::chrono::milliseconds(5000);
  limits.idleTimeout = std::chrono::milliseconds(30000);
  limits.writeTimeout = std::chrono::milliseconds(10000);
  limits.drainLinger = std::chrono::milliseconds(0);
  return limits;
}

Result<void> StatusServer::start(event_base *base) {
  base_ = base;
  identity_.pid = ::getpid();
  if (!setNoDelay(listener_.get())) { // inherited by every connection it accepts
    return osError("set TCP_NODELAY on the status listener");
  }
  acceptEvent_.reset(event_new(
      base, listener_.get(), EV_READ | EV_PERSIST,
      [](evutil_socket_t, short, void *ctx) { static_cast<StatusServer *>(ctx)->onAcceptable(); },
      this));
  reaper_.reset(event_new(
      base, -1, 0,
      [](evutil_socket_t, short, void *ctx) { static_cast<StatusServer *>(ctx)->closed_.clear(); },
      this));
  ConnectionHooks hooks;
  hooks.closed = [this](HttpConnection *connection) { onClosed(connection); };
  connectionContext_ =
      std::make_unique<ConnectionContext>(base, handler_, identity_, limits_, std::move(hooks));
  if (!acceptEvent_ || !reaper_ || event_add(acceptEvent_.get(), nullptr) != 0) {
    return logicError("serve the status port " + address_.toString(),
                      "the master's loop refused its events");
  }
  spdlog::info("status page on http://{}/", address_.toString());
  return {};
}

void StatusServer::abandonInChild() {
  // The parent's loop still watches these sockets: close this process's copies only, and
  // leave every libevent object alone (the worker _exits, it never frees them).
  ::close(listener_.release());
  for (auto &[connection, fd] : fds_) {
    (void)connection;
    ::close(fd);
  }
}

void StatusServer::onAcceptable() {
  // A bounded number per wake-up, so a flood of clients cannot hold the master's loop.
  for (int i = 0; i < kBacklog; ++i) {
    int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED) {
        spdlog::warn("status port: accept: {}", std::strerror(errno));
      }
      return;
    }
    if (connections_.size() >= kMaxClients) {
      ::close(fd); // too many at once: this one is refused, the others keep their answers
      continue;
    }
    auto connection = std::make_unique<HttpConnection>(*connectionContext_, fd);
    HttpConnection *key = connection.get();
    connections_.emplace(key, std::move(connection));
    fds_.emplace(key, fd);
    key->start();
  }
}

void StatusServer::onClosed(HttpConnection *connection) {
  auto found = connections_.find(connection);
  if (found == connections_.end()) {
    return;
  }
  closed_.push_back(std::move(found->second));
  connections_.erase(found);
  fds_.erase(connection);
  event_active(reaper_.get(), EV_TIMEOUT, 0);
}

} // namespace sockdispatch
