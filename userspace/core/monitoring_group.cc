#include "core/monitoring_group.h"

#include <grp.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

namespace sockdispatch {

namespace {

// For its lifetime the calling thread's file-system gid is `gid`, which makes it a member of
// that group for permission checks (chown's included).
class FilesystemGroup {
public:
  explicit FilesystemGroup(gid_t gid) : previous_(::setfsgid(gid)) {}
  ~FilesystemGroup() { ::setfsgid(previous_); }
  FilesystemGroup(const FilesystemGroup &) = delete;
  FilesystemGroup &operator=(const FilesystemGroup &) = delete;

private:
  int previous_;
};

} // namespace

Result<std::optional<gid_t>> monitoringGroup() {
  std::vector<char> buffer(16384);
  group entry{};
  group *found = nullptr;
  int err = ::getgrnam_r(kMonitoringGroup, &entry, buffer.data(), buffer.size(), &found);
  if (err != 0) {
    return osError(err, std::string("look up group ") + kMonitoringGroup);
  }
  if (found == nullptr) {
    return std::optional<gid_t>{};
  }
  return std::optional<gid_t>{found->gr_gid};
}

Result<void> shareWithGroup(const std::string &path, std::optional<gid_t> group, mode_t shared,
                            mode_t unshared) {
  gid_t owner = group.value_or(0);
  int error = 0;
  {
    FilesystemGroup asMember(owner);
    if (::chown(path.c_str(), static_cast<uid_t>(-1), owner) != 0) {
      error = errno;
    }
  }
  if (error != 0) {
    return osError(error, "give " + path + " to group " + std::to_string(owner));
  }
  if (::chmod(path.c_str(), group ? shared : unshared) != 0) {
    return osError("change the mode of " + path);
  }
  return {};
}

} // namespace sockdispatch
