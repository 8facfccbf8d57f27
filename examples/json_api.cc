// A small JSON API: per-worker state set up by the worker start hook, routes by method and
// path, a 405 for a known path with another method, a 404 for the rest.
//   sudo ./json_api 8080
//   curl localhost:8080/api/status
//   curl -X POST --data 'hello' localhost:8080/api/echo
#include <sockdispatch/server.h>

#include <cstdio>
#include <string>
#include <string_view>

namespace {

// Each worker counts its own requests: the state lives in the worker process (after fork),
// and the handler runs on that worker's loop thread only, so no lock is needed.
struct WorkerState {
  unsigned long requests = 0;
};
WorkerState *state = nullptr;

std::string jsonString(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\u%04x", c);
      out += escaped;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

} // namespace

int main(int argc, char **argv) {
  sockdispatch::ServerOptions options;
  options.port = argc > 1 ? static_cast<uint16_t>(std::stoi(argv[1])) : 8080;
  options.workers = 2;
  sockdispatch::Server server(options);
  server.onWorkerStart([](const sockdispatch::WorkerInfo &) { state = new WorkerState(); });
  server.onWorkerStop([](const sockdispatch::WorkerInfo &) {
    delete state;
    state = nullptr;
  });
  server.route("GET", "/api/status", [](sockdispatch::Exchange &exchange) {
    ++state->requests;
    const sockdispatch::WorkerInfo &who = exchange.worker();
    exchange.response().setBody("{\"worker\": " + std::to_string(who.slot) +
                                    ", \"pid\": " + std::to_string(who.pid) +
                                    ", \"requests\": " + std::to_string(state->requests) + "}\n",
                                "application/json");
  });
  server.route("POST", "/api/echo", [](sockdispatch::Exchange &exchange) {
    ++state->requests;
    const sockdispatch::HttpRequest &request = exchange.request();
    std::string type(request.header("Content-Type"));
    exchange.response().setBody("{\"received\": " + jsonString(request.body()) +
                                    ", \"type\": " + jsonString(type) + "}\n",
                                "application/json");
  });
  return server.run();
}
