// Request-level checks on parsed fields: which Host values are `uri-host [":" port]`.
#include "http/http_message.h"

#include <gtest/gtest.h>

#include <string>

namespace sockdispatch {
namespace {

struct HostCase {
  const char *name;
  std::string value;
  bool valid;
};

void PrintTo(const HostCase &c, std::ostream *os) {
  *os << c.name;
}

class HostTable : public testing::TestWithParam<HostCase> {};

TEST_P(HostTable, IsJudged) {
  EXPECT_EQ(isValidHost(GetParam().value), GetParam().valid) << GetParam().value;
}

INSTANTIATE_TEST_SUITE_P(
    Table, HostTable,
    testing::Values(
        HostCase{"name", "example.com", true}, HostCase{"name_port", "example.com:8080", true},
        HostCase{"empty_port", "example.com:", true}, HostCase{"ipv4", "127.0.0.1:80", true},
        HostCase{"ipv6", "[::1]", true}, HostCase{"ipv6_port", "[2001:db8::1]:443", true},
        HostCase{"ipv6_v4_tail", "[::ffff:127.0.0.1]", true},
        HostCase{"ipvfuture", "[v1.fe80::a+en1]", true},
        HostCase{"percent_encoded", "ex%41mple", true},
        HostCase{"sub_delims", "a-b_c~d!$&'()*+,;=", true}, HostCase{"empty", "", false},
        HostCase{"only_port", ":80", false}, HostCase{"path", "example.com/a", false},
        HostCase{"query", "example.com?a", false}, HostCase{"userinfo", "user@example.com", false},
        HostCase{"space", "exa mple.com", false}, HostCase{"tab", "a\tb", false},
        HostCase{"port_letters", "example.com:8o", false},
        HostCase{"two_colons", "example.com:80:81", false}, HostCase{"bad_percent", "ex%4", false},
        HostCase{"ipv6_unbracketed", "::1", false}, HostCase{"ipv6_unclosed", "[::1", false},
        HostCase{"ipv6_junk_after", "[::1]x", false}, HostCase{"ipv6_letters", "[::g]", false},
        HostCase{"empty_brackets", "[]", false}, HostCase{"nul", std::string("a\0b", 3), false}),
    [](const testing::TestParamInfo<HostCase> &p) { return p.param.name; });

} // namespace
} // namespace sockdispatch
