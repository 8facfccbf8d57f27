#pragma once

#include "core/result.h"
#include "core/unique_fd.h"
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
// RESOLVE_BENEATH, so no path, symlink or race can leave the root; bodies go out with
// sendfile(2). Conditional requests (If-None-Match, If-Modified-Since) get 304, a single
// Range gets 206 (416 when it starts past the end).
class StaticFileHandler : public Handler {
public:
  struct Options {
    bool serveDotfiles = false; // ".git", ".env", ...: 404 unless this is set
  };
  static Result<std::unique_ptr<StaticFileHandler>> open(const std::string &root) {
    return open(root, Options{});
  }
  static Result<std::unique_ptr<StaticFileHandler>> open(const std::string &root, Options options);
  void handle(const Request &request, Response &response) const override;

private:
  StaticFileHandler(UniqueFd root, Options options) : root_(std::move(root)), options_(options) {}
  static void serveFile(const Request &request, const std::string &name, UniqueFd file,
                        const struct stat &info, Response &response);
  UniqueFd root_;
  Options options_;
};

} // namespace sockdispatch
