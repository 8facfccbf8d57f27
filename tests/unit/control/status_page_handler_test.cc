// The status port's routes (StatusPageHandler), with the attachment read replaced by a fixed
// one: what each path answers, for which methods, with which headers, and what a failed
// read becomes.
#include "control/status_assets.h"
#include "control/status_page_handler.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace sockdispatch {
namespace {

AttachmentStatus sample() {
  AttachmentStatus status;
  status.port = 8080;
  status.config.abi_version = SD_ABI_VERSION;
  status.config.mode = SD_MODE_EBPF;
  status.config.policy = SD_POLICY_LEAST_CONN;
  status.config.master_pid = 42;
  status.config.generation = 3;
  status.masterAlive = true;
  for (uint32_t slot = 0; slot < 2; ++slot) {
    SlotSnapshot worker{};
    worker.slot = slot;
    worker.pid = 100 + slot;
    worker.state = SD_SLOT_RUNNING;
    worker.open = 5 + slot;
    worker.requests = 1000;
    status.workers.push_back(worker);
  }
  return status;
}

std::string headerOf(const Response &response, std::string_view name) {
  for (const auto &[key, value] : response.headers) {
    if (key == name) {
      return value;
    }
  }
  return "";
}

Response get(const StatusPageHandler &handler, std::string target, std::string method = "GET") {
  Request request;
  request.method = std::move(method);
  request.target = std::move(target);
  Response response;
  handler.handle(request, response);
  return response;
}

StatusPageHandler fixed() {
  return StatusPageHandler([] { return Result<AttachmentStatus>(sample()); });
}

TEST(StatusPageHandler, ThePageAndItsFilesAreServedFromTheBinary) {
  StatusPageHandler handler = fixed();
  Response page = get(handler, "/");
  EXPECT_EQ(page.status, 200);
  EXPECT_EQ(headerOf(page, "Content-Type"), "text/html; charset=utf-8");
  EXPECT_NE(page.body.find("<script src=\"/status.js\""), std::string::npos);
  EXPECT_NE(page.body.find("/status.css"), std::string::npos);
  EXPECT_EQ(page.body.find("http://"), std::string::npos) << "nothing from elsewhere";
  EXPECT_EQ(page.body.find("https://"), std::string::npos) << "nothing from elsewhere";
  EXPECT_NE(headerOf(page, "Content-Security-Policy").find("script-src 'self'"), std::string::npos);
  EXPECT_EQ(get(handler, "/index.html").body, page.body);
  EXPECT_EQ(get(handler, "/?refresh=1").body, page.body) << "a query is not part of the path";

  Response script = get(handler, "/status.js");
  EXPECT_EQ(script.status, 200);
  EXPECT_EQ(headerOf(script, "Content-Type"), "text/javascript; charset=utf-8");
  EXPECT_NE(script.body.find("/status.json"), std::string::npos);
  Response style = get(handler, "/status.css");
  EXPECT_EQ(style.status, 200);
  EXPECT_EQ(headerOf(style, "Content-Type"), "text/css; charset=utf-8");
  for (const char *path : {"/", "/status.js", "/status.css", "/status.json", "/metrics"}) {
    Response response = get(handler, path);
    EXPECT_EQ(headerOf(response, "Cache-Control"), "no-store") << path;
    EXPECT_EQ(headerOf(response, "X-Content-Type-Options"), "nosniff") << path;
  }
}

TEST(StatusPageHandler, TheDocumentsAreStatusJsonAndPrometheusText) {
  StatusPageHandler handler = fixed();
  Response json = get(handler, "/status.json");
  EXPECT_EQ(json.status, 200);
  EXPECT_EQ(headerOf(json, "Content-Type"), "application/json");
  EXPECT_EQ(json.body, formatJson(sample()));
  auto parsed = nlohmann::json::parse(json.body);
  EXPECT_EQ(parsed["port"], 8080);
  EXPECT_EQ(parsed["workers"].size(), 2U);

  Response metrics = get(handler, "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_EQ(headerOf(metrics, "Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(metrics.body, formatPrometheus({sample()}));
  EXPECT_EQ(get(handler, "/metrics", "HEAD").status, 200);
}

TEST(StatusPageHandler, OnlyGetAndHeadOnKnownPaths) {
  StatusPageHandler handler = fixed();
  for (const char *method : {"POST", "PUT", "DELETE", "PATCH", "OPTIONS"}) {
    Response response = get(handler, "/status.json", method);
    EXPECT_EQ(response.status, 405) << method;
    EXPECT_EQ(headerOf(response, "Allow"), "GET, HEAD") << method;
  }
  for (const char *path : {"/nope", "/status", "/status.json/", "/../etc/passwd", "//", "*"}) {
    EXPECT_EQ(get(handler, path).status, 404) << path;
  }
  EXPECT_EQ(get(handler, "/nope", "POST").status, 404) << "an unknown path is 404 for any method";
}

TEST(StatusPageHandler, AReadThatMustWaitIsAnswered503AndOtherFailures500) {
  StatusPageHandler busy([] {
    return Result<AttachmentStatus>(Error{EWOULDBLOCK, "lock /run/x", "held"});
  });
  Response response = get(busy, "/status.json");
  EXPECT_EQ(response.status, 503);
  EXPECT_EQ(headerOf(response, "Retry-After"), "1");
  EXPECT_EQ(get(busy, "/").status, 200) << "the page itself needs no read";

  StatusPageHandler gone([] {
    return Result<AttachmentStatus>(Error{ENOENT, "open /sys/fs/bpf/x", ""});
  });
  Response failed = get(gone, "/metrics");
  EXPECT_EQ(failed.status, 500);
  EXPECT_NE(failed.body.find("/sys/fs/bpf/x"), std::string::npos) << failed.body;
}

TEST(StatusAssets, EachPathHasOneFile) {
  EXPECT_TRUE(findStatusAsset("/"));
  EXPECT_TRUE(findStatusAsset("/index.html"));
  EXPECT_TRUE(findStatusAsset("/status.js"));
  EXPECT_TRUE(findStatusAsset("/status.css"));
  EXPECT_FALSE(findStatusAsset("/status.json"));
  EXPECT_FALSE(findStatusAsset(""));
  EXPECT_FALSE(findStatusAsset("/STATUS.JS"));
}

} // namespace
} // namespace sockdispatch
