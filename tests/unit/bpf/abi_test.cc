// The map ABI as C++ sees it: sizes, alignment and the cache-line separation of writers.
#include "sockdispatch/abi.h"

#include <gtest/gtest.h>

#include <cstddef>

namespace {

static_assert(sizeof(sd_slot) % SD_CACHELINE == 0, "slots tile whole cache lines");
static_assert(sizeof(sd_sock_tag) == 24, "sd_sock_tag: no padding");
// What a decision reads and writes of a slot, on one line.
static_assert(offsetof(sd_slot, open) == 1 * SD_CACHELINE, "load line");
static_assert(offsetof(sd_slot, queued) / SD_CACHELINE == 1, "queued: on the load line");
static_assert(offsetof(sd_slot, busy_since) / SD_CACHELINE == 1, "busy_since: on the load line");
static_assert(offsetof(sd_slot, selected) / SD_CACHELINE == 1, "selected: on the load line");
static_assert(offsetof(sd_slot, accepted) == 2 * SD_CACHELINE, "accepted: own line");
static_assert(offsetof(sd_slot, requests) == 3 * SD_CACHELINE, "requests: own line");
static_assert(offsetof(sd_slot, skipped) == 4 * SD_CACHELINE, "skipped: own line");
static_assert(sizeof(sd_slot) == 5 * SD_CACHELINE);
static_assert(offsetof(sd_config, rr_cursor) == SD_CACHELINE, "cursor off the config line");
static_assert(SD_MAX_WORKERS >= 128);
// Where every version keeps them: a newer build reads a stale record of another version's
// owner there (attachment_pins.cc).
static_assert(offsetof(sd_config, abi_version) == 0 && offsetof(sd_config, master_pid) == 16,
              "abi_version and master_pid: fixed across versions");
static_assert(offsetof(sd_slot, load_source) == 32, "load_source: on the control line");
static_assert(offsetof(sd_config, stopping) == 32, "stopping: in what was padding");
static_assert(offsetof(sd_config, leaving) == 36 && offsetof(sd_config, agent_capacity) == 40,
              "the fleet's fields: in what was padding");
static_assert(SD_NR_VERDICTS == 8 && SD_NR_POLICIES == 6);

TEST(Abi, SlotArrayFillsWholePagesForMmap) {
  // BPF_F_MMAPABLE arrays are mapped in pages; the slot array must not end mid-page so the
  // C++ view and the kernel's agree on every element.
  EXPECT_EQ((sizeof(sd_slot) * SD_MAX_WORKERS) % 4096, 0U);
}

TEST(Abi, ZeroedSlotIsEmpty) {
  sd_slot slot{};
  EXPECT_EQ(slot.state, SD_SLOT_EMPTY);
  EXPECT_EQ(slot.draining, 0U);
}

} // namespace
