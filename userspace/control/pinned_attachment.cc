#include "control/pinned_attachment.h"

#include "bpf/pin_dir.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <vector>

namespace sockdispatch {

namespace {

Result<UniqueFd> openPin(const std::string &path, bool writable) {
  struct bpf_obj_get_opts opts {};
  opts.sz = sizeof(opts);
  opts.file_flags = writable ? 0 : BPF_F_RDONLY;
  UniqueFd fd(bpf_obj_get_opts(path.c_str(), &opts));
  if (!fd) {
    return osError("open pin " + path);
  }
  return fd;
}

} // namespace

std::string stateDirFor(uint16_t port) {
  std::string pins = pinDirFor(port);
  if (::access(pins.c_str(), F_OK) == 0) {
    return pins;
  }
  std::string run = runDirFor(port);
  return ::access(run.c_str(), F_OK) == 0 ? run : pins;
}

Result<PinnedAttachment> PinnedAttachment::open(uint16_t port, bool writable) {
  std::string dir = pinDirFor(port);
  PinnedAttachment attachment;
  attachment.writable_ = writable;
  attachment.pinDir_ = dir;
  if (::access(dir.c_str(), F_OK) != 0 && errno == ENOENT) {
    auto board = SharedScoreboard::open(port, writable);
    if (board) {
      attachment.shared_.emplace(std::move(board.value()));
      return attachment;
    }
    if (board.error().code != ENOENT) {
      return board.error();
    }
    // Neither: the pins' ENOENT below names what is missing.
  }
  auto config = openPin(dir + "/" + kPinConfig, writable);
  if (!config) {
    return config.error();
  }
  attachment.configFd_ = std::move(config.value());
  auto slots = openPin(dir + "/" + kPinSlots, writable);
  if (!slots) {
    return slots.error();
  }
  attachment.slotsFd_ = std::move(slots.value());
  auto verdicts = openPin(dir + "/" + kPinVerdicts, false);
  if (!verdicts) {
    return verdicts.error();
  }
  attachment.verdictsFd_ = std::move(verdicts.value());

  if (writable) {
    auto configMap =
        mapShared(attachment.configFd_.get(), sizeof(sd_config), true, dir + "/config");
    if (!configMap) {
      return configMap.error();
    }
    attachment.config_ = std::move(configMap.value());
    auto slotsMap = mapShared(attachment.slotsFd_.get(), sizeof(sd_slot) * SD_MAX_WORKERS, true,
                              dir + "/slots");
    if (!slotsMap) {
      return slotsMap.error();
    }
    attachment.slots_ = std::move(slotsMap.value());
  } else {
    attachment.slotCopy_.resize(SD_MAX_WORKERS);
    if (auto copied = attachment.refresh(); !copied) {
      return copied.error();
    }
  }
  uint32_t abi = loadRelaxed(attachment.config().abi_version);
  if (abi != SD_ABI_VERSION) {
    return logicError("open attachment " + dir, "its map ABI is version " + std::to_string(abi) +
                                                    ", this sockdispatch " + "speaks version " +
                                                    std::to_string(SD_ABI_VERSION));
  }
  return attachment;
}

Result<void> PinnedAttachment::refresh() {
  uint32_t key = 0;
  if (bpf_map_lookup_elem(configFd_.get(), &key, &configCopy_) != 0) {
    return osError("read the config map");
  }
  uint32_t count = std::min<uint32_t>(configCopy_.nr_slots, SD_MAX_WORKERS);
  for (uint32_t slot = 0; slot < count; ++slot) {
    if (bpf_map_lookup_elem(slotsFd_.get(), &slot, &slotCopy_[slot]) != 0) {
      return osError("read slot " + std::to_string(slot));
    }
  }
  return {};
}

Scoreboard PinnedAttachment::scoreboard() {
  if (shared_) {
    return writable_ ? shared_->writer() : shared_->reader();
  }
  if (writable_) {
    return Scoreboard(slots_.as<sd_slot>(), config_.as<sd_config>());
  }
  (void)refresh(); // a failed read leaves the last copy: the pins are gone with the master
  return Scoreboard(slotCopy_.data(), &configCopy_);
}

const sd_config &PinnedAttachment::config() {
  if (shared_) {
    return *shared_->reader().config();
  }
  if (!writable_) {
    (void)refresh(); // on failure, the last copy
  }
  return writable_ ? *config_.as<sd_config>() : configCopy_;
}

Result<std::array<uint64_t, SD_NR_VERDICTS>> PinnedAttachment::verdicts() const {
  if (shared_) {
    // No kernel program: every connection went where the line's policy chose.
    std::array<uint64_t, SD_NR_VERDICTS> totals{};
    for (const SlotSnapshot &slot : shared_->reader().snapshotAll()) {
      totals[SD_VERDICT_SELECTED] += slot.selected;
    }
    return totals;
  }
  int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) {
    return osError(-cpus, "count possible CPUs");
  }
  std::array<uint64_t, SD_NR_VERDICTS> totals{};
  std::vector<uint64_t> perCpu(static_cast<size_t>(cpus));
  for (uint32_t verdict = 0; verdict < SD_NR_VERDICTS; ++verdict) {
    if (bpf_map_lookup_elem(verdictsFd_.get(), &verdict, perCpu.data()) != 0) {
      return osError("read verdict counter " + std::to_string(verdict));
    }
    for (uint64_t value : perCpu) {
      totals[verdict] += value;
    }
  }
  return totals;
}

Result<uint64_t> PinnedAttachment::socketCookie(uint32_t slot) {
  if (shared_) {
    return osError(ENOENT, "read the socket of slot " + std::to_string(slot) +
                               " (line mode has no sockets map)");
  }
  if (!socketsFd_) {
    auto sockets = openPin(pinDir_ + "/" + kPinSockets, false);
    if (!sockets) {
      return sockets.error();
    }
    socketsFd_ = std::move(sockets.value());
  }
  // From user space a REUSEPORT_SOCKARRAY lookup gives the socket's cookie (u64).
  uint64_t cookie = 0;
  if (bpf_map_lookup_elem(socketsFd_.get(), &slot, &cookie) != 0) {
    return osError("read the socket of slot " + std::to_string(slot));
  }
  return cookie;
}

std::optional<bool> PinnedAttachment::heldBy(uint32_t pid) const {
  if (shared_) {
    if (!processAlive(pid)) {
      return false;
    }
    auto inUse = scoreboardInUse(shared_->path());
    return inUse ? std::optional<bool>(inUse.value()) : std::nullopt;
  }
  return processHoldsMap(pid, configMapId());
}

uint32_t PinnedAttachment::configMapId() const {
  if (shared_) {
    return 0;
  }
  bpf_map_info info{};
  uint32_t length = sizeof(info);
  if (bpf_obj_get_info_by_fd(configFd_.get(), &info, &length) != 0) {
    return 0;
  }
  return info.id;
}

Result<LockedAttachment> openLocked(uint16_t port, bool exclusive, bool writable,
                                    std::chrono::milliseconds timeout) {
  auto lock = DirLock::acquire(stateDirFor(port), exclusive, timeout);
  if (!lock) {
    return lock.error();
  }
  auto pins = PinnedAttachment::open(port, writable);
  if (!pins) {
    return pins.error();
  }
  return LockedAttachment{std::move(lock.value()), std::move(pins.value())};
}

bool processAlive(uint32_t pid) {
  if (pid == 0 || (::kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM)) {
    return false;
  }
  // /proc/PID/stat: "pid (comm) S ...", where comm may hold spaces and parentheses.
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) {
    return true; // no /proc: kill(0) is all we know
  }
  auto close = line.rfind(')');
  if (close == std::string::npos || close + 2 >= line.size()) {
    return true;
  }
  char state = line[close + 2];
  return state != 'Z' && state != 'X';
}

std::optional<bool> processHoldsMap(uint32_t pid, uint32_t mapId) {
  std::error_code error;
  std::filesystem::directory_iterator entries("/proc/" + std::to_string(pid) + "/fdinfo", error);
  if (error) {
    return error == std::errc::no_such_file_or_directory ? std::optional<bool>(false)
                                                         : std::nullopt;
  }
  const std::string wanted = "map_id:\t" + std::to_string(mapId);
  for (; entries != std::filesystem::directory_iterator(); entries.increment(error)) {
    std::ifstream info(entries->path());
    std::string line;
    while (std::getline(info, line)) {
      if (line == wanted) {
        return true;
      }
    }
  }
  return false;
}

} // namespace sockdispatch
