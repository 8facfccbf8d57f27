// Blocking work without blocking the loop: /report runs a slow computation (standing in for
// a blocking database call or a file scan) on the worker's offload pool, while /ping is
// answered at once by the same worker. A saturated pool answers 503 with Retry-After.
//   sudo ./offload 8080
//   curl localhost:8080/report?n=5000000 & curl localhost:8080/ping
#include <sockdispatch/server.h>

#include <charconv>
#include <cstdint>
#include <string>

namespace {

// Deliberately slow: the count of primes below n.
uint64_t countPrimes(uint64_t n) {
  uint64_t count = 0;
  for (uint64_t i = 2; i < n; ++i) {
    bool prime = true;
    for (uint64_t d = 2; d * d <= i; ++d) {
      if (i % d == 0) {
        prime = false;
        break;
      }
    }
    count += prime ? 1 : 0;
  }
  return count;
}

} // namespace

int main(int argc, char **argv) {
  sockdispatch::ServerOptions options;
  options.port = argc > 1 ? static_cast<uint16_t>(std::stoi(argv[1])) : 8080;
  options.workers = 2;
  options.offloadThreads = 2; // per worker
  options.offloadQueue = 8;   // then 503 + Retry-After
  sockdispatch::Server server(options);
  server.route("GET", "/ping",
               [](sockdispatch::Exchange &exchange) { exchange.response().setBody("pong\n"); });
  server.route("GET", "/report", [](sockdispatch::Exchange &exchange) {
    // Copy what the work needs: the request view is gone once this handler returns.
    uint64_t n = 100000;
    std::string_view query = exchange.request().query();
    if (query.starts_with("n=")) {
      std::from_chars(query.data() + 2, query.data() + query.size(), n);
    }
    exchange.offload([n] { return countPrimes(n); }, // on a pool thread
                     [n](uint64_t primes) {          // back on the worker's loop
                       return sockdispatch::HttpResponse(200, std::to_string(primes) +
                                                                  " primes below " +
                                                                  std::to_string(n) + "\n");
                     });
  });
  return server.run();
}
