#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>

namespace sockdispatch {

// A `Range` header against a representation of `size` bytes (RFC 9110 14.2). Only a single
// byte range is served: a list of ranges, another unit or a malformed value is ignored (the
// whole representation is sent with 200, as RFC 9110 14.2 allows).
struct RangeRequest {
  enum class Kind { none, satisfiable, unsatisfiable };
  Kind kind = Kind::none;
  uint64_t first = 0;  // satisfiable: the first byte sent
  uint64_t length = 0; // satisfiable: how many bytes, at least 1
};
RangeRequest parseRange(std::string_view header, uint64_t size);

// "bytes 0-99/1234" for a 206, "bytes */1234" for a 416.
std::string contentRange(const RangeRequest &range, uint64_t size);

// A strong validator for a file: changes when its inode, size or modification time does.
std::string entityTag(const struct stat &info);

// Whether an If-None-Match value ("*", or a list of tags) matches `etag` by the weak
// comparison (RFC 9110 13.1.2: W/ prefixes ignored).
bool noneMatchHits(std::string_view ifNoneMatch, std::string_view etag);

// An IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"); nullopt for any other form, which
// RFC 9110 13.1.3 says to ignore.
std::optional<time_t> parseHttpDate(std::string_view text);

} // namespace sockdispatch
