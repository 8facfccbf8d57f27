#pragma once

#include "bpf/pin_dir.h"
#include "bpf/scoreboard.h"
#include "core/mapped_region.h"
#include "core/result.h"
#include "core/unique_fd.h"
#include "line/shared_scoreboard.h"

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sockdispatch {

// Where the state of `port`'s attachment lives: its pin directory (eBPF mode) when that
// exists, else its run directory (line mode) when that exists, else the pin directory.
std::string stateDirFor(uint16_t port);

// An attachment seen from outside its master (the CLI, tests, monitoring): the pinned maps
// under pinDirFor(port), or in line mode the scoreboard file under runDirFor(port). Writable, the
// slot and config arrays are mmapped and live. Read-only (the kernel refuses shared mappings of
// read-only map fds), they are copied with map lookups each time scoreboard() is called.
class PinnedAttachment {
public:
  // Fails with ENOENT when the port is not attached, and refuses pins whose ABI differs.
  static Result<PinnedAttachment> open(uint16_t port, bool writable);

  // A view of the slots and config; read-only attachments refresh their copy first.
  [[nodiscard]] Scoreboard scoreboard();
  // The config record; read-only attachments refresh their copy first.
  [[nodiscard]] const sd_config &config();
  // Verdict counters summed over CPUs.
  [[nodiscard]] Result<std::array<uint64_t, SD_NR_VERDICTS>> verdicts() const;
  // The cookie of the listener in `slot` of the `sockets` map (what bpf_get_socket_cookie and
  // SO_COOKIE give for it): ENOENT when the slot holds no socket, and in line mode. The map is
  // opened read-only on first use.
  [[nodiscard]] Result<uint64_t> socketCookie(uint32_t slot);
  // The kernel's id of the config map (0 if unknown, and in line mode).
  [[nodiscard]] uint32_t configMapId() const;
  // Line mode: the state is a scoreboard file, not pinned maps.
  [[nodiscard]] bool lineMode() const { return shared_.has_value(); }
  // Whether process `pid` still holds this attachment (its maps, or in line mode the
  // scoreboard file's lock): not an unrelated process that reused the number. nullopt when
  // the system does not tell.
  [[nodiscard]] std::optional<bool> heldBy(uint32_t pid) const;

private:
  PinnedAttachment() = default;
  Result<void> refresh();

  bool writable_ = false;
  std::optional<SharedScoreboard> shared_;
  std::vector<sd_slot> slotCopy_;
  sd_config configCopy_{};
  UniqueFd slotsFd_;
  UniqueFd configFd_;
  UniqueFd verdictsFd_;
  UniqueFd socketsFd_; // opened by socketCookie()
  std::string pinDir_;
  MappedRegion slots_;
  MappedRegion config_;
};

// An attachment opened under its directory's flock: shared for readers (status), exclusive
// for writers (tune, detach). The lock is held as long as this lives.
struct LockedAttachment {
  DirLock lock;
  PinnedAttachment pins;
};

// How long a command waits for another one's lock before it gives up.
inline constexpr std::chrono::milliseconds kPinLockTimeout{5000};

// Locks pinDirFor(port), then opens its pins. ENOENT when the port is not attached.
Result<LockedAttachment> openLocked(uint16_t port, bool exclusive, bool writable,
                                    std::chrono::milliseconds timeout = kPinLockTimeout);

// Whether a process with this pid runs now (a stale attachment's master does not; neither does
// a zombie nobody has reaped yet).
bool processAlive(uint32_t pid);

// Whether process `pid` holds an fd of the BPF map `mapId`: proof that a pid read from the
// pins is still their master, not an unrelated process that reused the number. nullopt when
// /proc does not tell us (another user's process).
std::optional<bool> processHoldsMap(uint32_t pid, uint32_t mapId);

} // namespace sockdispatch
