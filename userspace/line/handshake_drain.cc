#include "line/handshake_drain.h"

#include "core/address.h"
#include "core/listener_diag.h"

#include <linux/filter.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <array>

namespace sockdispatch {

namespace {

// How often the handshakes in progress are counted while some are: nothing signals that one
// was dropped (a completed one wakes the wait at once, by the listener's readability).
constexpr std::chrono::milliseconds kRecount(10);

// A socket filter sees a TCP segment from its header on: byte 13 holds the flags.
constexpr uint32_t kTcpFlagsOffset = 13;
constexpr uint32_t kSyn = 0x02;
constexpr uint32_t kAck = 0x10;

Result<SocketAddress> boundAddress(int listener) {
  SocketAddress bound;
  bound.length = sizeof(bound.storage);
  if (::getsockname(listener, reinterpret_cast<sockaddr *>(&bound.storage), &bound.length) != 0) {
    return osError("read the listener's address");
  }
  return bound;
}

} // namespace

Result<void> refuseNewHandshakes(int listener) {
  // flags & (SYN|ACK) == SYN: a new handshake, dropped (0 bytes kept); anything else kept.
  std::array<sock_filter, 5> code{{
      BPF_STMT(BPF_LD | BPF_B | BPF_ABS, kTcpFlagsOffset),
      BPF_STMT(BPF_ALU | BPF_AND | BPF_K, kSyn | kAck),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kSyn, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, 0),
      BPF_STMT(BPF_RET | BPF_K, 0xffffffffU),
  }};
  sock_fprog program{static_cast<unsigned short>(code.size()), code.data()};
  if (::setsockopt(listener, SOL_SOCKET, SO_ATTACH_FILTER, &program, sizeof(program)) != 0) {
    return osError("attach a filter refusing new handshakes to the listener");
  }
  return {};
}

size_t drainHandshakes(int listener, std::chrono::milliseconds bound,
                       const std::function<void()> &takeCompleted) {
  auto local = boundAddress(listener);
  if (!local) {
    spdlog::warn("{}; handshakes in progress at the stop may be reset", local.error().message());
    takeCompleted();
    return 0;
  }
  // Some kernels refuse a socket filter on a TCP socket without CAP_NET_ADMIN, which the unit
  // does not grant: the wait below still takes what completes, but new handshakes keep
  // beginning, so it may last its whole bound and reset the ones in progress at its end.
  if (auto refused = refuseNewHandshakes(listener); !refused) {
    spdlog::warn("{}: new handshakes are not refused while the stop waits for those in "
                 "progress (at most {} ms)",
                 refused.error().message(), bound.count());
  }
  const auto deadline = std::chrono::steady_clock::now() + bound;
  bool announced = false;
  for (;;) {
    // Counted first: one that completes after the count is taken below; none begins any more.
    // An IPv6 listener may take IPv4 handshakes too: both families are counted for it.
    auto inProgress =
        handshakesInProgress(local->port(), local->family() == AF_INET ? AF_INET : AF_UNSPEC);
    takeCompleted();
    if (!inProgress) {
      spdlog::warn("{}; handshakes in progress at the stop may be reset",
                   inProgress.error().message());
      return 0;
    }
    if (*inProgress == 0) {
      return 0;
    }
    // Rounded up: a wait cut at a whole millisecond would end the drain before its bound.
    auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return *inProgress;
    }
    if (!announced) {
      spdlog::info("stop: waiting for {} handshake{} in progress (at most {} ms)", *inProgress,
                   *inProgress == 1 ? "" : "s", bound.count());
      announced = true;
    }
    pollfd readable{listener, POLLIN, 0};
    (void)::poll(&readable, 1, static_cast<int>(std::min(left, kRecount).count()));
  }
}

} // namespace sockdispatch
