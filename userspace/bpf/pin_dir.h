#pragma once

#include "core/result.h"
#include "core/unique_fd.h"

#include <chrono>
#include <cstdint>
#include <string>

namespace sockdispatch {

// Where attachments live: /sys/fs/bpf/sockdispatch/<port>/ with one pin per object.
// SOCKDISPATCH_PIN_ROOT overrides the base directory (tests, several bpffs mounts).
std::string pinBaseDir();
std::string pinDirFor(uint16_t port);

inline constexpr const char *kPinSlots = "slots";
inline constexpr const char *kPinConfig = "config";
inline constexpr const char *kPinVerdicts = "verdicts";
inline constexpr const char *kPinSockets = "sockets";
inline constexpr const char *kPinProgram = "dispatch";

// Mounts bpffs on /sys/fs/bpf when nothing is mounted there, then creates the base dir.
Result<void> ensureBpffs();

// flock() on a directory: exclusive for writers (attach, tune, detach), shared for readers
// (status).
class DirLock {
public:
  // Blocks until the lock is held.
  static Result<DirLock> acquire(const std::string &dir, bool exclusive);
  // Gives up after `timeout` with EWOULDBLOCK. Fails with ENOENT when `dir` does not exist, or
  // was removed (or replaced) while we waited: a lock on a directory that is gone guards
  // nothing.
  static Result<DirLock> acquire(const std::string &dir, bool exclusive,
                                 std::chrono::milliseconds timeout);

private:
  explicit DirLock(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

// The group whose members may read attachments (`status` without root).
inline constexpr const char *kPinGroup = "sockdispatch";

// Sets the ownership of a freshly pinned directory before it is renamed into place: when the
// group kPinGroup exists, root:sockdispatch with modes 0750 (dir) and 0640 (pins), so members
// can open the maps read-only and nobody but root can write them; otherwise root only (0700,
// 0600). Returns whether the group was found.
Result<bool> restrictPinDir(const std::string &dir);

// Removes a pin directory and the pins in it. Missing is success.
Result<void> removePinDir(const std::string &dir);

} // namespace sockdispatch
