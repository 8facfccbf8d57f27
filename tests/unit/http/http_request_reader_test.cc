// The request reader on its own, with no socket: bytes in, a Request or a rejection status
// out; pipelined bytes left for the next feed; the phases told as they begin; a request fed
// byte by byte reads the same as one fed whole.
#include "http/http_request_reader.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sockdispatch {
namespace {

class RecordingEvents final : public HttpRequestReader::Events {
public:
  void phaseEntered(RequestPhase phase) override { phases.push_back(phase); }
  void continueExpected() override { ++continues; }

  std::vector<RequestPhase> phases;
  int continues = 0;
};

class RequestReaderTest : public testing::Test {
protected:
  HttpRequestReader::Fed feed(const std::string &bytes) {
    return reader_.feed(bytes.data(), bytes.size());
  }

  HttpLimits limits_;
  RecordingEvents events_;
  HttpRequestReader reader_{limits_, events_};
};

TEST_F(RequestReaderTest, ReadsOneRequestAndLeavesThePipelinedRest) {
  std::string first = "POST /a?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc";
  std::string second = "GET /b HTTP/1.1\r\nHost: h\r\n\r\n";
  auto fed = feed(first + second);
  ASSERT_TRUE(fed.request);
  EXPECT_EQ(fed.rejection, 0);
  EXPECT_EQ(fed.consumed, first.size()) << "stops at the end of the first request";
  EXPECT_EQ(reader_.request().method, "POST");
  EXPECT_EQ(reader_.request().target, "/a?x=1");
  EXPECT_EQ(reader_.request().body, "abc");
  EXPECT_EQ(reader_.request().header("host"), "h");
  EXPECT_EQ(events_.phases, (std::vector<RequestPhase>{RequestPhase::head, RequestPhase::body,
                                                       RequestPhase::idle}));

  auto next = feed(second);
  ASSERT_TRUE(next.request);
  EXPECT_EQ(next.consumed, second.size());
  EXPECT_EQ(reader_.request().target, "/b");
  EXPECT_TRUE(reader_.request().body.empty());
}

TEST_F(RequestReaderTest, ARequestFedByteByByteReadsTheSame) {
  std::string bytes = "GET /slow HTTP/1.1\r\nHost: h\r\nX-A: b\r\n\r\n";
  HttpRequestReader::Fed fed;
  size_t offset = 0;
  while (offset < bytes.size() && !fed.request) {
    fed = reader_.feed(bytes.data() + offset, 1);
    ASSERT_EQ(fed.rejection, 0) << "at byte " << offset;
    offset += fed.consumed;
  }
  ASSERT_TRUE(fed.request);
  EXPECT_EQ(offset, bytes.size());
  EXPECT_EQ(reader_.request().header("x-a"), "b");
}

TEST_F(RequestReaderTest, TellsAnExpectingClientToContinue) {
  auto fed =
      feed("PUT /f HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
  EXPECT_FALSE(fed.request);
  EXPECT_EQ(fed.rejection, 0);
  EXPECT_EQ(events_.continues, 1);
  EXPECT_TRUE(feed("ok").request);
  EXPECT_EQ(reader_.request().body, "ok");
}

struct Rejected {
  const char *name;
  std::string bytes;
  int status;
};

void PrintTo(const Rejected &c, std::ostream *os) {
  *os << c.name;
}

class RequestReaderRejects : public RequestReaderTest,
                             public testing::WithParamInterface<Rejected> {
protected:
  void SetUp() override {
    limits_.maxTargetBytes = 64;
    limits_.maxHeaderBytes = 256;
    limits_.maxHeaderFields = 4;
    limits_.maxBodyBytes = 8;
  }
};

TEST_P(RequestReaderRejects, WithTheStatus) {
  auto fed = feed(GetParam().bytes);
  EXPECT_FALSE(fed.request);
  EXPECT_EQ(fed.rejection, GetParam().status);
}

INSTANTIATE_TEST_SUITE_P(
    Table, RequestReaderRejects,
    testing::Values(
        Rejected{"long_target", "GET /" + std::string(80, 'a') + " HTTP/1.1\r\n", 414},
        Rejected{"big_head", "GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(300, 'b'), 431},
        Rejected{"many_fields", "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n",
                 431},
        Rejected{"big_body", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\n", 413},
        Rejected{"no_host", "GET / HTTP/1.1\r\n\r\n", 400},
        Rejected{"two_hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
        Rejected{"host_with_path", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
        Rejected{"tab_after_method", "GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        Rejected{"bare_lf", "GET / HTTP/1.1\nHost: h\r\n\r\n", 400},
        Rejected{"unknown_method", "BREW / HTTP/1.1\r\nHost: h\r\n\r\n", 501},
        Rejected{"version_2", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505},
        Rejected{"te_gzip", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501}),
    [](const testing::TestParamInfo<Rejected> &p) { return p.param.name; });

} // namespace
} // namespace sockdispatch
