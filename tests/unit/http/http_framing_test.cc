// The head framing checker (bare CR, bare LF, obs-fold) fed whole and byte by byte, and the
// Transfer-Encoding verdicts.
#include "http/http_framing.h"

#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <vector>

namespace sockdispatch {
namespace {

using Verdict = HeadFraming::Verdict;

struct FramingCase {
  const char *name;
  std::string bytes;
  Verdict verdict;
  bool headDone;
};

void PrintTo(const FramingCase &c, std::ostream *os) {
  *os << c.name;
}

class HeadFramingTable : public testing::TestWithParam<FramingCase> {};

TEST_P(HeadFramingTable, WholeAndByteByByteAgree) {
  const auto &c = GetParam();
  HeadFraming whole;
  EXPECT_EQ(whole.feed(c.bytes.data(), c.bytes.size()), c.verdict);
  EXPECT_EQ(whole.headDone(), c.headDone);
  HeadFraming split;
  Verdict last = Verdict::ok;
  for (char byte : c.bytes) {
    last = split.feed(&byte, 1);
  }
  EXPECT_EQ(last, c.verdict);
  EXPECT_EQ(split.headDone(), c.headDone);
}

INSTANTIATE_TEST_SUITE_P(
    Table, HeadFramingTable,
    testing::Values(
        FramingCase{"clean", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", Verdict::ok, true},
        FramingCase{"partial", "GET / HTTP/1.1\r\nHost: x\r\n", Verdict::ok, false},
        FramingCase{"body_not_scanned", "POST / HTTP/1.1\r\nA: b\r\n\r\n\n\r x", Verdict::ok, true},
        FramingCase{"leading_empty_lines", "\r\n\r\nGET / HTTP/1.1\r\n\r\n", Verdict::ok, true},
        FramingCase{"bare_lf_request_line", "GET / HTTP/1.1\nHost: x\r\n\r\n", Verdict::bareLf,
                    false},
        FramingCase{"bare_lf_header", "GET / HTTP/1.1\r\nA: b\nC: d\r\n\r\n", Verdict::bareLf,
                    false},
        FramingCase{"bare_lf_end_of_head", "GET / HTTP/1.1\r\nA: b\r\n\n", Verdict::bareLf, false},
        FramingCase{"bare_cr_header", "GET / HTTP/1.1\r\nA: b\rC: d\r\n\r\n", Verdict::bareCr,
                    false},
        FramingCase{"bare_cr_end_of_head", "GET / HTTP/1.1\r\n\rX", Verdict::bareCr, false},
        FramingCase{"tab_after_method", "GET\t/ HTTP/1.1\r\n\r\n", Verdict::requestLineSpace,
                    false},
        FramingCase{"tab_before_version", "GET /\tHTTP/1.1\r\n\r\n", Verdict::requestLineSpace,
                    false},
        FramingCase{"two_spaces", "GET  / HTTP/1.1\r\n\r\n", Verdict::requestLineSpace, false},
        FramingCase{"leading_space", " GET / HTTP/1.1\r\n\r\n", Verdict::requestLineSpace, false},
        FramingCase{"three_separators", "GET / HTTP/1.1 x\r\n\r\n", Verdict::requestLineSpace,
                    false},
        FramingCase{"tab_in_header_value", "GET / HTTP/1.1\r\nA:\tb\r\n\r\n", Verdict::ok, true},
        FramingCase{"obs_fold_space", "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", Verdict::obsFold,
                    false},
        FramingCase{"obs_fold_tab", "GET / HTTP/1.1\r\nA: b\r\n\tc\r\n\r\n", Verdict::obsFold,
                    false}),
    [](const testing::TestParamInfo<FramingCase> &p) { return p.param.name; });

TEST(HeadFraming, ResetStartsTheNextHead) {
  HeadFraming framing;
  std::string head = "GET / HTTP/1.1\r\n\r\n";
  EXPECT_EQ(framing.feed(head.data(), head.size()), Verdict::ok);
  EXPECT_TRUE(framing.headDone());
  framing.reset();
  EXPECT_FALSE(framing.headDone());
  std::string bad = "GET / HTTP/1.1\n";
  EXPECT_EQ(framing.feed(bad.data(), bad.size()), Verdict::bareLf);
}

struct TeCase {
  const char *name;
  std::vector<std::string> values;
  uint8_t minor;
  int status;
};

void PrintTo(const TeCase &c, std::ostream *os) {
  *os << c.name;
}

class TransferEncodingTable : public testing::TestWithParam<TeCase> {};

TEST_P(TransferEncodingTable, GivesTheStatus) {
  Request request;
  request.versionMinor = GetParam().minor;
  request.headers.emplace_back("Host", "x");
  for (const auto &value : GetParam().values) {
    request.headers.emplace_back("transfer-encoding", value);
  }
  EXPECT_EQ(transferEncodingStatus(request), GetParam().status);
}

INSTANTIATE_TEST_SUITE_P(
    Table, TransferEncodingTable,
    testing::Values(TeCase{"absent", {}, 1, 0}, TeCase{"chunked", {"chunked"}, 1, 0},
                    TeCase{"chunked_any_case", {" Chunked "}, 1, 0},
                    TeCase{"gzip", {"gzip"}, 1, 501},
                    TeCase{"gzip_then_chunked", {"gzip, chunked"}, 1, 501},
                    TeCase{"chunked_then_gzip", {"chunked, gzip"}, 1, 501},
                    TeCase{"unknown_token", {"xchunked"}, 1, 501},
                    TeCase{"chunked_twice_one_field", {"chunked, chunked"}, 1, 400},
                    TeCase{"chunked_twice_two_fields", {"chunked", "chunked"}, 1, 400},
                    TeCase{"empty_value", {""}, 1, 400}, TeCase{"only_commas", {" , "}, 1, 400},
                    TeCase{"http_1_0", {"chunked"}, 0, 400}),
    [](const testing::TestParamInfo<TeCase> &p) { return p.param.name; });

} // namespace
} // namespace sockdispatch
