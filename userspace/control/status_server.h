#pragma once

#include "control/status_page_handler.h"
#include "core/address.h"
#include "core/event_ptr.h"
#include "core/result.h"
#include "core/unique_fd.h"
#include "http/http_connection.h"
#include "process/master_service.h"

#include <cstddef>
#include <memory>
#include <unordered_map>
#include <vector>

namespace sockdispatch {

// The status port (`attach --status-port N`): the master serves StatusPageHandler's pages on
// its own loop, never a worker, so the data path does not carry it. Each client is an
// HttpConnection, with tight limits (StatusServer::limits()): small heads, short timeouts, so
// a slow or hostile client costs a timer and a few KiB, never the loop. At most
// kMaxClients connections at once; more are closed as soon as they are accepted.
class StatusServer final : public MasterService {
public:
  static constexpr size_t kMaxClients = 64;

  // Binds and listens on `address` (a refusal, e.g. EADDRINUSE, before any worker runs).
  static Result<std::unique_ptr<StatusServer>> open(const SocketAddress &address,
                                                    StatusPageHandler::Source source);

  ~StatusServer() override;

  Result<void> start(event_base *base) override;
  void abandonInChild() override;

  // The limits each status connection enforces.
  static HttpLimits limits();
  [[nodiscard]] const SocketAddress &address() const { return address_; }
  [[nodiscard]] size_t clients() const { return connections_.size(); }

private:
  StatusServer(UniqueFd listener, SocketAddress address, StatusPageHandler::Source source);
  void onAcceptable();
  void onClosed(HttpConnection *connection);

  UniqueFd listener_;
  SocketAddress address_;
  StatusPageHandler handler_;
  HttpLimits limits_;
  WorkerIdentity identity_;
  event_base *base_ = nullptr;
  EventPtr acceptEvent_;
  EventPtr reaper_; // frees closed connections outside their own callbacks
  // What the connections share (spare exchanges, the idle queue): freed after them.
  std::unique_ptr<ConnectionContext> connectionContext_;
  std::unordered_map<HttpConnection *, std::unique_ptr<HttpConnection>> connections_;
  std::unordered_map<HttpConnection *, int> fds_; // each connection's socket, for abandonInChild
  std::vector<std::unique_ptr<HttpConnection>> closed_;
};

} // namespace sockdispatch
