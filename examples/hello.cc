// The smallest sockdispatch server: one handler for every request.
//   sudo ./hello 8080 [workers]
// Stop it with Ctrl-C (SIGINT) or SIGTERM.
#include <sockdispatch/server.h>

#include <string>

int main(int argc, char **argv) {
  sockdispatch::ServerOptions options;
  options.port = argc > 1 ? static_cast<uint16_t>(std::stoi(argv[1])) : 8080;
  options.workers = argc > 2 ? std::stoi(argv[2]) : 2;
  sockdispatch::Server server(options);
  server.fallback([](sockdispatch::Exchange &exchange) {
    exchange.response().setBody("hello from worker " + std::to_string(exchange.worker().slot) +
                                "\n");
  });
  return server.run();
}
