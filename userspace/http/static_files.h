#pragma once

#include "core/result.h"
#include "core/unique_fd.h"
#include "http/file_cache.h"
#include "library/handler.h"

#include <sys/stat.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace sockdispatch {

// A request target turned into a path relative to the root: query and fragment dropped,
// percent-decoded exactly once, "." and empty segments removed, ".." applied. nullopt when
// the target is malformed, holds a NUL or another control byte or a backslash, or climbs
// above the root (all answered 400). "" is the root itself. `trailingSlash` tells whether the
// target named a directory; `hidden` whether a segment starts with a dot.
struct ResolvedPath {
  std::string relative;
  bool trailingSlash = false;
  bool hidden = false;
};
std::optional<ResolvedPath> resolveTarget(std::string_view target);

// GET and HEAD of files under a root directory. Files are opened with openat2(2) and
// RESOLVE_BENEATH, so no path, symlink or race can leave the root; large bodies go out with
// sendfile(2), small ones (up to 16 KiB) are read whole into a FileCache and answered from
// it while a stat of their path shows them unchanged. Conditional requests (If-None-Match,
// If-Modified-Since) get 304, a single Range gets 206 (416 when it starts past the end).
class StaticFileHandler : public Handler {
public:
  struct Options {
    bool serveDotfiles = false; // ".git", ".env", ...: 404 unless this is set
    FileCache::Bounds cache;    // of the small files kept in memory
  };
  static Result<std::unique_ptr<StaticFileHandler>> open(const std::string &root) {
    return open(root, Options{});
  }
  static Result<std::unique_ptr<StaticFileHandler>> open(const std::string &root, Options options);
  void handle(const Request &request, Response &response) const override;

private:
  struct Validators {
    std::string etag;
    std::string lastModified;
  };
  StaticFileHandler(UniqueFd root, Options options)
      : root_(std::move(root)), options_(options), cache_(options.cache) {}
  // Answers with the file `info` describes: 304, 416, 206 or 200. Its bytes come from
  // `whole` (all of a small file) when given, else from `file` (sendfile).
  static void answer(const Request &request, std::string_view name, const struct stat &info,
                     const Validators &validators, const std::string *whole, UniqueFd file,
                     Response &response);
  UniqueFd root_;
  Options options_;
  // Files up to 16 KiB, answered after a stat of their path (the loop's thread only).
  mutable FileCache cache_;
};

} // namespace sockdispatch
