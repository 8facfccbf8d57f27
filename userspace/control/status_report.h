#pragma once

#include "bpf/scoreboard.h"
#include "core/result.h"

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace sockdispatch {

// Everything `sockdispatch status` shows about one attachment, read from its pins.
struct AttachmentStatus {
  uint16_t port = 0;
  sd_config config{};
  bool masterAlive = false;
  std::vector<SlotSnapshot> workers;
  std::array<uint64_t, SD_NR_VERDICTS> verdicts{};
  uint32_t programId = 0;
  uint64_t programRunTimeNs = 0; // both 0 unless kernel.bpf_stats_enabled=1
  uint64_t programRunCount = 0;
  uint64_t readAtNs = 0; // CLOCK_MONOTONIC when the slots were read (for busy_since's age)
};

// The ports with pinned state, ascending.
std::vector<uint16_t> attachedPorts();

// Reads one attachment (read-only). ENOENT when the port is not attached.
Result<AttachmentStatus> readStatus(uint16_t port);

// Renderings. JSON: one object per attachment (schema in docs/operations.md).
std::string formatTable(const AttachmentStatus &status);
std::string formatJson(const AttachmentStatus &status);
std::string formatJson(const std::vector<AttachmentStatus> &all);
std::string formatPrometheus(const std::vector<AttachmentStatus> &all);

} // namespace sockdispatch
