#pragma once

#include <string_view>

namespace sockdispatch {

// The Content-Type for a file name, by its extension (case-insensitive);
// "application/octet-stream" when unknown.
std::string_view mimeTypeFor(std::string_view fileName);

} // namespace sockdispatch
