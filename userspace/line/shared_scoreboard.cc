#include "line/shared_scoreboard.h"

#include "core/directory.h"
#include "core/monitoring_group.h"
#include "core/netns.h"
#include "core/unique_fd.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <utility>
#include <vector>

namespace sockdispatch {

namespace {

constexpr const char *kRunBase = "/run/sockdispatch";

size_t pageSize() {
  return static_cast<size_t>(::sysconf(_SC_PAGESIZE));
}

size_t roundUp(size_t bytes, size_t page) {
  return (bytes + page - 1) / page * page;
}

// Removes a temporary file unless disarmed.
class UnlinkGuard {
public:
  explicit UnlinkGuard(std::string path) : path_(std::move(path)) {}
  ~UnlinkGuard() {
    if (!path_.empty()) {
      ::unlink(path_.c_str());
    }
  }
  UnlinkGuard(const UnlinkGuard &) = delete;
  UnlinkGuard &operator=(const UnlinkGuard &) = delete;
  void disarm() { path_.clear(); }

private:
  std::string path_;
};

// Refuses to replace a file in use. Its creator holds an flock on it, shared with the
// workers it forks, so the lock (unlike the pid in the file, which the system reuses) says
// whether anyone still runs on it.
Result<void> checkInUse(const std::string &path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    return errno == ENOENT ? Result<void>{} : Result<void>{osError("open scoreboard " + path)};
  }
  if (::flock(fd.get(), LOCK_SH | LOCK_NB) == 0) {
    return {}; // left behind by a master that is gone
  }
  if (errno != EWOULDBLOCK) {
    return osError("lock scoreboard " + path);
  }
  std::string owner = "another master";
  if (auto existing = SharedScoreboard::openPath(path, false)) {
    owner = "master pid " + std::to_string(loadRelaxed(existing->reader().config()->master_pid));
  }
  return Error{EEXIST, "create scoreboard " + path, "the port is attached by " + owner};
}

} // namespace

std::string runBaseDir() {
  const char *override = std::getenv("SOCKDISPATCH_RUN_ROOT");
  if (override != nullptr && *override != '\0') {
    return override;
  }
  // In a network namespace named by iproute2, its own directory: two namespaces may serve the
  // same port, and /run is shared by every `ip netns exec`.
  if (const auto &netns = namedNetworkNamespace()) {
    return std::string(kRunBase) + "/netns/" + *netns;
  }
  return kRunBase;
}

std::string runDirFor(uint16_t port) {
  return runBaseDir() + "/" + std::to_string(port);
}

ScoreboardLayout scoreboardLayout() {
  size_t page = pageSize();
  size_t slotsOffset = roundUp(sizeof(sd_config), page);
  return {slotsOffset, slotsOffset + roundUp(sizeof(sd_slot) * SD_MAX_WORKERS, page)};
}

Result<SharedScoreboard> SharedScoreboard::create(uint16_t port, const sd_config &initial,
                                                  bool takeOver, SystemCalls &calls) {
  auto group = monitoringGroup();
  if (!group) {
    return group.error();
  }
  // Root writes, the monitoring group reads (as the pins): the base directory stays 0755.
  std::string dir = runDirFor(port);
  if (auto made = makeDirectories(dir, 0755); !made) {
    return made.error();
  }
  if (auto shared = shareWithGroup(dir, group.value(), 0750, 0700); !shared) {
    return shared.error();
  }
  std::string path = dir + "/" + kScoreboardFile;
  if (auto inUse = checkInUse(path); !inUse && !takeOver) {
    return inUse.error();
  }

  std::string tempPath = path + ".XXXXXX";
  std::vector<char> name(tempPath.begin(), tempPath.end());
  name.push_back('\0');
  UniqueFd fd(::mkostemp(name.data(), O_CLOEXEC));
  if (!fd) {
    return osError("create temporary file " + tempPath);
  }
  tempPath = name.data();
  UnlinkGuard guard(tempPath);
  ScoreboardLayout layout = scoreboardLayout();
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    return osError("lock " + tempPath);
  }
  if (auto shared = shareWithGroup(tempPath, group.value(), 0640, 0600); !shared) {
    return shared.error();
  }
  // Its blocks reserved now (ftruncate would only set a size): on a full file system the
  // attach fails here, rather than a worker dying of SIGBUS on its first write to the mapping.
  if (calls.allocate(fd.get(), 0, static_cast<off_t>(layout.bytes)) != 0) {
    return osError("reserve " + std::to_string(layout.bytes) + " bytes for scoreboard " + path);
  }
  auto region = mapShared(fd.get(), layout.bytes, true, tempPath);
  if (!region) {
    return region.error();
  }

  SharedScoreboard board;
  board.region_ = std::move(region.value());
  board.writable_ = true;
  sd_slot *slots = board.slots();
  for (uint32_t slot = 0; slot < SD_MAX_WORKERS; ++slot) {
    slots[slot].weight = 1; // the file is zero-filled; a fresh slot weighs 1
  }
  sd_config *config = board.config(); // not yet visible to anyone: plain stores suffice
  *config = initial;
  config->abi_version = SD_ABI_VERSION;
  config->mode = SD_MODE_LINE;
  config->port = port;
  config->master_pid = static_cast<uint32_t>(::getpid());
  if (config->nr_slots > SD_MAX_WORKERS) {
    config->nr_slots = SD_MAX_WORKERS;
  }

  if (::rename(tempPath.c_str(), path.c_str()) != 0) {
    return osError("rename " + tempPath + " to " + path);
  }
  guard.disarm();
  board.path_ = path;
  board.ownerPid_ = ::getpid();
  board.lock_ = std::move(fd);
  return board;
}

Result<bool> scoreboardInUse(const std::string &path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    return osError("open scoreboard " + path);
  }
  if (::flock(fd.get(), LOCK_SH | LOCK_NB) == 0) {
    return false;
  }
  if (errno != EWOULDBLOCK) {
    return osError("lock scoreboard " + path);
  }
  return true;
}

Result<SharedScoreboard> SharedScoreboard::open(uint16_t port, bool writable) {
  return openPath(runDirFor(port) + "/" + kScoreboardFile, writable);
}

Result<SharedScoreboard> SharedScoreboard::openPath(const std::string &path, bool writable) {
  UniqueFd fd(::open(path.c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC));
  if (!fd) {
    return osError("open scoreboard " + path);
  }
  struct stat status {};
  if (::fstat(fd.get(), &status) != 0) {
    return osError("inspect scoreboard " + path);
  }
  ScoreboardLayout layout = scoreboardLayout();
  if (!S_ISREG(status.st_mode) || static_cast<size_t>(status.st_size) < layout.bytes) {
    return logicError("open scoreboard " + path, "it is " + std::to_string(status.st_size) +
                                                     " bytes, the layout needs " +
                                                     std::to_string(layout.bytes));
  }
  auto region = mapShared(fd.get(), layout.bytes, writable, "scoreboard " + path);
  if (!region) {
    return region.error();
  }
  SharedScoreboard board;
  board.region_ = std::move(region.value());
  board.writable_ = writable;
  board.path_ = path;
  uint32_t abi = loadRelaxed(board.config()->abi_version);
  if (abi != SD_ABI_VERSION) {
    return logicError("open scoreboard " + path, "its ABI is version " + std::to_string(abi) +
                                                     ", this sockdispatch speaks " + "version " +
                                                     std::to_string(SD_ABI_VERSION));
  }
  return board;
}

SharedScoreboard::SharedScoreboard(SharedScoreboard &&other) noexcept
    : path_(std::move(other.path_)), region_(std::move(other.region_)), writable_(other.writable_),
      ownerPid_(std::exchange(other.ownerPid_, 0)), lock_(std::move(other.lock_)) {}

SharedScoreboard &SharedScoreboard::operator=(SharedScoreboard &&other) noexcept {
  if (this != &other) {
    removeOwnedFile();
    path_ = std::move(other.path_);
    region_ = std::move(other.region_);
    writable_ = other.writable_;
    ownerPid_ = std::exchange(other.ownerPid_, 0);
    lock_ = std::move(other.lock_);
  }
  return *this;
}

SharedScoreboard::~SharedScoreboard() {
  removeOwnedFile();
}

void SharedScoreboard::removeOwnedFile() {
  if (ownerPid_ == 0 || ownerPid_ != ::getpid()) {
    return;
  }
  ownerPid_ = 0;
  ::unlink(path_.c_str());
  std::string dir = path_.substr(0, path_.rfind('/'));
  ::rmdir(dir.c_str()); // fails, harmlessly, while other files live there
}

sd_slot *SharedScoreboard::slots() const {
  return reinterpret_cast<sd_slot *>(region_.as<unsigned char>() + scoreboardLayout().slotsOffset);
}

Scoreboard SharedScoreboard::writer() {
  if (!writable_) {
    std::fputs("SharedScoreboard::writer() on a read-only mapping\n", stderr);
    std::abort();
  }
  return Scoreboard(slots(), config());
}

const Scoreboard SharedScoreboard::reader() const {
  return Scoreboard(slots(), config());
}

} // namespace sockdispatch
