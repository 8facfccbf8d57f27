// What `sockdispatch adopt` pays to follow a group: one pass of the group-scan BPF iterator
// (bpf/group_scan.bpf.c: it visits every TCP socket of the namespace, established ones too),
// one sock_diag listener dump of the port (dumpTcpListeners: the listener hash only), and one
// scan of /proc for the listeners' holders (findSocketHolders). Each is timed `rounds` times
// with 4 reuseport listeners on the port and `connections` established loopback connections
// on another port (each is two sockets), so the iterator's dependence on the host's
// connections shows.
//
// Usage: adopt_scan_bench [rounds] [connections...]   (defaults: 200, 0 1000 10000; raise
// `ulimit -n` above 2 x connections + 100 first). Needs root (the iterator is a BPF program).
// Prints one JSON object per case: connections, and the median and p99 in µs of each method.
#include "adopt/group_scan.h"
#include "adopt/socket_holders.h"
#include "core/listener_diag.h"
#include "core/unique_fd.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <set>
#include <string>
#include <vector>

namespace {

using sockdispatch::UniqueFd;

[[noreturn]] void die(const std::string &what) {
  std::perror(what.c_str());
  std::exit(1);
}

UniqueFd listenOn(uint16_t port) {
  auto address = sockdispatch::parseAddress("127.0.0.1", port);
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  int on = 1;
  if (!fd || ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0 ||
      ::bind(fd.get(), reinterpret_cast<const sockaddr *>(&address->storage), address->length) !=
          0 ||
      ::listen(fd.get(), 4096) != 0) {
    die("listen on 127.0.0.1:" + std::to_string(port));
  }
  return fd;
}

void connectTo(uint16_t port, std::vector<UniqueFd> &keep) {
  auto address = sockdispatch::parseAddress("127.0.0.1", port);
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd || ::connect(fd.get(), reinterpret_cast<const sockaddr *>(&address->storage),
                       address->length) != 0) {
    die("connect");
  }
  keep.push_back(std::move(fd));
}

struct Timing {
  double median = 0;
  double p99 = 0;
};

Timing timeIt(int rounds, const std::function<void()> &work) {
  std::vector<double> micros;
  for (int i = 0; i < rounds; ++i) {
    auto start = std::chrono::steady_clock::now();
    work();
    micros.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
            .count());
  }
  std::sort(micros.begin(), micros.end());
  return Timing{micros[micros.size() / 2], micros[micros.size() * 99 / 100]};
}

int run(int argc, char **argv) {
  int rounds = argc > 1 ? std::atoi(argv[1]) : 200;
  std::vector<int> cases;
  for (int i = 2; i < argc; ++i) {
    cases.push_back(std::atoi(argv[i]));
  }
  if (cases.empty()) {
    cases = {0, 1000, 10000};
  }
  const uint16_t port = 47311;
  const uint16_t busyPort = 47312;
  std::vector<UniqueFd> group;
  std::set<uint64_t> inodes;
  for (int i = 0; i < 4; ++i) {
    group.push_back(listenOn(port));
    struct stat status {};
    ::fstat(group.back().get(), &status);
    inodes.insert(status.st_ino);
  }
  auto scan = sockdispatch::GroupScan::load(port);
  if (!scan) {
    std::fprintf(stderr, "%s\n", scan.error().message().c_str());
    return 1;
  }
  UniqueFd busy = listenOn(busyPort);
  std::vector<UniqueFd> connections;
  for (int connectionsWanted : cases) {
    while (static_cast<int>(connections.size()) < 2 * connectionsWanted) {
      connectTo(busyPort, connections);
      int accepted = ::accept4(busy.get(), nullptr, nullptr, SOCK_CLOEXEC);
      if (accepted < 0) {
        die("accept");
      }
      connections.emplace_back(accepted);
    }
    Timing iterator = timeIt(rounds, [&] {
      auto found = scan.value()->scan();
      if (!found || found->size() != 4) {
        die("group scan");
      }
    });
    Timing diag = timeIt(rounds, [&] {
      auto found = sockdispatch::dumpTcpListeners(port, AF_INET);
      if (!found || found->size() != 4) {
        die("listener dump");
      }
    });
    Timing holders = timeIt(std::max(rounds / 10, 5), [&] {
      auto found = sockdispatch::findSocketHolders(inodes, 0);
      if (found.size() != 4) {
        die("holder scan");
      }
    });
    std::printf("{\"connections\": %d, \"iterator_us\": {\"median\": %.1f, \"p99\": %.1f}, "
                "\"listener_dump_us\": {\"median\": %.1f, \"p99\": %.1f}, "
                "\"proc_holders_us\": {\"median\": %.1f, \"p99\": %.1f}}\n",
                connectionsWanted, iterator.median, iterator.p99, diag.median, diag.p99,
                holders.median, holders.p99);
    std::fflush(stdout);
  }
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception &error) {
    std::fprintf(stderr, "adopt_scan_bench: %s\n", error.what());
    return 1;
  }
}
