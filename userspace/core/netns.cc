#include "core/netns.h"

#include <dirent.h>
#include <sys/stat.h>

namespace sockdispatch {

std::optional<std::string> findNetworkNamespaceName(const std::string &dir) {
  struct stat self {};
  if (::stat("/proc/self/ns/net", &self) != 0) {
    return std::nullopt;
  }
  DIR *stream = ::opendir(dir.c_str());
  if (stream == nullptr) {
    return std::nullopt;
  }
  std::optional<std::string> found;
  while (dirent *entry = ::readdir(stream)) {
    std::string name = entry->d_name;
    if (name == "." || name == "..") {
      continue;
    }
    std::string path = dir;
    path += '/';
    path += name;
    struct stat named {};
    if (::stat(path.c_str(), &named) == 0 && named.st_ino == self.st_ino &&
        named.st_dev == self.st_dev) {
      found = name;
      break;
    }
  }
  ::closedir(stream);
  return found;
}

const std::optional<std::string> &namedNetworkNamespace() {
  static const std::optional<std::string> name = findNetworkNamespaceName("/run/netns");
  return name;
}

} // namespace sockdispatch
