#pragma once

#include "core/monitoring_group.h"
#include "core/result.h"
#include "core/unique_fd.h"

#include <chrono>
#include <cstdint>
#include <string>

namespace sockdispatch {

// Where attachments live: /sys/fs/bpf/sockdispatch/<port>/ with one pin per object.
// SOCKDISPATCH_PIN_ROOT overrides the base directory (tests, several bpffs mounts).
//
// In a network namespace named by iproute2 (`ip netns exec NAME sockdispatch ...`) every
// command runs in a mount namespace of its own, with /sys remounted: the /sys/fs/bpf it sees
// is no bpffs, and a bpffs mounted there is a new instance that the next command does not
// see. There the master pins into the bpffs of its own mount namespace (pinStoreDir), and each
// attachment is found through a symlink in the namespace's directory on /run, which every
// `ip netns exec` shares: /run/sockdispatch/netns/NAME/pins/<port> ->
// /proc/<master pid>/root/sys/fs/bpf/sockdispatch/<port>. Two namespaces serving the same port
// never share a name; a dead master's link dangles and reads as "not attached".
std::string pinBaseDir();  // where attachments are listed and locked
std::string pinStoreDir(); // where this process pins (the same as pinBaseDir on the host)
std::string pinDirFor(uint16_t port);

inline constexpr const char *kPinSlots = "slots";
inline constexpr const char *kPinConfig = "config";
inline constexpr const char *kPinVerdicts = "verdicts";
inline constexpr const char *kPinSockets = "sockets";
inline constexpr const char *kPinProgram = "dispatch";

// Mounts bpffs on /sys/fs/bpf when nothing is mounted there, then creates the base and store
// dirs.
Result<void> ensureBpffs();

// Makes a pinned directory in pinStoreDir() (`stored`, named by port) the attachment of
// `port`: nothing to do on the host; in a named network namespace, the link in pinBaseDir()
// (a stale one replaced). Returns pinDirFor(port).
Result<std::string> linkPinDir(const std::string &stored, uint16_t port);

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
inline constexpr const char *kPinGroup = kMonitoringGroup;

// Sets the ownership of a freshly pinned directory before it is renamed into place: when the
// group kPinGroup exists, root:sockdispatch with modes 0750 (dir) and 0640 (pins), so members
// can open the maps read-only and nobody but root can write them; otherwise root only (0700,
// 0600). Returns whether the group was found.
Result<bool> restrictPinDir(const std::string &dir);

// Removes a pin directory and the pins in it. Missing is success. A link (an attachment in a
// named network namespace) is removed with the directory it points to, when that is reachable.
Result<void> removePinDir(const std::string &dir);

} // namespace sockdispatch
