#pragma once

#include "mapped_region.h"
#include "result.h"
#include "scoreboard.h"
#include "unique_fd.h"

#include <array>
#include <cstdint>
#include <string>

namespace sockdispatch {

// An attachment seen from outside its master (the CLI, tests, monitoring): the pinned maps
// under pinDirFor(port), with the slot and config arrays mmapped.
class PinnedAttachment {
public:
  // Fails with ENOENT when the port is not attached, and refuses pins whose ABI differs.
  static Result<PinnedAttachment> open(uint16_t port, bool writable);

  [[nodiscard]] Scoreboard scoreboard() const;
  [[nodiscard]] const sd_config &config() const { return *config_.as<sd_config>(); }
  // Verdict counters summed over CPUs.
  [[nodiscard]] Result<std::array<uint64_t, SD_NR_VERDICTS>> verdicts() const;

private:
  PinnedAttachment() = default;
  UniqueFd slotsFd_;
  UniqueFd configFd_;
  UniqueFd verdictsFd_;
  MappedRegion slots_;
  MappedRegion config_;
};

// Whether a process with this pid runs now (a stale attachment's master does not).
bool processAlive(uint32_t pid);

} // namespace sockdispatch
