#pragma once

#include "bpf/scoreboard.h"
#include "control/pinned_attachment.h"
#include "core/listener_diag.h"
#include "core/result.h"

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
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
  // Slots whose load the kernel keeps (load_source kernel): their `open` counts from the
  // handshake, so it includes the listener's accept queue. By slot: the cookie of the slot's
  // listener (from the `sockets` map; slots holding none are left out) and, once matched with
  // a sock_diag dump (applyAcceptQueues), that listener's accept queue.
  std::map<uint32_t, uint64_t> listenerCookies;
  std::map<uint32_t, uint64_t> acceptQueues;
  // Why a kernel-measured slot's open could not be split from its queue (shown on stderr).
  std::vector<std::string> notes;
};

// Whether any worker's load is kept by the kernel, so that status needs its listener's queue.
bool hasKernelMeasuredSlots(const AttachmentStatus &status);

// Records the accept queue of each kernel-measured slot whose listener (by cookie) is among
// `listeners`, and a note for each one that is not.
void applyAcceptQueues(AttachmentStatus &status, const std::vector<ListenerInfo> &listeners);

// Splits each kernel-measured slot's open from its listener's accept queue with one sock_diag
// dump of the port's listeners (IPv6 too only when some listener is not among the IPv4 ones:
// each family's dump walks the kernel's whole listener hash). Without it (a failed dump, a
// listener not found) the numbers stay as read, and `status.notes` says why.
void splitKernelLoad(AttachmentStatus &status);

// What status shows as a worker's load. A kernel-measured slot whose accept queue is known:
// open = open - accept queue (at least 0), queued = queued (chosen, handshake not done yet) +
// accept queue. Every other slot: its counters as they are.
struct ShownLoad {
  uint64_t open = 0;
  uint64_t queued = 0;
  std::optional<uint64_t> acceptQueue;
};
ShownLoad shownLoad(const AttachmentStatus &status, const SlotSnapshot &worker);

// The ports with pinned state, ascending.
std::vector<uint16_t> attachedPorts();

// Reads one attachment (read-only), and the listener cookies of its kernel-measured slots
// (the caller splits their load with a dump: applyAcceptQueues). ENOENT when the port is not
// attached; EWOULDBLOCK when another command holds the pins' lock for longer than
// `lockTimeout` (0: try once, for a caller that must not wait).
Result<AttachmentStatus> readStatus(uint16_t port,
                                    std::chrono::milliseconds lockTimeout = kPinLockTimeout);

// Renderings. JSON: one object per attachment (schema in docs/operations.md).
std::string formatTable(const AttachmentStatus &status);
std::string formatJson(const AttachmentStatus &status);
std::string formatJson(const std::vector<AttachmentStatus> &all);
std::string formatPrometheus(const std::vector<AttachmentStatus> &all);

} // namespace sockdispatch
