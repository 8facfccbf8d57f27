#pragma once

#include "bpf/scoreboard.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace sockdispatch {

// `sockdispatch tune`: live changes to an attachment's balancing, written into its pinned
// maps. The kernel program reads them on the next SYN; nothing restarts.

// The largest weight `tune --weight` accepts. The weighted policy sums the weights of up to
// SD_MAX_WORKERS slots into a u64, so any u32 would do; this bound keeps a typo (an extra
// digit) from starving every other worker.
inline constexpr uint32_t kMaxWeight = 1000;

// The flags of `tune`, as typed.
struct TuneFlags {
  std::string policy; // empty: unchanged
  std::vector<std::string> weights;
  std::vector<std::string> drain;
  std::vector<std::string> undrain;
};

// A checked request: every value parsed and in range (slots not yet checked against the
// attachment's slot count).
struct TuneRequest {
  std::optional<sd_policy> policy;
  std::vector<std::pair<uint32_t, uint32_t>> weights; // slot, weight
  std::vector<uint32_t> drain;
  std::vector<uint32_t> undrain;

  [[nodiscard]] bool empty() const {
    return !policy && weights.empty() && drain.empty() && undrain.empty();
  }
};

// A refusal of the request, naming the flag and the bad value: the CLI prints it and exits 2.
struct Refusal {
  std::string reason;
};

// Parses every flag. The first bad value is refused; nothing is partially accepted.
std::variant<TuneRequest, Refusal> parseTuneFlags(const TuneFlags &flags);

// Checks the request against the attachment: each slot below config.nr_slots, and no slot
// both drained and undrained.
std::optional<Refusal> checkTuneRequest(const TuneRequest &request, const sd_config &config);

// Writes a checked request through the live scoreboard (the mmapped pinned maps): weights and
// drains first, the policy last, then bumps config.generation once. Returns what changed, one line
// each ("policy: skip_load -> least_conn", "slot 2: draining", "slot 3: weight 1 -> 5"); values
// already in place are reported as unchanged. The caller holds the attachment's exclusive lock.
std::vector<std::string> applyTune(const TuneRequest &request, Scoreboard &board);

} // namespace sockdispatch
