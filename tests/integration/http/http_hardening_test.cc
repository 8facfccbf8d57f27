// Hostile and unusual HTTP against the real server: `sockdispatch attach 0 --workers 2 --root
// DIR` with small limits set by flag, raw requests over real TCP on loopback. Each case checks
// the exact status, whether the connection is kept (a second request on it is answered) or
// closed, and that the next client is served afterwards.
#include "http/http_message.h"
#include "support/http_client.h"
#include "support/process.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <ostream>
#include <string>
#include <vector>

namespace sockdispatch::test {
namespace {

struct HardeningCase {
  const char *name;
  std::string request;
  int status;
  bool closes;               // the server closes after answering (the stream is not trusted)
  std::string headerName{};  // optional: a header the answer must carry...
  std::string headerValue{}; // ...with this value
  bool head = false;         // the request is a HEAD: the answer has no body
};

void PrintTo(const HardeningCase &c, std::ostream *os) {
  *os << c.name;
}

std::string get(const std::string &target, const std::string &extra = "") {
  return "GET " + target + " HTTP/1.1\r\nHost: t\r\n" + extra + "\r\n";
}

// A GET with exactly `count` header fields (Host and count - 1 small ones).
std::string withFields(size_t count) {
  std::string extra;
  for (size_t i = 1; i < count; ++i) {
    extra += "X-" + std::to_string(i) + ": v\r\n";
  }
  return get("/hello.txt", extra);
}

std::string post(const std::string &headers, const std::string &body = "") {
  return "POST /hello.txt HTTP/1.1\r\nHost: t\r\n" + headers + "\r\n" + body;
}

class HttpHardening : public BpfTest, public testing::WithParamInterface<HardeningCase> {
protected:
  // One server for the whole table: each case also proves it still serves afterwards.
  static void SetUpTestSuite() {
    if (!haveBpfPrivileges()) {
      return;
    }
    char base[] = "/tmp/sockdispatch-hardening-XXXXXX";
    ASSERT_NE(::mkdtemp(base), nullptr);
    dir_ = new std::filesystem::path(base);
    auto root = *dir_ / "root";
    std::filesystem::create_directories(root / "docs");
    std::filesystem::create_directories(root / ".git");
    std::ofstream(root / "index.html") << "<h1>home</h1>";
    std::ofstream(root / "hello.txt") << "Hello, World!";
    std::ofstream(root / ".env") << "SECRET=1";
    std::ofstream(root / ".git" / "config") << "[core]";
    std::ofstream(*dir_ / "secret.txt") << "outside the root";
    std::filesystem::create_symlink(*dir_ / "secret.txt", root / "escape.txt");
    std::filesystem::create_symlink("../secret.txt", root / "escape_relative.txt");
    std::filesystem::create_symlink("hello.txt", root / "alias.txt");
    server_ = Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "2", "--root",
                                 root.string(), "--max-target-bytes", "1024", "--max-header-bytes",
                                 "4096", "--max-header-fields", "20", "--max-body-bytes", "1024"})
                  .release();
  }

  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    if (dir_ != nullptr) {
      std::filesystem::remove_all(*dir_);
      delete dir_;
      dir_ = nullptr;
    }
  }

  static inline Attachment *server_ = nullptr;
  static inline std::filesystem::path *dir_ = nullptr;
};

/*
 * One raw request: the exact status (and a header where the case names one); then either
 * the server closes, or the same connection answers a plain GET; then a new client is served.
 */
TEST_P(HttpHardening, AnswersExactlyAndKeepsServing) {
  const HardeningCase &c = GetParam();
  ASSERT_NE(server_, nullptr);
  auto client = TcpClient::connect(server_->port());
  ASSERT_TRUE(client.has_value()) << "connect";
  ASSERT_TRUE(client->send(c.request)) << "send";
  auto reply = client->readReply(5s, c.head);
  ASSERT_TRUE(reply.has_value()) << "no answer; server stderr:\n"
                                 << server_->process().stderrText();
  EXPECT_EQ(reply->status, c.status) << reply->body;
  if (!c.headerName.empty()) {
    EXPECT_EQ(reply->header(c.headerName), c.headerValue);
  }
  if (c.closes) {
    EXPECT_EQ(reply->header("connection"), "close");
    EXPECT_TRUE(client->waitForClose(5s)) << "the connection stayed open";
  } else {
    ASSERT_TRUE(client->send(get("/hello.txt"))) << "send on the kept connection";
    auto next = client->readReply(5s);
    ASSERT_TRUE(next.has_value()) << "the kept connection did not answer";
    EXPECT_EQ(next->status, 200);
    EXPECT_EQ(next->body, "Hello, World!");
  }
  auto after = fetch(server_->port(), "/hello.txt");
  ASSERT_TRUE(after.has_value()) << "the next client was not served";
  EXPECT_EQ(after->status, 200);
}

const std::string kFuture = httpDate(::time(nullptr) + 24 * 3600);

INSTANTIATE_TEST_SUITE_P(
    Table, HttpHardening,
    testing::Values(
        // Baseline.
        HardeningCase{"get_file", get("/hello.txt"), 200, false, "content-length", "13"},
        HardeningCase{"head_file", "HEAD /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n", 200, false,
                      "content-length", "13", true},
        HardeningCase{"get_index", get("/"), 200, false},
        // Limits.
        HardeningCase{"target_too_long", get("/" + std::string(2000, 'a')), 414, true},
        HardeningCase{"headers_too_large", get("/", "X-Big: " + std::string(5000, 'b') + "\r\n"),
                      431, true},
        HardeningCase{"fields_at_the_limit", withFields(20), 200, false},
        HardeningCase{"fields_past_the_limit", withFields(21), 431, true},
        HardeningCase{"body_too_large", post("Content-Length: 5000\r\n"), 413, true},
        // Host (RFC 9112 3.2) and the request line's separators (RFC 9112 3).
        HardeningCase{"no_host", "GET /hello.txt HTTP/1.1\r\n\r\n", 400, true},
        HardeningCase{"no_host_http_1_0", "GET /hello.txt HTTP/1.0\r\n\r\n", 200, true},
        HardeningCase{"two_hosts", "GET /hello.txt HTTP/1.1\r\nHost: t\r\nHost: t\r\n\r\n", 400,
                      true},
        HardeningCase{"empty_host", "GET /hello.txt HTTP/1.1\r\nHost:\r\n\r\n", 400, true},
        HardeningCase{"host_with_path", "GET /hello.txt HTTP/1.1\r\nHost: t/hello.txt\r\n\r\n", 400,
                      true},
        HardeningCase{"host_with_port", "GET /hello.txt HTTP/1.1\r\nHost: t:8080\r\n\r\n", 200,
                      false},
        HardeningCase{"host_ipv6", "GET /hello.txt HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", 200, false},
        HardeningCase{"tab_after_method", "GET\t/hello.txt HTTP/1.1\r\nHost: t\r\n\r\n", 400, true},
        HardeningCase{"two_spaces_after_method", "GET  /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n", 400,
                      true},
        HardeningCase{"chunked_body_too_large",
                      post("Transfer-Encoding: chunked\r\n",
                           "800\r\n" + std::string(2048, 'c') + "\r\n0\r\n\r\n"),
                      413, true},
        HardeningCase{"post_to_static", post("Content-Length: 2\r\n", "hi"), 405, false, "allow",
                      "GET, HEAD"},
        HardeningCase{"delete_static", "DELETE /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n", 405, false,
                      "allow", "GET, HEAD"},
        HardeningCase{"te_gzip", post("Transfer-Encoding: gzip\r\n"), 501, true},
        HardeningCase{"te_gzip_chunked", post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"),
                      501, true},
        HardeningCase{"unknown_method", "BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n", 501, true},
        HardeningCase{"http_2_0", "GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505, true},
        HardeningCase{"http_1_2", "GET / HTTP/1.2\r\nHost: t\r\n\r\n", 505, true},
        HardeningCase{"http_0_9", "GET /\r\n\r\n", 505, true},
        HardeningCase{"garbage", "\x01\x02 nonsense\r\n\r\n", 400, true},
        HardeningCase{"lowercase_method", "get / HTTP/1.1\r\nHost: t\r\n\r\n", 400, true},
        HardeningCase{"space_in_target", "GET /a b HTTP/1.1\r\nHost: t\r\n\r\n", 400, true},
        // Request smuggling.
        HardeningCase{"cl_then_te",
                      post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), 400,
                      true},
        HardeningCase{"te_then_cl",
                      post("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "0\r\n\r\n"), 400,
                      true},
        HardeningCase{"cl_conflicting", post("Content-Length: 1\r\nContent-Length: 2\r\n", "ab"),
                      400, true},
        HardeningCase{"cl_repeated", post("Content-Length: 1\r\nContent-Length: 1\r\n", "a"), 400,
                      true},
        HardeningCase{"cl_list", post("Content-Length: 1, 1\r\n", "a"), 400, true},
        HardeningCase{"cl_plus_sign", post("Content-Length: +1\r\n", "a"), 400, true},
        HardeningCase{
            "te_chunked_twice",
            post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), 400,
            true},
        HardeningCase{"te_space_before_colon", post("Transfer-Encoding : chunked\r\n", "0\r\n\r\n"),
                      400, true},
        HardeningCase{"chunk_size_garbage", post("Transfer-Encoding: chunked\r\n", "zz\r\n"), 400,
                      true},
        HardeningCase{"chunk_size_hex_prefix",
                      post("Transfer-Encoding: chunked\r\n", "0x5\r\nhello\r\n0\r\n\r\n"), 400,
                      true},
        HardeningCase{"chunk_size_overflow",
                      post("Transfer-Encoding: chunked\r\n", "fffffffffffffffff\r\n"), 400, true},
        HardeningCase{"chunk_data_without_crlf",
                      post("Transfer-Encoding: chunked\r\n", "5\r\nhelloXX0\r\n\r\n"), 400, true},
        HardeningCase{"bare_lf_request_line", "GET /hello.txt HTTP/1.1\nHost: t\r\n\r\n", 400,
                      true},
        HardeningCase{"bare_lf_header", "GET /hello.txt HTTP/1.1\r\nHost: t\nX: y\r\n\r\n", 400,
                      true},
        HardeningCase{"bare_cr_header", "GET /hello.txt HTTP/1.1\r\nHost: t\rX: y\r\n\r\n", 400,
                      true},
        HardeningCase{"obs_fold", "GET /hello.txt HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n", 400,
                      true},
        HardeningCase{"http_1_0_chunked",
                      "POST /hello.txt HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                      400, true},
        HardeningCase{"nul_in_header",
                      std::string("GET / HTTP/1.1\r\nHost: t") + '\0' + "x\r\n\r\n", 400, true},
        // Traversal, every encoding.
        HardeningCase{"dotdot", get("/../secret.txt"), 400, false},
        HardeningCase{"dotdot_deep", get("/docs/../../secret.txt"), 400, false},
        HardeningCase{"encoded_dotdot", get("/%2e%2e/secret.txt"), 400, false},
        HardeningCase{"encoded_dotdot_upper", get("/%2E%2E/secret.txt"), 400, false},
        HardeningCase{"encoded_slashes", get("/docs%2f..%2f..%2fsecret.txt"), 400, false},
        HardeningCase{"double_encoded_dotdot", get("/%252e%252e/secret.txt"), 404, false},
        HardeningCase{"encoded_nul", get("/hello.txt%00.html"), 400, false},
        HardeningCase{"backslashes", get("/..\\..\\secret.txt"), 400, false},
        HardeningCase{"encoded_backslashes", get("/..%5c..%5csecret.txt"), 400, false},
        HardeningCase{"symlink_out_absolute", get("/escape.txt"), 403, false},
        HardeningCase{"symlink_out_relative", get("/escape_relative.txt"), 403, false},
        HardeningCase{"symlink_inside", get("/alias.txt"), 200, false},
        HardeningCase{"dotfile", get("/.env"), 404, false},
        HardeningCase{"dot_directory", get("/.git/config"), 404, false},
        HardeningCase{"encoded_dotfile", get("/%2eenv"), 404, false},
        // Ranges and conditional requests.
        HardeningCase{"range_first_bytes", get("/hello.txt", "Range: bytes=0-4\r\n"), 206, false,
                      "content-range", "bytes 0-4/13"},
        HardeningCase{"range_suffix", get("/hello.txt", "Range: bytes=-6\r\n"), 206, false,
                      "content-range", "bytes 7-12/13"},
        HardeningCase{"range_past_end", get("/hello.txt", "Range: bytes=13-\r\n"), 416, false,
                      "content-range", "bytes */13"},
        HardeningCase{"range_list_ignored", get("/hello.txt", "Range: bytes=0-1,4-5\r\n"), 200,
                      false, "content-length", "13"},
        HardeningCase{"if_none_match_any", get("/hello.txt", "If-None-Match: *\r\n"), 304, false},
        HardeningCase{"if_none_match_other", get("/hello.txt", "If-None-Match: \"nope\"\r\n"), 200,
                      false},
        HardeningCase{"if_modified_since_future",
                      get("/hello.txt", "If-Modified-Since: " + kFuture + "\r\n"), 304, false},
        HardeningCase{"if_modified_since_past",
                      get("/hello.txt", "If-Modified-Since: Thu, 01 Jan 1998 00:00:00 GMT\r\n"),
                      200, false}),
    [](const testing::TestParamInfo<HardeningCase> &p) { return p.param.name; });

/* The ETag a 200 carries brings a 304 when sent back in If-None-Match. */
TEST_F(HttpHardening, EtagRoundTrip) {
  ASSERT_NE(server_, nullptr);
  auto first = fetch(server_->port(), "/hello.txt");
  ASSERT_TRUE(first.has_value());
  std::string etag = first->header("etag");
  ASSERT_FALSE(etag.empty());
  auto client = TcpClient::connect(server_->port());
  ASSERT_TRUE(client.has_value());
  ASSERT_TRUE(client->send(get("/hello.txt", "If-None-Match: " + etag + "\r\n")));
  auto reply = client->readReply();
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->status, 304);
  EXPECT_EQ(reply->header("etag"), etag);
  EXPECT_TRUE(reply->body.empty());
}

} // namespace
} // namespace sockdispatch::test
