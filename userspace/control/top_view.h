#pragma once

#include "control/status_report.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sockdispatch {

// What `sockdispatch top` shows, computed from two samples of the same attachments: the
// newest, and the one a refresh before it (rates are the difference over the time between).
// Pure values: the terminal screen and the plain-text fallback both draw these.

enum class TopSort { kSlot, kOpen, kAccepted, kRequests };
TopSort nextSort(TopSort sort);
std::string_view sortName(TopSort sort);

struct TopRow {
  uint32_t slot = 0;
  uint32_t pid = 0;
  std::string state;
  bool draining = false;
  uint32_t weight = 1;
  uint64_t open = 0;
  uint64_t queued = 0;
  double acceptedPerSecond = 0;
  double requestsPerSecond = 0;
  uint64_t accepted = 0; // totals
  uint64_t requests = 0;
};

struct TopFrame {
  uint16_t port = 0;
  std::string mode;
  std::string policy;
  uint32_t masterPid = 0;
  bool masterAlive = false;
  std::vector<TopRow> rows; // the slots in use, sorted
  uint64_t open = 0;        // totals over the rows
  uint64_t queued = 0;
  double acceptedPerSecond = 0;
  double requestsPerSecond = 0;
  // Per verdict with a non-zero rate: its name and connections per second.
  std::vector<std::pair<std::string, double>> verdictRates;
};

// `before` is the previous sample of the same port (nullptr on the first refresh: rates 0);
// `seconds` the time between the two.
TopFrame makeTopFrame(const AttachmentStatus &now, const AttachmentStatus *before, double seconds,
                      TopSort sort);

// One attachment's summary: "port 8080  ebpf  least_conn  4 workers  open 3  queued 0  ...".
std::string formatTopSummary(const TopFrame &frame);
// The worker table's header and one row, without bars (the screen adds them).
std::string formatTopHeader();
std::string formatTopRow(const TopRow &row);
// The plain-text fallback: every frame's summary and rows, with a time stamp line.
std::string formatTopPlain(const std::vector<TopFrame> &frames, TopSort sort);

} // namespace sockdispatch
