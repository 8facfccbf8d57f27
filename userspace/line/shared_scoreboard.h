#pragma once

#include "bpf/scoreboard.h"
#include "core/mapped_region.h"
#include "core/result.h"
#include "core/system_calls.h"
#include "core/unique_fd.h"

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace sockdispatch {

// Where line-mode attachments keep their state: /run/sockdispatch/<port>/.
// SOCKDISPATCH_RUN_ROOT overrides the base directory (tests).
std::string runBaseDir();
std::string runDirFor(uint16_t port);

inline constexpr const char *kScoreboardFile = "scoreboard";

// The file's layout: one sd_config at offset 0, then SD_MAX_WORKERS sd_slots from the next
// page boundary (the ABI structs of sockdispatch/abi.h, as in the BPF maps).
struct ScoreboardLayout {
  size_t slotsOffset;
  size_t bytes;
};
ScoreboardLayout scoreboardLayout();

// Whether the master that created the scoreboard file at `path`, or one of its workers, still
// runs (holds the file's flock).
Result<bool> scoreboardInUse(const std::string &path);

// The scoreboard's memory when no BPF map exists (line mode): a file mapped MAP_SHARED, so the
// master builds a Scoreboard over it before fork and every worker shares the same counters.
// The CLI opens it read-only to show status.
class SharedScoreboard {
public:
  // The master: writes the file complete (`initial` with this ABI version, line mode, the
  // port and the caller's pid as master_pid; zeroed slots of weight 1) under a temporary
  // name, flocks it, then renames it into place. The lock is inherited by the workers it
  // forks: a file nobody holds locked (its master and workers are gone) is replaced, one in
  // use is refused with EEXIST, unless `takeOver` (the file of a dead master whose workers
  // still hold it: docs/design/takeover.md). The owner removes the file (and the directory,
  // when empty) on destruction. The file's blocks are reserved (`calls.allocate`): a full
  // file system is an error here, never a SIGBUS on a later write to the mapping.
  static Result<SharedScoreboard> create(uint16_t port, const sd_config &initial,
                                         bool takeOver = false, SystemCalls &calls = systemCalls());
  // Anyone else: maps the existing file, writable or read-only. Refuses a file whose ABI
  // version differs or that is shorter than the layout.
  static Result<SharedScoreboard> open(uint16_t port, bool writable);
  // The same, by path (tests, and the master re-opening its own file).
  static Result<SharedScoreboard> openPath(const std::string &path, bool writable);

  SharedScoreboard(SharedScoreboard &&other) noexcept;
  SharedScoreboard &operator=(SharedScoreboard &&other) noexcept;
  SharedScoreboard(const SharedScoreboard &) = delete;
  SharedScoreboard &operator=(const SharedScoreboard &) = delete;
  ~SharedScoreboard();

  // A writable view; a read-only mapping has none (a fatal check: it would fault on write).
  [[nodiscard]] Scoreboard writer();
  // A view for reading: use only its const members.
  [[nodiscard]] const Scoreboard reader() const;

  [[nodiscard]] const std::string &path() const { return path_; }
  [[nodiscard]] bool writable() const { return writable_; }
  [[nodiscard]] bool owner() const { return ownerPid_ != 0; }

private:
  SharedScoreboard() = default;
  void removeOwnedFile();
  [[nodiscard]] sd_config *config() const { return region_.as<sd_config>(); }
  [[nodiscard]] sd_slot *slots() const;

  std::string path_;
  MappedRegion region_;
  bool writable_ = false;
  pid_t ownerPid_ = 0; // the creating process; its forked children never remove the file
  UniqueFd lock_;      // the creator's flock, inherited by its workers: "in use"
};

} // namespace sockdispatch
