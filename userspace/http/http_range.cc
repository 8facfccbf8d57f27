#include "http/http_range.h"

#include "http/http_message.h"

#include <strings.h>

#include <cstdio>

namespace sockdispatch {

namespace {

// Decimal digits only (no sign, no space), without overflow.
std::optional<uint64_t> parseNumber(std::string_view text) {
  if (text.empty() || text.size() > 19) {
    return std::nullopt;
  }
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  return value;
}

std::string_view opaqueTag(std::string_view tag) {
  if (tag.substr(0, 2) == "W/") {
    tag.remove_prefix(2);
  }
  return tag;
}

} // namespace

RangeRequest parseRange(std::string_view header, uint64_t size) {
  constexpr std::string_view kUnit = "bytes=";
  RangeRequest none;
  header = trimmed(header);
  if (header.size() <= kUnit.size() ||
      ::strncasecmp(header.data(), kUnit.data(), kUnit.size()) != 0) {
    return none;
  }
  std::string_view spec = trimmed(header.substr(kUnit.size()));
  auto dash = spec.find('-');
  if (dash == std::string_view::npos || spec.find(',') != std::string_view::npos) {
    return none; // not a range, or several of them
  }
  std::string_view firstText = spec.substr(0, dash);
  std::string_view lastText = spec.substr(dash + 1);
  RangeRequest unsatisfiable{RangeRequest::Kind::unsatisfiable, 0, 0};
  if (firstText.empty()) { // "-N": the last N bytes
    auto suffix = parseNumber(lastText);
    if (!suffix) {
      return none;
    }
    if (*suffix == 0 || size == 0) {
      return unsatisfiable;
    }
    uint64_t length = *suffix < size ? *suffix : size;
    return {RangeRequest::Kind::satisfiable, size - length, length};
  }
  auto first = parseNumber(firstText);
  if (!first) {
    return none;
  }
  uint64_t last = size == 0 ? 0 : size - 1;
  if (!lastText.empty()) {
    auto parsed = parseNumber(lastText);
    if (!parsed || *parsed < *first) {
      return none; // RFC 9110 14.1.1: an invalid range-spec makes the header ignored
    }
    last = *parsed < last ? *parsed : last;
  }
  if (*first >= size) {
    return unsatisfiable;
  }
  return {RangeRequest::Kind::satisfiable, *first, last - *first + 1};
}

std::string contentRange(const RangeRequest &range, uint64_t size) {
  if (range.kind != RangeRequest::Kind::satisfiable) {
    return "bytes */" + std::to_string(size);
  }
  return "bytes " + std::to_string(range.first) + "-" +
         std::to_string(range.first + range.length - 1) + "/" + std::to_string(size);
}

std::string entityTag(const struct stat &info) {
  char text[96];
  int length = std::snprintf(text, sizeof(text), "\"%llx-%llx-%llx.%lx\"",
                             static_cast<unsigned long long>(info.st_ino),
                             static_cast<unsigned long long>(info.st_size),
                             static_cast<unsigned long long>(info.st_mtim.tv_sec),
                             static_cast<unsigned long>(info.st_mtim.tv_nsec));
  return std::string(text, static_cast<size_t>(length));
}

bool noneMatchHits(std::string_view ifNoneMatch, std::string_view etag) {
  ifNoneMatch = trimmed(ifNoneMatch);
  if (ifNoneMatch == "*") {
    return true;
  }
  std::string_view wanted = opaqueTag(etag);
  while (!ifNoneMatch.empty()) {
    auto comma = ifNoneMatch.find(',');
    std::string_view tag = trimmed(ifNoneMatch.substr(0, comma));
    if (!tag.empty() && opaqueTag(tag) == wanted) {
      return true;
    }
    if (comma == std::string_view::npos) {
      break;
    }
    ifNoneMatch.remove_prefix(comma + 1);
  }
  return false;
}

std::optional<time_t> parseHttpDate(std::string_view text) {
  text = trimmed(text);
  // "Sun, 06 Nov 1994 08:49:37 GMT": exactly 29 characters.
  if (text.size() != 29 || text.substr(25) != " GMT") {
    return std::nullopt;
  }
  std::string copy(text);
  tm parts{};
  const char *end = ::strptime(copy.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &parts);
  if (end == nullptr || *end != '\0') {
    return std::nullopt;
  }
  return ::timegm(&parts);
}

} // namespace sockdispatch
