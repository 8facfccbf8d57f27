// The cost of the listener dump `sockdispatch status` makes for an attachment with
// kernel-measured slots: dumpTcpListeners(port) (NETLINK_SOCK_DIAG, state LISTEN, source port
// matched in the kernel's bytecode), timed `rounds` times per case.
//
// Each case is a reuseport group of N listeners on 127.0.0.1 (the attachment), beside
// `others` listeners on other ports (the rest of a host, which the port filter skips), with
// optionally `queued` connections completed and not accepted, spread over the group by the
// kernel's hash. Each dump is checked: N listeners found, their queues summing to `queued`.
// The kernel walks its whole listener hash (tcp_listen_portaddr_hash, sized at boot) once per
// family whatever the port, so that walk, not the port's listeners, is most of the cost.
//
// Usage: listener_diag_bench [rounds] [others]     (defaults: 2000 200; the 1,000 queued case
// holds about 1,200 descriptors: raise `ulimit -n` first)
// Prints one JSON object per case: listeners, others, queued, and the median and p99 in µs of
// an IPv4 dump and of a dump of both families, timed alternately.
#include "core/listener_diag.h"
#include "core/unique_fd.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

namespace {

using sockdispatch::SocketAddress;
using sockdispatch::UniqueFd;

[[noreturn]] void die(const std::string &what) {
  std::perror(what.c_str());
  std::exit(1);
}

UniqueFd listenOn(uint16_t port, int backlog) {
  auto address = sockdispatch::parseAddress("127.0.0.1", port);
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  int on = 1;
  if (!fd || ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0 ||
      ::bind(fd.get(), reinterpret_cast<const sockaddr *>(&address->storage), address->length) !=
          0 ||
      ::listen(fd.get(), backlog) != 0) {
    die("listen on 127.0.0.1:" + std::to_string(port));
  }
  return fd;
}

uint16_t portOf(const UniqueFd &fd) {
  SocketAddress address;
  address.length = sizeof(address.storage);
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr *>(&address.storage), &address.length) !=
      0) {
    die("getsockname");
  }
  return address.port();
}

void runCase(size_t listeners, size_t others, size_t queued, size_t rounds) {
  std::vector<UniqueFd> group;
  group.push_back(listenOn(0, 4096));
  uint16_t port = portOf(group.front());
  while (group.size() < listeners) {
    group.push_back(listenOn(port, 4096));
  }
  std::vector<UniqueFd> rest;
  for (size_t i = 0; i < others; ++i) {
    rest.push_back(listenOn(0, 16));
  }
  auto to = sockdispatch::parseAddress("127.0.0.1", port);
  std::vector<UniqueFd> clients;
  for (size_t i = 0; i < queued; ++i) {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd ||
        ::connect(fd.get(), reinterpret_cast<const sockaddr *>(&to->storage), to->length) != 0) {
      die("connect");
    }
    clients.push_back(std::move(fd));
  }

  // Alternately: IPv4 only (what status dumps for listeners bound to an IPv4 address), and
  // both families (IPv6 listeners, or a listener not found among the IPv4 ones).
  std::vector<double> micros;
  std::vector<double> bothMicros;
  micros.reserve(rounds);
  bothMicros.reserve(rounds);
  for (size_t round = 0; round < 2 * rounds; ++round) {
    bool both = round % 2 == 1;
    auto start = std::chrono::steady_clock::now();
    auto found = sockdispatch::dumpTcpListeners(port, both ? AF_UNSPEC : AF_INET);
    auto stop = std::chrono::steady_clock::now();
    if (!found) {
      std::fprintf(stderr, "%s\n", found.error().message().c_str());
      std::exit(1);
    }
    size_t sum = 0;
    for (const auto &listener : found.value()) {
      sum += listener.acceptQueue;
    }
    if (found->size() != listeners || sum != queued) {
      std::fprintf(stderr, "dump found %zu listeners, %zu queued; expected %zu, %zu\n",
                   found->size(), sum, listeners, queued);
      std::exit(1);
    }
    (both ? bothMicros : micros)
        .push_back(std::chrono::duration<double, std::micro>(stop - start).count());
  }
  std::sort(micros.begin(), micros.end());
  std::sort(bothMicros.begin(), bothMicros.end());
  std::printf("{\"listeners\": %zu, \"others\": %zu, \"queued\": %zu, \"median_us\": %.1f, "
              "\"p99_us\": %.1f, \"both_families_median_us\": %.1f, "
              "\"both_families_p99_us\": %.1f}\n",
              listeners, others, queued, micros[micros.size() / 2],
              micros[micros.size() * 99 / 100], bothMicros[bothMicros.size() / 2],
              bothMicros[bothMicros.size() * 99 / 100]);
}

} // namespace

int main(int argc, char **argv) {
  size_t rounds = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 2000;
  size_t others = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 200;
  if (rounds == 0) {
    std::fprintf(stderr, "usage: listener_diag_bench [rounds] [others]\n");
    return 2;
  }
  try {
    for (size_t listeners : {4, 32, 128}) {
      runCase(listeners, others, 0, rounds);
    }
    runCase(4, others, 1000, rounds);
  } catch (const std::exception &error) { // out of memory for the samples
    std::fprintf(stderr, "listener_diag_bench: %s\n", error.what());
    return 1;
  }
  return 0;
}
