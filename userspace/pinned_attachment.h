#pragma once

#include "mapped_region.h"
#include "result.h"
#include "scoreboard.h"
#include "unique_fd.h"

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace sockdispatch {

// An attachment seen from outside its master (the CLI, tests, monitoring): the pinned maps
// under pinDirFor(port). Writable, the slot and config arrays are mmapped and live. Read-only
// (the kernel refuses shared mappings of read-only map fds), they are copied with map
// lookups each time scoreboard() is called.
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

private:
  PinnedAttachment() = default;
  Result<void> refresh();

  bool writable_ = false;
  std::vector<sd_slot> slotCopy_;
  sd_config configCopy_{};
  UniqueFd slotsFd_;
  UniqueFd configFd_;
  UniqueFd verdictsFd_;
  MappedRegion slots_;
  MappedRegion config_;
};

// Whether a process with this pid runs now (a stale attachment's master does not).
bool processAlive(uint32_t pid);

} // namespace sockdispatch
