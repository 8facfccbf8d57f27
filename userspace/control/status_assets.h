#pragma once

#include <optional>
#include <string_view>

namespace sockdispatch {

// The status page's files (userspace/control/status_page/), built into the binary so the
// page needs nothing from the network.
struct StatusAsset {
  std::string_view contentType;
  std::string_view body;
};

// The file served at `path` ("/", "/status.js", "/status.css"), if any.
std::optional<StatusAsset> findStatusAsset(std::string_view path);

} // namespace sockdispatch
