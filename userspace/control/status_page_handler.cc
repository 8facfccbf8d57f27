#include "control/status_page_handler.h"

#include "control/status_assets.h"

#include <chrono>
#include <string_view>

namespace sockdispatch {

namespace {

// Headers every answer of the status port carries: nothing is cached (the numbers change
// every second), and the page runs only what the port itself serves.
void addCommonHeaders(Response &response) {
  response.setHeader("Cache-Control", "no-store");
  response.setHeader("X-Content-Type-Options", "nosniff");
}

void answerDocument(const StatusPageHandler::Source &source, bool json, Response &response) {
  auto status = source();
  if (!status) {
    const Error &error = status.error();
    if (error.code == EWOULDBLOCK) {
      response = simpleResponse(503, "Service Unavailable: another sockdispatch command holds "
                                     "the attachment; retry");
      response.setHeader("Retry-After", "1");
    } else {
      response = simpleResponse(500, "Internal Server Error: " + error.message() + "");
    }
    return;
  }
  response.status = 200;
  if (json) {
    response.setHeader("Content-Type", "application/json");
    response.body = formatJson(status.value());
  } else {
    // The Prometheus text exposition format, version 0.0.4.
    response.setHeader("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    response.body = formatPrometheus({status.value()});
  }
}

} // namespace

void StatusPageHandler::handle(const Request &request, Response &response) const {
  std::string_view path = request.target;
  path = path.substr(0, path.find_first_of("?#"));
  std::optional<StatusAsset> asset = findStatusAsset(path);
  bool document = path == "/status.json" || path == "/metrics";
  if (!asset && !document) {
    response = simpleResponse(404, "Not Found");
  } else if (request.method != "GET" && request.method != "HEAD") {
    response = simpleResponse(405, "Method Not Allowed: the status port is read-only");
    response.setHeader("Allow", "GET, HEAD");
  } else if (asset) {
    response.status = 200;
    response.setHeader("Content-Type", std::string(asset->contentType));
    // The page loads only what this port serves: no inline script, nothing from elsewhere.
    response.setHeader("Content-Security-Policy",
                       "default-src 'none'; script-src 'self'; style-src 'self'; "
                       "connect-src 'self'; img-src 'self'");
    response.body = std::string(asset->body);
  } else {
    answerDocument(source_, path == "/status.json", response);
  }
  addCommonHeaders(response);
}

StatusPageHandler::Source ownAttachmentSource(uint16_t port) {
  return [port]() -> Result<AttachmentStatus> {
    auto status = readStatus(port, std::chrono::milliseconds(0));
    if (status) {
      splitKernelLoad(status.value());
    }
    return status;
  };
}

} // namespace sockdispatch
