// The skewed-workload benchmark's server (bench/policy_bench.py), built on the public library:
//   GET /fast   answered at once
//   GET /slow   holds its worker busy for SLOW_MS milliseconds on the event loop (a handler
//               doing CPU-heavy work inline), then answers
// Usage: skewed_server PORT WORKERS SLOW_MS
#include <sockdispatch/server.h>

#include <chrono>
#include <string>

namespace {

// Busy, not asleep: the worker's loop cannot serve anything else meanwhile, and the CPU is
// used as a real computation would use it.
void spin(std::chrono::milliseconds duration) {
  auto until = std::chrono::steady_clock::now() + duration;
  volatile unsigned long sink = 0;
  while (std::chrono::steady_clock::now() < until) {
    for (int i = 0; i < 1000; ++i) {
      sink = sink + static_cast<unsigned long>(i);
    }
  }
}

} // namespace

int main(int argc, char **argv) {
  if (argc != 4) {
    return 2;
  }
  sockdispatch::ServerOptions options;
  options.port = static_cast<uint16_t>(std::stoi(argv[1]));
  options.bind = "127.0.0.1";
  options.workers = std::stoi(argv[2]);
  options.mode = sockdispatch::DispatchMode::ebpf;
  const std::chrono::milliseconds slow(std::stoi(argv[3]));
  sockdispatch::Server server(options);
  server.route("GET", "/fast",
               [](sockdispatch::Exchange &exchange) { exchange.response().setBody("fast\n"); });
  server.fallback([](sockdispatch::Exchange &exchange) {
    exchange.response().setBody("skewed_server: GET /fast or /slow\n");
  });
  server.route("GET", "/slow", [slow](sockdispatch::Exchange &exchange) {
    spin(slow);
    exchange.response().setBody("slow\n");
  });
  return server.run();
}
