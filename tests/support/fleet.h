#pragma once

#include "support/process.h"
#include "support/temp_dir.h"

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sockdispatch::test {

// One host of a fleet on this machine: a network namespace of its own with a veth link to the
// root namespace (a /30 per host: the root side .1, the namespace side .2), loopback up. The
// names carry this test process's pid, so concurrent runs never share one. Everything in it
// (its processes, its link, its directory under /run/sockdispatch/netns) is removed on
// destruction, also when the test failed half-way.
class NetnsHost {
public:
  // Fails the current test (and returns nullptr) when the namespace cannot be made.
  static std::unique_ptr<NetnsHost> create(int index);
  ~NetnsHost();
  NetnsHost(const NetnsHost &) = delete;
  NetnsHost &operator=(const NetnsHost &) = delete;

  [[nodiscard]] const std::string &name() const { return name_; }
  [[nodiscard]] const std::string &address() const { return address_; } // inside

  // `sockdispatch ARGS` inside the namespace (`ip netns exec NAME ...`), to completion.
  Completed run(const std::vector<std::string> &args,
                std::chrono::milliseconds timeout = std::chrono::seconds(20)) const;
  // The same, started and left running.
  [[nodiscard]] std::unique_ptr<Process> start(const std::vector<std::string> &args) const;
  // Starts `sockdispatch attach ARGS` inside and waits for its "listening on" line.
  bool attach(const std::vector<std::string> &args);
  [[nodiscard]] Process *master() const { return master_.get(); }
  // The master's worker processes now (its children).
  [[nodiscard]] std::vector<pid_t> workerPids() const;
  // Everything the agent port at address():port answers, from the root namespace (nullopt
  // when it cannot be reached or does not close within the bound).
  [[nodiscard]] std::optional<std::string> askAgent(uint16_t port) const;

private:
  NetnsHost() = default;
  std::string name_;
  std::string veth_;
  std::string address_;
  std::unique_ptr<Process> master_;
};

// Debian's HAProxy in the root namespace, from a generated configuration: an HTTP frontend on
// 127.0.0.1 and one backend of `servers`, with agent checks (agent-check, agent-inter) or
// without; a stats socket to read its own view. Stopped and reaped on destruction.
class Haproxy {
public:
  struct Server {
    std::string name;
    std::string address;
    uint16_t port = 0;
    uint16_t agentPort = 0; // 0: no agent check
  };
  struct Settings {
    std::string balance = "roundrobin";
    std::chrono::milliseconds agentInterval{200};
    std::chrono::milliseconds checkInterval{500};
  };
  // Fails the current test (and returns nullptr) when it does not serve.
  static std::unique_ptr<Haproxy> start(const std::vector<Server> &servers,
                                        const Settings &settings);
  ~Haproxy();
  Haproxy(const Haproxy &) = delete;
  Haproxy &operator=(const Haproxy &) = delete;

  [[nodiscard]] uint16_t port() const { return port_; }
  // One command on the stats socket, its whole answer.
  [[nodiscard]] std::string command(const std::string &line) const;
  // Per server: HAProxy's current weight (srv_uweight of `show servers state`) and whether its
  // administrative state is drain.
  struct ServerView {
    int weight = -1;
    bool drained = false;
    int operatingState = -1; // 2: running
  };
  [[nodiscard]] std::map<std::string, ServerView> servers() const;

private:
  Haproxy() = default;
  TempDir dir_;
  std::unique_ptr<Process> process_;
  uint16_t port_ = 0;
};

// Whether Debian's HAProxy and iproute2 are installed (CI has both).
bool haveHaproxy();

} // namespace sockdispatch::test
