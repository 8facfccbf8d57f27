#include "pinned_attachment.h"

#include "pin_dir.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <signal.h>

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

Result<PinnedAttachment> PinnedAttachment::open(uint16_t port, bool writable) {
  std::string dir = pinDirFor(port);
  PinnedAttachment attachment;
  auto config = openPin(dir + "/" + kPinConfig, writable);
  if (!config) {
    return config.error();
  }
  attachment.configFd_ = std::move(config.value());
  auto configMap =
      mapShared(attachment.configFd_.get(), sizeof(sd_config), writable, dir + "/config");
  if (!configMap) {
    return configMap.error();
  }
  attachment.config_ = std::move(configMap.value());
  uint32_t abi = loadRelaxed(attachment.config().abi_version);
  if (abi != SD_ABI_VERSION) {
    return logicError("open attachment " + dir,
                      "its map ABI is version " + std::to_string(abi) + ", this sockdispatch " +
                          "speaks version " + std::to_string(SD_ABI_VERSION));
  }
  auto slots = openPin(dir + "/" + kPinSlots, writable);
  if (!slots) {
    return slots.error();
  }
  attachment.slotsFd_ = std::move(slots.value());
  auto slotsMap = mapShared(attachment.slotsFd_.get(), sizeof(sd_slot) * SD_MAX_WORKERS,
                            writable, dir + "/slots");
  if (!slotsMap) {
    return slotsMap.error();
  }
  attachment.slots_ = std::move(slotsMap.value());
  auto verdicts = openPin(dir + "/" + kPinVerdicts, false);
  if (!verdicts) {
    return verdicts.error();
  }
  attachment.verdictsFd_ = std::move(verdicts.value());
  return attachment;
}

Scoreboard PinnedAttachment::scoreboard() const {
  return Scoreboard(slots_.as<sd_slot>(), config_.as<sd_config>());
}

Result<std::array<uint64_t, SD_NR_VERDICTS>> PinnedAttachment::verdicts() const {
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

bool processAlive(uint32_t pid) {
  return pid != 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM);
}

} // namespace sockdispatch
