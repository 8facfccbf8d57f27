// The fixed-answer benchmark's server (bench/fixed_answer.py), built on the public library:
// every request is answered 200 "Hello, World!" (13 bytes, text/plain) by one handler, the
// library's floor for a request beside nginx's `return 200`.
// Usage: fixed_answer_server PORT WORKERS
#include <sockdispatch/server.h>

#include <string>

int main(int argc, char **argv) {
  if (argc != 3) {
    return 2;
  }
  sockdispatch::ServerOptions options;
  options.port = static_cast<uint16_t>(std::stoi(argv[1]));
  options.bind = "127.0.0.1";
  options.workers = std::stoi(argv[2]);
  options.mode = sockdispatch::DispatchMode::ebpf;
  sockdispatch::Server server(options);
  server.fallback([](sockdispatch::Exchange &exchange) {
    exchange.response().setBody("Hello, World!", "text/plain");
  });
  return server.run();
}
