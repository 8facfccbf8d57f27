#pragma once

#include "bpf/scoreboard.h"
#include "control/agent_weight.h"
#include "core/address.h"
#include "core/event_ptr.h"
#include "core/result.h"
#include "core/unique_fd.h"
#include "process/master_service.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>

namespace sockdispatch {

// The agent port (--agent-port, docs/fleet.md): a TCP responder on the master's loop that
// answers every connection with this host's state and weight in HAProxy's agent-check syntax,
// one line (agentLine), then closes. Read-only: what a client sends (HAProxy's agent-send) is
// read and thrown away. Nothing a client does can stall the master: the socket is
// non-blocking, the line is written at once (it fits any fresh socket's buffer), at most
// kMaxClients connections linger to read what they send, each for at most kLinger; past that
// cap a client gets its line and an immediate close.
class AgentResponder final : public MasterService {
public:
  static constexpr size_t kMaxClients = 64;
  static constexpr std::chrono::milliseconds kLinger{1000};
  static constexpr int kAcceptsPerWakeup = 64; // the loop's other work is not starved

  // Binds and listens on `address` (before the master is built: a port that cannot be bound
  // refuses the start before any worker runs). The scoreboard is read at every answer.
  static Result<std::unique_ptr<AgentResponder>> open(const SocketAddress &address,
                                                      Scoreboard board);

  ~AgentResponder() override;
  AgentResponder(const AgentResponder &) = delete;
  AgentResponder &operator=(const AgentResponder &) = delete;

  Result<void> start(event_base *base) override;
  void stopping() override;
  void abandonInChild() override;

  // The bound address (the port chosen when 0 was asked).
  [[nodiscard]] const SocketAddress &address() const { return address_; }

  // The answer now (the scoreboard as it is, processes probed by `stopped`).
  [[nodiscard]] HostAnswer answer() const;

  // The process probe (tests stop nothing: they say which pids are stopped).
  void setStoppedProbe(std::function<bool(pid_t)> probe) { stopped_ = std::move(probe); }

private:
  struct Client {
    AgentResponder *owner = nullptr;
    UniqueFd fd;
    EventPtr event;                                 // readable or timed out
    std::chrono::steady_clock::time_point deadline; // a trickling client is cut off here
    std::list<Client>::iterator self;
  };

  AgentResponder(UniqueFd listener, SocketAddress address, Scoreboard board);
  void onAcceptable();
  void serve(UniqueFd connection);
  void onClientEvent(Client &client, short what);

  UniqueFd listener_;
  SocketAddress address_;
  Scoreboard board_;
  std::function<bool(pid_t)> stopped_ = processStopped;
  event_base *base_ = nullptr;
  EventPtr acceptEvent_;
  std::list<Client> clients_;
  bool stopping_ = false;
};

} // namespace sockdispatch
