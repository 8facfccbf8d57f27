#include "bpf/pin_dir.h"

#include "core/directory.h"
#include "core/monitoring_group.h"
#include "core/netns.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <optional>
#include <thread>
#include <vector>

namespace sockdispatch {

namespace {

constexpr const char *kBpffsMount = "/sys/fs/bpf";
constexpr const char *kNetnsRunBase = "/run/sockdispatch/netns";

// The entries of `dir` but "." and "..".
Result<std::vector<std::string>> listEntries(const std::string &dir) {
  DIR *stream = ::opendir(dir.c_str());
  if (stream == nullptr) {
    return osError("open " + dir);
  }
  std::vector<std::string> names;
  while (dirent *entry = ::readdir(stream)) {
    std::string name = entry->d_name;
    if (name != "." && name != "..") {
      names.push_back(name);
    }
  }
  ::closedir(stream);
  return names;
}

// systemd (and bpftool) mount bpffs with mode 0700: nobody but root could reach the pins,
// and the monitoring group's read access to them (restrictPinDir) would be void. Search
// permission alone (--x) lets others reach a path they know; listing stays root's.
Result<void> allowSearch(const char *dir) {
  struct stat st {};
  if (::stat(dir, &st) != 0) {
    return osError(std::string("inspect ") + dir);
  }
  if ((st.st_mode & S_IXOTH) != 0) {
    return {};
  }
  if (::chmod(dir, (st.st_mode & 07777) | S_IXGRP | S_IXOTH) != 0) {
    return osError(std::string("let others search ") + dir);
  }
  spdlog::debug("{}: search permission added for others (mode was {:o})", dir, st.st_mode & 07777);
  return {};
}

} // namespace

const char *pinRootOverride() {
  const char *override = std::getenv("SOCKDISPATCH_PIN_ROOT");
  return override != nullptr && *override != '\0' ? override : nullptr;
}

std::string pinBaseDir() {
  if (const char *override = pinRootOverride()) {
    return override;
  }
  if (const auto &netns = namedNetworkNamespace()) {
    return std::string(kNetnsRunBase) + "/" + *netns + "/pins";
  }
  return pinStoreDir();
}

std::string pinStoreDir() {
  if (const char *override = pinRootOverride()) {
    return override;
  }
  return std::string(kBpffsMount) + "/sockdispatch";
}

std::string pinDirFor(uint16_t port) {
  return pinBaseDir() + "/" + std::to_string(port);
}

Result<void> ensureBpffs() {
  struct statfs fs {};
  if (::statfs(kBpffsMount, &fs) != 0) {
    return osError("inspect " + std::string(kBpffsMount));
  }
  if (fs.f_type != BPF_FS_MAGIC) {
    if (::mount("bpf", kBpffsMount, "bpf", 0, "mode=0755") != 0) {
      return osError("mount bpffs on " + std::string(kBpffsMount));
    }
  } else if (auto searchable = allowSearch(kBpffsMount); !searchable) {
    return searchable;
  }
  if (auto made = makeDirectory(pinStoreDir(), 0755); !made) {
    return made;
  }
  if (pinBaseDir() == pinStoreDir()) {
    return {};
  }
  // /run/sockdispatch/netns/NAME/pins, each level in turn.
  return makeDirectories(pinBaseDir(), 0755);
}

Result<std::string> linkPinDir(const std::string &stored, uint16_t port) {
  std::string link = pinDirFor(port);
  if (link == stored) {
    return link;
  }
  std::string target = "/proc/" + std::to_string(::getpid()) + "/root" + stored;
  if (::unlink(link.c_str()) != 0 && errno != ENOENT) {
    return osError("remove the stale link " + link);
  }
  if (::symlink(target.c_str(), link.c_str()) != 0) {
    return osError("link " + link + " to " + target);
  }
  return link;
}

Result<DirLock> DirLock::acquire(const std::string &dir, bool exclusive) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) {
    return osError("open " + dir);
  }
  if (::flock(fd.get(), exclusive ? LOCK_EX : LOCK_SH) != 0) {
    return osError("lock " + dir);
  }
  return DirLock(std::move(fd));
}

Result<DirLock> DirLock::acquire(const std::string &dir, bool exclusive,
                                 std::chrono::milliseconds timeout) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) {
    return osError("open " + dir);
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (::flock(fd.get(), (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR) {
      return osError("lock " + dir);
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return Error{EWOULDBLOCK, "lock " + dir,
                   "another sockdispatch command held it for " + std::to_string(timeout.count()) +
                       " ms"};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  struct stat held {};
  struct stat current {};
  if (::fstat(fd.get(), &held) != 0) {
    return osError("inspect " + dir);
  }
  if (::stat(dir.c_str(), &current) != 0 || held.st_ino != current.st_ino ||
      held.st_dev != current.st_dev) {
    return osError(ENOENT, "lock " + dir);
  }
  return DirLock(std::move(fd));
}

Result<bool> restrictPinDir(const std::string &dir) {
  auto group = monitoringGroup();
  if (!group) {
    return group.error();
  }
  auto names = listEntries(dir);
  if (!names) {
    return names.error();
  }
  for (const auto &name : names.value()) {
    std::string path = dir;
    path += '/';
    path += name;
    if (auto set = shareWithGroup(path, group.value(), 0640, 0600); !set) {
      return set.error();
    }
  }
  if (auto set = shareWithGroup(dir, group.value(), 0750, 0700); !set) {
    return set.error();
  }
  if (group->has_value()) {
    spdlog::debug("pins in {} readable by group {} (gid {})", dir, kPinGroup, **group);
  } else {
    spdlog::debug("no group {}: pins in {} stay readable by root only", kPinGroup, dir);
  }
  return group->has_value();
}

Result<void> removePinDir(const std::string &dir) {
  struct stat link {};
  if (::lstat(dir.c_str(), &link) == 0 && S_ISLNK(link.st_mode)) {
    std::vector<char> target(PATH_MAX + 1, '\0');
    ssize_t length = ::readlink(dir.c_str(), target.data(), PATH_MAX);
    if (length > 0) {
      if (auto removed = removePinDir(std::string(target.data(), static_cast<size_t>(length)));
          !removed && removed.error().code != EACCES && removed.error().code != ENOTDIR) {
        return removed;
      }
    }
    if (::unlink(dir.c_str()) != 0 && errno != ENOENT) {
      return osError("remove link " + dir);
    }
    return {};
  }
  auto names = listEntries(dir);
  if (!names) {
    return names.error().code == ENOENT ? Result<void>{} : Result<void>{names.error()};
  }
  for (const auto &name : names.value()) {
    std::string path = dir;
    path += '/';
    path += name;
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return osError("remove pin " + path);
    }
  }
  if (::rmdir(dir.c_str()) != 0 && errno != ENOENT) {
    return osError("remove directory " + dir);
  }
  return {};
}

} // namespace sockdispatch
