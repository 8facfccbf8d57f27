// The cost of handing connections down the line: 10,000 accepted TCP sockets passed over a
// SOCK_SEQPACKET channel with sendFds()/receive(), one per message and in batches.
//
// One process sends a batch and receives it at once, so each figure is the whole cost of
// one hop: sendmsg with SCM_RIGHTS, recvmsg installing the fds, and closing the received
// copies (a worker that passes a connection on closes its own copy in the same way). The
// sockets are real loopback connections, re-sent from a pool of kMaxFdsPerMessage.
//
// Usage: fd_batch_bench [total-fds] [rounds]     (defaults: 10000 5)
#include "line/fd_channel.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <vector>

namespace {

using sockdispatch::UniqueFd;

[[noreturn]] void die(const std::string &what) {
  std::perror(what.c_str());
  std::exit(1);
}

// kMaxFdsPerMessage accepted loopback connections (and their client ends, kept open).
struct Connections {
  std::vector<UniqueFd> clients;
  std::vector<UniqueFd> accepted;
};

Connections connectLoopback(size_t count) {
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  if (!listener || ::bind(listener.get(), reinterpret_cast<sockaddr *>(&address), length) != 0 ||
      ::listen(listener.get(), static_cast<int>(count)) != 0 ||
      ::getsockname(listener.get(), reinterpret_cast<sockaddr *>(&address), &length) != 0) {
    die("listen on loopback");
  }
  Connections out;
  for (size_t i = 0; i < count; ++i) {
    UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!client || ::connect(client.get(), reinterpret_cast<sockaddr *>(&address), length) != 0) {
      die("connect");
    }
    UniqueFd accepted(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!accepted) {
      die("accept");
    }
    out.clients.push_back(std::move(client));
    out.accepted.push_back(std::move(accepted));
  }
  return out;
}

struct Cost {
  double wallNs;
  double cpuNs; // this process's CPU time: steadier than wall time on a busy machine
};

double cpuNow() {
  timespec now{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) * 1e9 + static_cast<double>(now.tv_nsec);
}

// The time to pass `total` fds in messages of `batch`.
Cost passAll(int sender, int receiver, const std::vector<int> &pool, size_t total, size_t batch) {
  auto start = std::chrono::steady_clock::now();
  double cpuStart = cpuNow();
  uint64_t sequence = 0;
  for (size_t passed = 0; passed < total;) {
    size_t n = std::min(batch, total - passed);
    auto message =
        sockdispatch::LineMessage::make(sockdispatch::LineMessageType::kConnections, sequence++);
    auto sent = sockdispatch::sendFds(sender, message, std::span<const int>(pool.data(), n));
    if (!sent) {
      std::fprintf(stderr, "%s\n", sent.error().message().c_str());
      std::exit(1);
    }
    auto got = sockdispatch::receive(receiver);
    if (!got || got->fds.size() != n) {
      std::fprintf(stderr, "%s\n", got ? "short batch" : got.error().message().c_str());
      std::exit(1);
    }
    passed += n;
  }
  double cpu = cpuNow() - cpuStart;
  auto elapsed = std::chrono::steady_clock::now() - start;
  return {
      static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count()),
      cpu};
}

} // namespace

int main(int argc, char **argv) {
  size_t total = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 10000;
  int rounds = argc > 2 ? std::atoi(argv[2]) : 5;
  if (total == 0 || rounds <= 0) {
    std::fprintf(stderr, "usage: %s [total-fds > 0] [rounds > 0]\n", argv[0]);
    return 2;
  }
  Connections connections = connectLoopback(sockdispatch::kMaxFdsPerMessage);
  std::vector<int> pool;
  for (const auto &fd : connections.accepted) {
    pool.push_back(fd.get());
  }
  auto pair = sockdispatch::makeChannelPair();
  if (!pair) {
    std::fprintf(stderr, "%s\n", pair.error().message().c_str());
    return 1;
  }
  int sender = pair->first.get();
  int receiver = pair->second.get();

  std::printf("%zu fds per run, median of %d runs (one process: send, receive, close)\n", total,
              rounds);
  std::printf("%8s %10s %12s %14s %14s %10s\n", "batch", "messages", "wall ms", "wall ns/fd",
              "CPU ns/fd", "CPU gain");
  double single = 0;
  for (size_t batch : {size_t{1}, size_t{16}, size_t{64}, sockdispatch::kMaxFdsPerMessage}) {
    (void)passAll(sender, receiver, pool, total, batch); // warm-up
    std::vector<double> wall;
    std::vector<double> cpu;
    for (int round = 0; round < rounds; ++round) {
      Cost cost = passAll(sender, receiver, pool, total, batch);
      wall.push_back(cost.wallNs);
      cpu.push_back(cost.cpuNs);
    }
    std::sort(wall.begin(), wall.end());
    std::sort(cpu.begin(), cpu.end());
    double wallMedian = wall[wall.size() / 2];
    double cpuMedian = cpu[cpu.size() / 2];
    if (batch == 1) {
      single = cpuMedian;
    }
    auto perFd = [total](double ns) { return ns / static_cast<double>(total); };
    std::printf("%8zu %10zu %12.2f %14.1f %14.1f %9.2fx\n", batch, (total + batch - 1) / batch,
                wallMedian / 1e6, perFd(wallMedian), perFd(cpuMedian), single / cpuMedian);
  }
  return 0;
}
