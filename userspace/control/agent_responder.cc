#include "control/agent_responder.h"

#include "core/monotonic_clock.h"
#include "core/timeval.h"

#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <iterator>

namespace sockdispatch {

AgentResponder::AgentResponder(UniqueFd listener, SocketAddress address, Scoreboard board)
    : listener_(std::move(listener)), address_(address), board_(board) {}

AgentResponder::~AgentResponder() {
  clients_.clear(); // their events before the loop they belong to
  acceptEvent_.reset();
}

Result<std::unique_ptr<AgentResponder>> AgentResponder::open(const SocketAddress &address,
                                                             Scoreboard board) {
  const std::string what = "the agent port " + address.toString();
  UniqueFd fd(::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    return osError("create a socket for " + what);
  }
  int one = 1;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
    return osError("set SO_REUSEADDR on " + what);
  }
  if (address.family() == AF_INET6 &&
      ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) {
    return osError("set IPV6_V6ONLY on " + what);
  }
  if (::bind(fd.get(), reinterpret_cast<const sockaddr *>(&address.storage), address.length) != 0) {
    return osError("bind " + what);
  }
  if (::listen(fd.get(), 128) != 0) {
    return osError("listen on " + what);
  }
  SocketAddress bound = address;
  bound.length = sizeof(bound.storage);
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr *>(&bound.storage), &bound.length) != 0) {
    return osError("read the address of " + what);
  }
  return std::unique_ptr<AgentResponder>(new AgentResponder(std::move(fd), bound, board));
}

Result<void> AgentResponder::start(event_base *base) {
  base_ = base;
  acceptEvent_.reset(event_new(
      base, listener_.get(), EV_READ | EV_PERSIST,
      [](evutil_socket_t, short, void *ctx) { static_cast<AgentResponder *>(ctx)->onAcceptable(); },
      this));
  if (!acceptEvent_ || event_add(acceptEvent_.get(), nullptr) != 0) {
    return logicError("watch the agent port " + address_.toString(), "libevent refused the event");
  }
  spdlog::info("agent port {}: answering the balancer's agent check", address_.toString());
  return {};
}

void AgentResponder::stopping() {
  stopping_ = true;
}

void AgentResponder::abandonInChild() {
  // The events belong to the parent's loop: forget them without libevent calls.
  for (Client &client : clients_) {
    (void)client.event.release();
    client.fd.reset();
  }
  (void)acceptEvent_.release();
  listener_.reset();
}

HostAnswer AgentResponder::answer() const {
  HostLoad host = hostLoadFrom(*board_.config(), board_.snapshotAll(), monotonicNs(), stopped_);
  host.leaving = host.leaving || stopping_;
  return hostAnswer(host);
}

void AgentResponder::onAcceptable() {
  for (int i = 0; i < kAcceptsPerWakeup; ++i) {
    UniqueFd connection(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!connection) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED) {
        spdlog::warn("agent port {}: {}", address_.toString(),
                     osError("accept a connection").message());
      }
      return;
    }
    serve(std::move(connection));
  }
}

void AgentResponder::serve(UniqueFd connection) {
  std::string line = agentLine(answer());
  // A fresh socket's send buffer holds a line: the write is whole or the peer is gone.
  (void)::send(connection.get(), line.data(), line.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  if (::shutdown(connection.get(), SHUT_WR) != 0 || clients_.size() >= kMaxClients) {
    return; // closed now (past the cap, what the client still sends may turn into a reset)
  }
  // Closing a socket with unread input sends a reset, which may overtake the line at the
  // client: read what it sends (HAProxy's agent-send) until it closes, for a bounded time.
  clients_.emplace_back();
  Client &client = clients_.back();
  client.owner = this;
  client.fd = std::move(connection);
  client.self = std::prev(clients_.end());
  client.deadline = std::chrono::steady_clock::now() + kLinger;
  client.event.reset(event_new(
      base_, client.fd.get(), EV_READ | EV_PERSIST,
      [](evutil_socket_t, short what, void *ctx) {
        auto *c = static_cast<Client *>(ctx);
        c->owner->onClientEvent(*c, what);
      },
      &client));
  timeval linger = toTimeval(kLinger);
  if (!client.event || event_add(client.event.get(), &linger) != 0) {
    clients_.erase(client.self);
  }
}

void AgentResponder::onClientEvent(Client &client, short what) {
  if ((what & EV_READ) != 0) {
    std::array<char, 4096> scratch{};
    ssize_t got = ::recv(client.fd.get(), scratch.data(), scratch.size(), MSG_DONTWAIT);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) {
      return;
    }
    if (got > 0 && std::chrono::steady_clock::now() < client.deadline) {
      return; // thrown away
    }
  }
  clients_.erase(client.self); // closed by the client, failed, or past its linger
}

} // namespace sockdispatch
