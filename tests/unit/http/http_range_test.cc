// Range parsing, Content-Range, entity tags, If-None-Match matching and HTTP dates: the pure
// pieces the static file handler builds its 206, 416 and 304 answers from.
#include "http/http_message.h"
#include "http/http_range.h"

#include <gtest/gtest.h>

#include <ostream>

namespace sockdispatch {
namespace {

struct RangeCase {
  const char *name;
  const char *header;
  uint64_t size;
  RangeRequest::Kind kind;
  uint64_t first;
  uint64_t length;
};

void PrintTo(const RangeCase &c, std::ostream *os) {
  *os << c.name;
}

class ParseRange : public testing::TestWithParam<RangeCase> {};

TEST_P(ParseRange, Parses) {
  const auto &c = GetParam();
  RangeRequest range = parseRange(c.header, c.size);
  ASSERT_EQ(range.kind, c.kind) << c.header;
  if (c.kind == RangeRequest::Kind::satisfiable) {
    EXPECT_EQ(range.first, c.first) << c.header;
    EXPECT_EQ(range.length, c.length) << c.header;
  }
}

constexpr auto kNone = RangeRequest::Kind::none;
constexpr auto kOk = RangeRequest::Kind::satisfiable;
constexpr auto kUnsat = RangeRequest::Kind::unsatisfiable;

INSTANTIATE_TEST_SUITE_P(
    Table, ParseRange,
    testing::Values(RangeCase{"absent", "", 100, kNone, 0, 0},
                    RangeCase{"first_last", "bytes=0-9", 100, kOk, 0, 10},
                    RangeCase{"middle", "bytes=10-19", 100, kOk, 10, 10},
                    RangeCase{"open_ended", "bytes=90-", 100, kOk, 90, 10},
                    RangeCase{"last_clamped", "bytes=95-1000", 100, kOk, 95, 5},
                    RangeCase{"suffix", "bytes=-10", 100, kOk, 90, 10},
                    RangeCase{"suffix_longer_than_file", "bytes=-500", 100, kOk, 0, 100},
                    RangeCase{"single_byte", "bytes=0-0", 100, kOk, 0, 1},
                    RangeCase{"unit_case_insensitive", "Bytes=0-1", 100, kOk, 0, 2},
                    RangeCase{"spaces_around", " bytes= 1-2 ", 100, kOk, 1, 2},
                    RangeCase{"start_past_end", "bytes=100-", 100, kUnsat, 0, 0},
                    RangeCase{"start_far_past_end", "bytes=500-600", 100, kUnsat, 0, 0},
                    RangeCase{"zero_suffix", "bytes=-0", 100, kUnsat, 0, 0},
                    RangeCase{"empty_file", "bytes=0-", 0, kUnsat, 0, 0},
                    RangeCase{"reversed", "bytes=9-1", 100, kNone, 0, 0},
                    RangeCase{"several_ranges", "bytes=0-1,5-6", 100, kNone, 0, 0},
                    RangeCase{"other_unit", "items=0-1", 100, kNone, 0, 0},
                    RangeCase{"no_dash", "bytes=5", 100, kNone, 0, 0},
                    RangeCase{"negative_first", "bytes=--5", 100, kNone, 0, 0},
                    RangeCase{"signed_number", "bytes=+1-2", 100, kNone, 0, 0},
                    RangeCase{"overflow", "bytes=99999999999999999999-", 100, kNone, 0, 0},
                    RangeCase{"unit_only", "bytes=", 100, kNone, 0, 0},
                    RangeCase{"dash_only", "bytes=-", 100, kNone, 0, 0}),
    [](const testing::TestParamInfo<RangeCase> &p) { return p.param.name; });

TEST(ContentRange, NamesTheBytesSentOrTheSize) {
  EXPECT_EQ(contentRange(parseRange("bytes=10-19", 100), 100), "bytes 10-19/100");
  EXPECT_EQ(contentRange(parseRange("bytes=-1", 100), 100), "bytes 99-99/100");
  EXPECT_EQ(contentRange(parseRange("bytes=200-", 100), 100), "bytes */100");
}

TEST(EntityTag, ChangesWithSizeAndTime) {
  struct stat a {};
  a.st_ino = 7;
  a.st_size = 100;
  a.st_mtim.tv_sec = 1000;
  struct stat b = a;
  b.st_size = 101;
  struct stat c = a;
  c.st_mtim.tv_nsec = 1;
  std::string tag = entityTag(a);
  EXPECT_EQ(tag.front(), '"');
  EXPECT_EQ(tag.back(), '"');
  EXPECT_EQ(tag, entityTag(a));
  EXPECT_NE(tag, entityTag(b));
  EXPECT_NE(tag, entityTag(c));
}

TEST(NoneMatch, WeakComparisonOverAList) {
  EXPECT_TRUE(noneMatchHits("\"abc\"", "\"abc\""));
  EXPECT_TRUE(noneMatchHits("W/\"abc\"", "\"abc\""));
  EXPECT_TRUE(noneMatchHits("\"x\", \"abc\"", "\"abc\""));
  EXPECT_TRUE(noneMatchHits(" * ", "\"abc\""));
  EXPECT_FALSE(noneMatchHits("\"abd\"", "\"abc\""));
  EXPECT_FALSE(noneMatchHits("abc", "\"abc\""));
  EXPECT_FALSE(noneMatchHits("", "\"abc\""));
}

TEST(HttpDate, ParsesImfFixdateOnly) {
  EXPECT_EQ(parseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT"), 784111777);
  EXPECT_EQ(parseHttpDate(httpDate(1700000000)), 1700000000);
  EXPECT_FALSE(parseHttpDate("Sunday, 06-Nov-94 08:49:37 GMT").has_value()); // RFC 850
  EXPECT_FALSE(parseHttpDate("Sun Nov  6 08:49:37 1994").has_value());       // asctime
  EXPECT_FALSE(parseHttpDate("Sun, 06 Nov 1994 08:49:37 PST").has_value());
  EXPECT_FALSE(parseHttpDate("garbage").has_value());
  EXPECT_FALSE(parseHttpDate("").has_value());
}

} // namespace
} // namespace sockdispatch
