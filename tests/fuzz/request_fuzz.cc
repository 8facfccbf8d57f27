// libFuzzer target: arbitrary bytes from a client through a real HttpConnection (llhttp,
// the head framing checks, limits, pipelining) over a socketpair driven by a libevent loop,
// answered by the static file handler over a small tree (target resolution, ranges, 304s).
//
// The first input byte picks how the rest is cut into writes, so the parser also sees
// requests split at every possible point.
#include "core/event_ptr.h"
#include "http/http_connection.h"
#include "http/static_files.h"

#include <event2/event.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

namespace sockdispatch {
namespace {

struct World {
  std::unique_ptr<StaticFileHandler> handler;
  WorkerIdentity who{"fuzz", 0, 0};
  HttpLimits limits;

  World() {
    char base[] = "/tmp/sockdispatch-fuzz-XXXXXX";
    if (::mkdtemp(base) == nullptr) {
      std::abort();
    }
    std::filesystem::path root = std::filesystem::path(base) / "root";
    std::filesystem::create_directories(root / "docs");
    std::ofstream(root / "index.html") << "<h1>home</h1>";
    std::ofstream(root / "hello.txt") << "Hello, World!";
    std::ofstream(root / "docs" / "index.html") << "docs";
    std::ofstream(root / ".env") << "SECRET=1";
    std::ofstream(root / "big.bin") << std::string(64UL * 1024, 'z');
    std::filesystem::create_symlink("hello.txt", root / "alias.txt");
    auto opened = StaticFileHandler::open(root.string());
    if (!opened) {
      std::abort();
    }
    handler = std::move(opened.value());
    // Small limits so that inputs of a few KiB reach every one of them.
    limits.maxTargetBytes = 256;
    limits.maxHeaderBytes = 1024;
    limits.maxBodyBytes = 512;
    limits.maxPendingOutput = 8192;
    limits.maxRequestsPerConnection = 16;
    // Timeouts never fire within one input: the run must not depend on the clock.
    limits.headerTimeout = limits.bodyTimeout = std::chrono::hours(1);
    limits.idleTimeout = limits.writeTimeout = std::chrono::hours(1);
  }
};

void discard(int fd) {
  char sink[65536];
  while (::recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0) {
  }
}

} // namespace
} // namespace sockdispatch

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  using namespace sockdispatch;
  static World world;
  if (size == 0) {
    return 0;
  }
  size_t piece = 1 + data[0] % 64; // write size; large inputs go in bigger writes below
  if (data[0] >= 192) {
    piece = size;
  }
  ++data;
  --size;

  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
    std::abort();
  }
  UniqueFd peer(fds[1]);
  EventBasePtr base(event_base_new());
  bool closed = false;
  HttpConnection::Hooks hooks;
  hooks.closed = [&closed](HttpConnection *) { closed = true; };
  ConnectionContext context(base.get(), *world.handler, world.who, world.limits, std::move(hooks));
  auto connection = std::make_unique<HttpConnection>(context, fds[0]);
  connection->start();
  size_t sent = 0;
  for (int round = 0; round < 10000 && !closed && sent < size; ++round) {
    size_t length = std::min(piece, size - sent);
    ssize_t n = ::send(peer.get(), data + sent, length, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
    }
    event_base_loop(base.get(), EVLOOP_NONBLOCK);
    discard(peer.get());
  }
  // The client half-closes: whatever was asked is answered, then the server closes.
  ::shutdown(peer.get(), SHUT_WR);
  for (int round = 0; round < 1000 && !closed; ++round) {
    event_base_loop(base.get(), EVLOOP_NONBLOCK);
    discard(peer.get());
  }
  connection.reset();
  return 0;
}
