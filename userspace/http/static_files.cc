#include "http/static_files.h"

#include "http/http_message.h"
#include "http/http_range.h"
#include "http/mime.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

namespace sockdispatch {

namespace {

// Files up to this size are copied into the response; larger ones are sent with sendfile(2).
constexpr uint64_t kInlineFileBytes = 16UL * 1024;

int hexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

std::optional<std::string> percentDecode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    if (i + 2 >= text.size()) {
      return std::nullopt;
    }
    int high = hexValue(text[i + 1]);
    int low = hexValue(text[i + 2]);
    if (high < 0 || low < 0) {
      return std::nullopt;
    }
    out += static_cast<char>(high * 16 + low);
    i += 2;
  }
  return out;
}

int openBeneath(int dirFd, const std::string &path, uint64_t flags) {
  open_how how{};
  how.flags = flags | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  return static_cast<int>(::syscall(SYS_openat2, dirFd, path.c_str(), &how, sizeof(how)));
}

int statusForOpenError(int error) {
  switch (error) {
  case ENOENT:
  case ENOTDIR: return 404;
  case ENAMETOOLONG: return 414;
  case EACCES:
  case EPERM:
  case EXDEV: // would leave the root
  case ELOOP: return 403;
  default: return 500;
  }
}

} // namespace

std::optional<ResolvedPath> resolveTarget(std::string_view target) {
  // absolute-form ("http://host/path"): keep the path.
  if (auto scheme = target.find("://");
      scheme != std::string_view::npos && target.find('/') == scheme + 1) {
    auto pathStart = target.find('/', scheme + 3);
    target = pathStart == std::string_view::npos ? "/" : target.substr(pathStart);
  }
  if (auto end = target.find_first_of("?#"); end != std::string_view::npos) {
    target = target.substr(0, end);
  }
  if (target.empty() || target.front() != '/') {
    return std::nullopt;
  }
  auto decoded = percentDecode(target);
  if (!decoded) {
    return std::nullopt;
  }
  for (char c : *decoded) {
    // NUL and other control bytes name no file we serve; a backslash is a Windows path
    // separator some tools honour ("..\\"), refused so no component ever sees one.
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '\\') {
      return std::nullopt;
    }
  }
  std::vector<std::string_view> segments;
  std::string_view rest = *decoded;
  while (!rest.empty()) {
    auto slash = rest.find('/');
    std::string_view segment = rest.substr(0, slash);
    rest = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
    if (segment.empty() || segment == ".") {
      continue;
    }
    if (segment == "..") {
      if (segments.empty()) {
        return std::nullopt;
      }
      segments.pop_back();
      continue;
    }
    segments.push_back(segment);
  }
  ResolvedPath resolved;
  for (auto segment : segments) {
    if (!resolved.relative.empty()) {
      resolved.relative += '/';
    }
    resolved.relative += segment;
  }
  resolved.trailingSlash = decoded->back() == '/';
  resolved.hidden = std::any_of(segments.begin(), segments.end(),
                                [](std::string_view segment) { return segment.front() == '.'; });
  return resolved;
}

Result<std::unique_ptr<StaticFileHandler>> StaticFileHandler::open(const std::string &root,
                                                                   Options options) {
  UniqueFd fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) {
    return osError("open document root " + root);
  }
  return std::unique_ptr<StaticFileHandler>(new StaticFileHandler(std::move(fd), options));
}

void StaticFileHandler::handle(const Request &request, Response &response) const {
  if (request.method != "GET" && request.method != "HEAD") {
    response = simpleResponse(405, "Method Not Allowed");
    response.setHeader("Allow", "GET, HEAD");
    return;
  }
  auto path = resolveTarget(request.target);
  if (!path) {
    response = simpleResponse(400, "Bad Request");
    return;
  }
  if (path->hidden && !options_.serveDotfiles) {
    response = simpleResponse(404, "Not Found"); // as if it did not exist
    return;
  }
  // A directory target ("/", "/docs/") goes straight for its index file: one open, not two.
  // The cache's key keeps the slash: "docs/" names docs/index.html, "docs" a redirect.
  std::string key = path->relative;
  if (path->trailingSlash || path->relative.empty()) {
    key += '/';
  }
  if (const FileCache::Entry *cached = cache_.lookup(root_.get(), key)) {
    answer(request, cached->name, cached->info, {cached->etag, cached->lastModified}, &cached->body,
           UniqueFd(), response);
    return;
  }
  std::string name = path->relative.empty() ? "." : path->relative;
  UniqueFd file;
  if (path->trailingSlash || path->relative.empty()) {
    std::string index = path->relative.empty() ? "index.html" : path->relative + "/index.html";
    file.reset(openBeneath(root_.get(), index, O_RDONLY));
    if (file) {
      name = index;
    } else if (errno != ENOENT) {
      int status = statusForOpenError(errno);
      response = simpleResponse(status, reasonPhrase(status));
      return;
    }
  }
  if (!file) {
    file.reset(openBeneath(root_.get(), name, O_RDONLY));
  }
  if (!file) {
    int status = statusForOpenError(errno);
    response = simpleResponse(status, reasonPhrase(status));
    return;
  }
  struct stat info {};
  if (::fstat(file.get(), &info) != 0) {
    response = simpleResponse(500, "Internal Server Error");
    return;
  }
  if (S_ISDIR(info.st_mode)) {
    if (!path->trailingSlash && !path->relative.empty()) {
      response = simpleResponse(301, "Moved Permanently");
      std::string location = request.target.substr(0, request.target.find_first_of("?#"));
      response.setHeader("Location", location + "/");
      return;
    }
    response = simpleResponse(403, "Forbidden"); // a directory without an index
    return;
  }
  if (!S_ISREG(info.st_mode)) {
    response = simpleResponse(403, "Forbidden");
    return;
  }
  Validators validators{entityTag(info), httpDate(info.st_mtime)};
  auto size = static_cast<uint64_t>(info.st_size);
  if (size <= kInlineFileBytes) {
    // Read whole and kept: the next request for it costs a stat, not an open and a read.
    FileCache::Entry entry{name, info, std::string(size, '\0'), validators.etag,
                           validators.lastModified};
    ssize_t got = ::pread(file.get(), entry.body.data(), size, 0);
    if (got == static_cast<ssize_t>(size)) {
      answer(request, name, info, validators, &entry.body, UniqueFd(), response);
      cache_.insert(key, std::move(entry));
      return;
    }
  }
  answer(request, name, info, validators, nullptr, std::move(file), response);
}

void StaticFileHandler::answer(const Request &request, std::string_view name,
                               const struct stat &info, const Validators &validators,
                               const std::string *whole, UniqueFd file, Response &response) {
  auto size = static_cast<uint64_t>(info.st_size);
  const std::string &etag = validators.etag;
  const std::string &lastModified = validators.lastModified;
  // RFC 9110 13.2.2: If-None-Match first; If-Modified-Since only without it.
  std::string_view ifNoneMatch = request.header("If-None-Match");
  bool notModified = false;
  if (!ifNoneMatch.empty()) {
    notModified = noneMatchHits(ifNoneMatch, etag);
  } else if (auto since = parseHttpDate(request.header("If-Modified-Since"))) {
    notModified = info.st_mtime <= *since;
  }
  if (notModified) {
    response.status = 304;
    response.setHeader("ETag", etag);
    response.setHeader("Last-Modified", lastModified);
    return;
  }
  RangeRequest range;
  std::string_view ifRange = request.header("If-Range");
  // If-Range: the range applies only to the representation the client already holds.
  if (request.method == "GET" && (ifRange.empty() || ifRange == etag || ifRange == lastModified)) {
    range = parseRange(request.header("Range"), size);
  }
  if (range.kind == RangeRequest::Kind::unsatisfiable) {
    response = simpleResponse(416, "Range Not Satisfiable");
    response.setHeader("Content-Range", contentRange(range, size));
    return;
  }
  uint64_t offset = 0;
  uint64_t length = size;
  response.status = 200;
  if (range.kind == RangeRequest::Kind::satisfiable) {
    response.status = 206;
    offset = range.first;
    length = range.length;
    response.setHeader("Content-Range", contentRange(range, size));
  }
  response.setHeader("Content-Type", std::string(mimeTypeFor(name)));
  response.setHeader("Last-Modified", lastModified);
  response.setHeader("ETag", etag);
  response.setHeader("Accept-Ranges", "bytes");
  if (whole != nullptr) {
    // Small bodies travel in the same write as the headers: one segment on the wire instead
    // of a writev plus a sendfile. (A HEAD answer's length comes from the body not sent.)
    response.body.assign(*whole, offset, length);
    return;
  }
  if (length <= kInlineFileBytes && request.method == "GET") {
    response.body.resize(length); // a small range of a large file: read, not sendfile
    ssize_t got = ::pread(file.get(), response.body.data(), length, static_cast<off_t>(offset));
    if (got == static_cast<ssize_t>(length)) {
      return;
    }
    response.body.clear();
  }
  response.fileLength = length;
  response.fileOffset = static_cast<off_t>(offset);
  response.file = std::move(file);
}

} // namespace sockdispatch
