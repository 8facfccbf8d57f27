// The skewed-workload benchmark's server (bench/policy_bench.py), built on the public library:
//   GET /fast   answered at once
//   GET /slow   computes for SLOW_MS milliseconds, then answers: inline, holding its worker's
//               event loop busy meanwhile (a handler doing CPU-heavy work on the loop), or
//               with `offload` on the worker's offload pool (Exchange::offload), the loop
//               serving on
// Usage: skewed_server PORT WORKERS SLOW_MS [inline|offload]
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
  const std::string where = argc == 5 ? argv[4] : "inline";
  if ((argc != 4 && argc != 5) || (where != "inline" && where != "offload")) {
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
  if (where == "inline") {
    server.route("GET", "/slow", [slow](sockdispatch::Exchange &exchange) {
      spin(slow);
      exchange.response().setBody("slow\n");
    });
  } else {
    server.route("GET", "/slow", [slow](sockdispatch::Exchange &exchange) {
      exchange.offload([slow] {
        spin(slow);
        return sockdispatch::HttpResponse(200, "slow\n");
      });
    });
  }
  return server.run();
}
