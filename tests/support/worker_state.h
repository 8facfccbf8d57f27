#pragma once

#include "control/pinned_attachment.h"
#include "support/process.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <map>
#include <set>
#include <string>

namespace sockdispatch::test {

// The fields of /proc/PID/status, by name ("Uid" -> "65534\t65534\t65534\t65534").
inline std::map<std::string, std::string> procStatus(pid_t pid) {
  std::map<std::string, std::string> fields;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) {
      continue;
    }
    auto value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    value.erase(value.find_last_not_of(" \t") + 1);
    fields[line.substr(0, colon)] = value;
  }
  return fields;
}

// The pids of the workers that serve (running or full) in the attachment's scoreboard.
inline std::set<uint32_t> runningPids(PinnedAttachment &pinned) {
  std::set<uint32_t> pids;
  for (const auto &slot : pinned.scoreboard().snapshotAll()) {
    if ((slot.state == SD_SLOT_RUNNING || slot.state == SD_SLOT_FULL) && slot.pid != 0) {
      pids.insert(slot.pid);
    }
  }
  return pids;
}

// The same for the attachment on `port` (none, and a failure, when it has no state).
inline std::set<uint32_t> runningPidsOf(uint16_t port) {
  auto pinned = PinnedAttachment::open(port, false);
  if (!pinned) {
    ADD_FAILURE() << pinned.error().message();
    return {};
  }
  return runningPids(*pinned);
}

// Whether every one of `pids` has exited.
inline bool allGone(const std::set<uint32_t> &pids) {
  for (uint32_t pid : pids) {
    if (processAlive(pid)) {
      return false;
    }
  }
  return true;
}

} // namespace sockdispatch::test
