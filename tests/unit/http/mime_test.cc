#include "http/mime.h"

#include <gtest/gtest.h>

#include <ostream>
#include <string>

namespace sockdispatch {
namespace {

struct MimeCase {
  const char *name;
  const char *file;
  const char *type;
};

// Names the case in test listings instead of dumping its bytes.
void PrintTo(const MimeCase &c, std::ostream *os) {
  *os << c.name;
}

class MimeTypes : public testing::TestWithParam<MimeCase> {};

TEST_P(MimeTypes, ByExtension) {
  EXPECT_EQ(mimeTypeFor(GetParam().file), GetParam().type);
}

INSTANTIATE_TEST_SUITE_P(
    Table, MimeTypes,
    testing::Values(
        MimeCase{"html", "index.html", "text/html; charset=utf-8"},
        MimeCase{"upper_case", "INDEX.HTM", "text/html; charset=utf-8"},
        MimeCase{"css", "a/b/site.css", "text/css; charset=utf-8"},
        MimeCase{"javascript", "app.js", "text/javascript; charset=utf-8"},
        MimeCase{"json", "data.json", "application/json"}, MimeCase{"png", "x.png", "image/png"},
        MimeCase{"jpeg", "photo.JPEG", "image/jpeg"}, MimeCase{"svg", "logo.svg", "image/svg+xml"},
        MimeCase{"woff2", "f.woff2", "font/woff2"}, MimeCase{"wasm", "m.wasm", "application/wasm"},
        MimeCase{"unknown", "archive.xyz", "application/octet-stream"},
        MimeCase{"no_extension", "README", "application/octet-stream"},
        MimeCase{"dotfile_only", ".bashrc", "application/octet-stream"},
        MimeCase{"dot_in_directory", "v1.2/README", "application/octet-stream"},
        MimeCase{"trailing_dot", "file.", "application/octet-stream"}),
    [](const testing::TestParamInfo<MimeCase> &p) { return p.param.name; });

} // namespace
} // namespace sockdispatch
