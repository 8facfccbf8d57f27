#include "core/directory.h"

#include <sys/stat.h>

#include <cerrno>

namespace sockdispatch {

Result<void> makeDirectory(const std::string &path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) != 0) {
    if (errno == EEXIST) {
      return {};
    }
    return osError("create directory " + path);
  }
  if (::chmod(path.c_str(), mode) != 0) {
    return osError("set the mode of " + path);
  }
  return {};
}

Result<void> makeDirectories(const std::string &path, mode_t mode) {
  for (size_t slash = path.find('/', 1);; slash = path.find('/', slash + 1)) {
    if (auto made = makeDirectory(path.substr(0, slash), mode); !made) {
      return made;
    }
    if (slash == std::string::npos) {
      return {};
    }
  }
}

} // namespace sockdispatch
