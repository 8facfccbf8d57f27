#pragma once

#include "handler.h"
#include "result.h"
#include "unique_fd.h"

#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace sockdispatch {

// A request target turned into a path relative to the root: query and fragment dropped,
// percent-decoded exactly once, "." and empty segments removed, ".." applied. nullopt when
// the target is malformed, holds a NUL byte, or climbs above the root (all answered 400).
// "" is the root itself. `trailingSlash` tells whether the target named a directory.
struct ResolvedPath {
  std::string relative;
  bool trailingSlash = false;
};
std::optional<ResolvedPath> resolveTarget(std::string_view target);

// GET and HEAD of files under a root directory. Files are opened with openat2(2) and
// RESOLVE_BENEATH, so no path, symlink or race can leave the root; bodies go out with
// sendfile(2).
class StaticFileHandler : public Handler {
public:
  static Result<std::unique_ptr<StaticFileHandler>> open(const std::string &root);
  void handle(const Request &request, Response &response) const override;

private:
  explicit StaticFileHandler(UniqueFd root) : root_(std::move(root)) {}
  UniqueFd root_;
};

} // namespace sockdispatch
