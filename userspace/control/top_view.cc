#include "control/top_view.h"

#include "bpf/names.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <ctime>

namespace sockdispatch {

namespace {

constexpr std::array<TopSort, 4> kSorts{TopSort::kSlot, TopSort::kOpen, TopSort::kAccepted,
                                        TopSort::kRequests};

double rate(uint64_t now, uint64_t before, double seconds) {
  if (seconds <= 0 || now < before) {
    return 0; // the first refresh, or a counter reset by a new generation
  }
  return static_cast<double>(now - before) / seconds;
}

const SlotSnapshot *sameWorker(const AttachmentStatus *before, const SlotSnapshot &worker) {
  if (before == nullptr) {
    return nullptr;
  }
  for (const SlotSnapshot &old : before->workers) {
    if (old.slot == worker.slot && old.pid == worker.pid) {
      return &old;
    }
  }
  return nullptr;
}

void sortRows(std::vector<TopRow> &rows, TopSort sort) {
  auto key = [sort](const TopRow &row) -> double {
    switch (sort) {
    case TopSort::kOpen: return static_cast<double>(row.open + row.queued);
    case TopSort::kAccepted: return row.acceptedPerSecond;
    case TopSort::kRequests: return row.requestsPerSecond;
    case TopSort::kSlot: break;
    }
    return 0;
  };
  std::stable_sort(rows.begin(), rows.end(), [&](const TopRow &a, const TopRow &b) {
    if (sort == TopSort::kSlot) {
      return a.slot < b.slot;
    }
    return key(a) > key(b);
  });
}

} // namespace

TopSort nextSort(TopSort sort) {
  for (size_t i = 0; i < kSorts.size(); ++i) {
    if (kSorts[i] == sort) {
      return kSorts[(i + 1) % kSorts.size()];
    }
  }
  return TopSort::kSlot;
}

std::string_view sortName(TopSort sort) {
  switch (sort) {
  case TopSort::kSlot: return "slot";
  case TopSort::kOpen: return "open+queued";
  case TopSort::kAccepted: return "accepted/s";
  case TopSort::kRequests: return "requests/s";
  }
  return "slot";
}

TopFrame makeTopFrame(const AttachmentStatus &now, const AttachmentStatus *before, double seconds,
                      TopSort sort) {
  TopFrame frame;
  frame.port = now.port;
  frame.mode = std::string(modeName(now.config.mode));
  frame.policy = std::string(policyName(now.config.policy));
  frame.masterPid = now.config.master_pid;
  frame.masterAlive = now.masterAlive;
  for (const SlotSnapshot &worker : now.workers) {
    if (worker.state == SD_SLOT_EMPTY) {
      continue;
    }
    TopRow row;
    row.slot = worker.slot;
    row.pid = worker.pid;
    row.state = std::string(slotStateName(worker.state));
    row.draining = worker.draining != 0;
    row.weight = worker.weight;
    ShownLoad load = shownLoad(now, worker);
    row.open = load.open;
    row.queued = load.queued;
    row.accepted = worker.accepted;
    row.requests = worker.requests;
    if (const SlotSnapshot *old = sameWorker(before, worker)) {
      row.acceptedPerSecond = rate(worker.accepted, old->accepted, seconds);
      row.requestsPerSecond = rate(worker.requests, old->requests, seconds);
    }
    frame.open += row.open;
    frame.queued += row.queued;
    frame.acceptedPerSecond += row.acceptedPerSecond;
    frame.requestsPerSecond += row.requestsPerSecond;
    frame.rows.push_back(row);
  }
  sortRows(frame.rows, sort);
  if (before != nullptr) {
    for (uint32_t verdict = 0; verdict < SD_NR_VERDICTS; ++verdict) {
      double perSecond = rate(now.verdicts[verdict], before->verdicts[verdict], seconds);
      if (perSecond > 0) {
        frame.verdictRates.emplace_back(std::string(verdictName(verdict)), perSecond);
      }
    }
  }
  return frame;
}

std::string formatTopSummary(const TopFrame &frame) {
  std::string verdicts;
  for (const auto &[name, perSecond] : frame.verdictRates) {
    verdicts += fmt::format("  {} {:.0f}/s", name, perSecond);
  }
  return fmt::format("port {}  {}  {}  master {}{}  {} worker{}  open {}  queued {}  accepted "
                     "{:.0f}/s  requests {:.0f}/s{}",
                     frame.port, frame.mode, frame.policy, frame.masterPid,
                     frame.masterAlive ? "" : " (not running)", frame.rows.size(),
                     frame.rows.size() == 1 ? "" : "s", frame.open, frame.queued,
                     frame.acceptedPerSecond, frame.requestsPerSecond,
                     verdicts.empty() ? "" : "  verdicts:" + verdicts);
}

std::string formatTopHeader() {
  return fmt::format("{:>4} {:>8} {:<9} {:>6} {:>7} {:>7} {:>11} {:>11}", "slot", "pid", "state",
                     "weight", "open", "queued", "accepted/s", "requests/s");
}

std::string formatTopRow(const TopRow &row) {
  std::string state = row.draining ? row.state + "*" : row.state;
  return fmt::format("{:>4} {:>8} {:<9} {:>6} {:>7} {:>7} {:>11.1f} {:>11.1f}", row.slot, row.pid,
                     state, row.weight, row.open, row.queued, row.acceptedPerSecond,
                     row.requestsPerSecond);
}

std::string formatTopPlain(const std::vector<TopFrame> &frames, TopSort sort) {
  std::time_t now = std::time(nullptr);
  std::array<char, 32> stamp{};
  std::tm local{};
  std::strftime(stamp.data(), stamp.size(), "%H:%M:%S", localtime_r(&now, &local));
  std::string out =
      fmt::format("sockdispatch top  {}  sorted by {}\n", stamp.data(), sortName(sort));
  if (frames.empty()) {
    return out + "no attachments\n";
  }
  for (const TopFrame &frame : frames) {
    out += formatTopSummary(frame) + "\n" + formatTopHeader() + "\n";
    for (const TopRow &row : frame.rows) {
      out += formatTopRow(row) + "\n";
    }
  }
  return out;
}

} // namespace sockdispatch
