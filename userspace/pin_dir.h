#pragma once

#include "result.h"
#include "unique_fd.h"

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

// flock() on a directory: exclusive for writers (attach, tune, detach), shared for readers.
class DirLock {
public:
  static Result<DirLock> acquire(const std::string &dir, bool exclusive);

private:
  explicit DirLock(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

// Removes a pin directory and the pins in it. Missing is success.
Result<void> removePinDir(const std::string &dir);

} // namespace sockdispatch
