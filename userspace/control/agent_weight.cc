#include "control/agent_weight.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <string_view>

namespace sockdispatch {

HostAnswer hostAnswer(const HostLoad &host) {
  if (host.leaving) {
    return {HostState::drain, 0, {}};
  }
  double free = 0;
  bool anyLive = false;
  bool anyFree = false;
  for (const WorkerLoad &worker : host.workers) {
    if (!worker.live) {
      continue;
    }
    anyLive = true;
    if (worker.stuck) {
      continue;
    }
    anyFree = true;
    if (host.capacity == 0) {
      free += 1.0;
    } else {
      uint64_t used = std::min<uint64_t>(worker.load, host.capacity);
      free += 1.0 - static_cast<double>(used) / static_cast<double>(host.capacity);
    }
  }
  if (!anyLive) {
    return {HostState::down, 0, "no live worker"};
  }
  if (!anyFree) {
    return {HostState::up, 0, {}};
  }
  uint32_t expected = std::max<uint32_t>(host.expected, 1);
  auto percent = static_cast<uint32_t>(std::lround(100.0 * free / expected));
  return {HostState::up, std::clamp<uint32_t>(percent, 1, 100), {}};
}

std::string agentLine(const HostAnswer &answer) {
  switch (answer.state) {
  case HostState::up: return fmt::format("up ready {}%\n", answer.weightPercent);
  case HostState::drain: return "drain\n";
  case HostState::down: break;
  }
  return answer.reason.empty() ? std::string("down\n") : fmt::format("down#{}\n", answer.reason);
}

int keepalivedStatus(const HostAnswer &answer) {
  switch (answer.state) {
  case HostState::up: return 2 + static_cast<int>(answer.weightPercent);
  case HostState::drain: return 2;
  case HostState::down: break;
  }
  return 1;
}

HostLoad hostLoadFrom(const sd_config &config, const std::vector<SlotSnapshot> &slots,
                      uint64_t nowNs, const std::function<bool(pid_t)> &stopped) {
  HostLoad host;
  host.leaving = loadRelaxed(config.stopping) != 0 || loadRelaxed(config.leaving) != 0;
  host.capacity = loadRelaxed(config.agent_capacity);
  for (const SlotSnapshot &slot : slots) {
    const bool serving = slot.state == SD_SLOT_RUNNING || slot.state == SD_SLOT_FULL;
    const bool meant = serving || slot.state == SD_SLOT_STARTING || slot.state == SD_SLOT_DEAD;
    if (!meant) {
      continue; // empty, or stopping (a retiring worker of an old generation)
    }
    ++host.expected;
    WorkerLoad worker;
    worker.live = serving && slot.pid != 0 && slot.draining == 0;
    if (worker.live) {
      bool longCall =
          slot.busySince != 0 && nowNs > slot.busySince && nowNs - slot.busySince > kStuckHandlerNs;
      worker.stuck = longCall || stopped(static_cast<pid_t>(slot.pid));
      worker.load = slot.open + slot.queued;
    }
    host.workers.push_back(worker);
  }
  return host;
}

bool processStopped(pid_t pid) {
  std::string path = fmt::format("/proc/{}/stat", pid);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return false;
  }
  std::array<char, 512> buffer{};
  ssize_t got = ::read(fd, buffer.data(), buffer.size() - 1);
  ::close(fd);
  if (got <= 0) {
    return false;
  }
  // "PID (COMM) S ...": the state follows the last ')' (COMM may hold one).
  std::string_view text(buffer.data(), static_cast<size_t>(got));
  size_t close = text.rfind(')');
  if (close == std::string_view::npos || close + 2 >= text.size()) {
    return false;
  }
  char state = text[close + 2];
  return state == 'T' || state == 't';
}

} // namespace sockdispatch
