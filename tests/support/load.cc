#include "support/load.h"

#include "support/http_client.h"

#include <unistd.h>

#include <optional>

namespace sockdispatch::test {

namespace {

constexpr auto kReplyTimeout = std::chrono::seconds(5);
const std::string kKeepAliveRequest = "GET / HTTP/1.1\r\nHost: load\r\n\r\n";
const std::string kCloseRequest = "GET / HTTP/1.1\r\nHost: load\r\nConnection: close\r\n\r\n";

std::string pidOf(const HttpReply &reply) {
  auto at = reply.body.find("(pid ");
  if (at == std::string::npos) {
    return "?";
  }
  auto end = reply.body.find(')', at);
  return reply.body.substr(at + 5, end - at - 5);
}

void count(LoadTally &tally, const HttpReply &reply) {
  if (reply.status >= 200 && reply.status < 300) {
    ++tally.ok;
    ++tally.byPid[pidOf(reply)];
  } else {
    ++tally.non2xx;
  }
}

} // namespace

std::string LoadTally::describe() const {
  return "ok " + std::to_string(ok) + ", non-2xx " + std::to_string(non2xx) +
         ", connect failures " + std::to_string(connectFailures) + ", no answer " +
         std::to_string(noAnswer) + ", retried on a new connection " +
         std::to_string(retriedOnNewConnection) + ", answering processes " +
         std::to_string(byPid.size());
}

Load::Load(uint16_t port, int keepAlive, int fresh, uint64_t maxRequests,
           std::chrono::seconds limit)
    : port_(port), maxRequests_(maxRequests), deadline_(std::chrono::steady_clock::now() + limit) {
  for (int i = 0; i < keepAlive + fresh; ++i) {
    threads_.emplace_back([this, keep = i < keepAlive] { run(keep); });
  }
}

Load::~Load() {
  stop();
}

bool Load::waitFor(uint64_t more, std::chrono::milliseconds timeout) const {
  return waitForMore(completed_, more, timeout);
}

LoadTally Load::stop() {
  stop_ = true;
  for (auto &thread : threads_) {
    if (thread.joinable()) {
      thread.join();
    }
  }
  std::lock_guard lock(mutex_);
  return tally_;
}

bool waitForMore(const std::atomic<uint64_t> &completed, uint64_t more,
                 std::chrono::milliseconds timeout) {
  uint64_t target = completed.load() + more;
  auto until = std::chrono::steady_clock::now() + timeout;
  while (completed.load() < target) {
    if (std::chrono::steady_clock::now() > until) {
      return false;
    }
    ::usleep(2000);
  }
  return true;
}

void LoadTally::add(const LoadTally &other) {
  ok += other.ok;
  non2xx += other.non2xx;
  connectFailures += other.connectFailures;
  noAnswer += other.noAnswer;
  retriedOnNewConnection += other.retriedOnNewConnection;
  for (const auto &[pid, n] : other.byPid) {
    byPid[pid] += n;
  }
}

void sendOnNewConnection(uint16_t port, LoadTally &tally) {
  auto connection = TcpClient::connect(port);
  if (!connection) {
    ++tally.connectFailures;
    return;
  }
  std::optional<HttpReply> reply;
  if (connection->send(kCloseRequest)) {
    reply = connection->readReply(kReplyTimeout);
  }
  if (!reply) {
    ++tally.noAnswer;
    return;
  }
  count(tally, *reply);
}

void Load::record(const LoadTally &local) {
  std::lock_guard lock(mutex_);
  tally_.add(local);
}

void Load::run(bool keepAlive) {
  LoadTally local;
  std::optional<TcpClient> connection;
  bool reused = false;
  for (uint64_t i = 0; i < maxRequests_ && !stop_ && std::chrono::steady_clock::now() < deadline_;
       ++i) {
    if (!connection) {
      connection = TcpClient::connect(port_);
      reused = false;
      if (!connection) {
        ++local.connectFailures;
        ++completed_;
        continue;
      }
    }
    const std::string &request = keepAlive ? kKeepAliveRequest : kCloseRequest;
    std::optional<HttpReply> reply;
    bool sent = connection->send(request);
    if (sent) {
      reply = connection->readReply(kReplyTimeout);
    }
    if (!reply && reused && (!sent || connection->closedWithNothingPending())) {
      // The server closed this idle keep-alive connection as the request went out.
      ++local.retriedOnNewConnection;
      connection.reset();
      --i;
      continue;
    }
    ++completed_;
    if (!reply) {
      ++local.noAnswer;
      connection.reset();
      continue;
    }
    count(local, *reply);
    bool closing = !keepAlive || reply->header("connection") == "close";
    if (closing) {
      connection.reset();
    } else {
      reused = true;
    }
  }
  record(local);
}

} // namespace sockdispatch::test
