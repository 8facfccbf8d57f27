#include "http/builtin_page.h"

#include <fmt/format.h>

namespace sockdispatch {

void BuiltinPageHandler::handle(const Request &request, Response &response) const {
  std::string_view path = request.target;
  path = path.substr(0, path.find_first_of("?#"));
  if (path != "/" && path != "/index.html") {
    response = simpleResponse(404, "Not Found");
    return;
  }
  if (request.method != "GET" && request.method != "HEAD" && request.method != "POST") {
    response = simpleResponse(405, "Method Not Allowed");
    response.setHeader("Allow", "GET, HEAD, POST");
    return;
  }
  std::string received;
  if (request.method == "POST") {
    received = fmt::format("<p>Received a request body of {} bytes.</p>\n", request.body.size());
  }
  response.status = 200;
  response.setHeader("Content-Type", "text/html; charset=utf-8");
  response.body = fmt::format(
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>sockdispatch</title></head>\n"
      "<body>\n<h1>sockdispatch</h1>\n"
      "<p>Served by worker {} (pid {}) in {} mode.</p>\n{}</body></html>\n",
      who_.slot, who_.pid, who_.mode, received);
}

} // namespace sockdispatch
