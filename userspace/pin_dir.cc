#include "pin_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include <cstdlib>
#include <vector>

namespace sockdispatch {

namespace {

constexpr const char *kBpffsMount = "/sys/fs/bpf";

Result<void> makeDir(const std::string &dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return osError("create directory " + dir);
  }
  return {};
}

} // namespace

std::string pinBaseDir() {
  const char *override = std::getenv("SOCKDISPATCH_PIN_ROOT");
  if (override != nullptr && *override != '\0') {
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
  }
  return makeDir(pinBaseDir());
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

Result<void> removePinDir(const std::string &dir) {
  DIR *stream = ::opendir(dir.c_str());
  if (stream == nullptr) {
    return errno == ENOENT ? Result<void>{} : Result<void>{osError("open " + dir)};
  }
  std::vector<std::string> names;
  while (dirent *entry = ::readdir(stream)) {
    std::string name = entry->d_name;
    if (name != "." && name != "..") {
      names.push_back(name);
    }
  }
  ::closedir(stream);
  for (const auto &name : names) {
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
