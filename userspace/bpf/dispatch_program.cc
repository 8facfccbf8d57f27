#include "bpf/dispatch_program.h"

#include "bpf/pin_dir.h"
#include "core/unique_fd.h"
#include "dispatch.skel.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <cstdarg>
#include <cstdio>
#include <optional>
#include <vector>

namespace sockdispatch {

namespace {

bool libbpfWarningsQuiet = false;

// The whole message: a refused load's verifier log comes as one message of many kilobytes, and
// the reason is at its end.
int libbpfPrint(enum libbpf_print_level level, const char *format, va_list args) {
  va_list measure;
  va_copy(measure, args);
  int length = std::vsnprintf(nullptr, 0, format, measure);
  va_end(measure);
  if (length <= 0) {
    return 0;
  }
  std::string text(static_cast<size_t>(length) + 1, '\0');
  std::vsnprintf(text.data(), text.size(), format, args);
  text.resize(static_cast<size_t>(length));
  while (!text.empty() && text.back() == '\n') {
    text.pop_back();
  }
  switch (level) {
  case LIBBPF_WARN:
    if (libbpfWarningsQuiet) {
      spdlog::debug("libbpf: {}", text);
    } else {
      spdlog::warn("libbpf: {}", text);
    }
    break;
  default: spdlog::debug("libbpf: {}", text); break;
  }
  return length;
}

Result<void> pinMap(bpf_map *map, const std::string &path) {
  int err = bpf_map__pin(map, path.c_str());
  if (err != 0) {
    return osError(-err, "pin map " + path);
  }
  return {};
}

} // namespace

void bridgeLibbpfLog() {
  libbpf_set_print(libbpfPrint);
}

void quietLibbpfWarnings(bool quiet) {
  libbpfWarningsQuiet = quiet;
}

Result<std::unique_ptr<DispatchProgram>> DispatchProgram::load(SystemCalls &calls) {
  std::unique_ptr<DispatchProgram> program(new DispatchProgram(calls));
  program->skeleton_ = dispatch_bpf__open();
  if (program->skeleton_ == nullptr) {
    return osError("open the dispatch BPF object");
  }
  int err = dispatch_bpf__load(program->skeleton_);
  if (err != 0) {
    return osError(-err, "load the dispatch BPF program");
  }
  auto slots = mapShared(bpf_map__fd(program->skeleton_->maps.slots),
                         sizeof(sd_slot) * SD_MAX_WORKERS, true, "the slots map");
  if (!slots) {
    return slots.error();
  }
  program->slots_ = std::move(slots.value());
  auto config = mapShared(bpf_map__fd(program->skeleton_->maps.config), sizeof(sd_config), true,
                          "the config map");
  if (!config) {
    return config.error();
  }
  program->config_ = std::move(config.value());
  return program;
}

DispatchProgram::~DispatchProgram() {
  slots_.reset();
  config_.reset();
  dispatch_bpf__destroy(skeleton_);
}

Result<void> DispatchProgram::attachTo(int listenerFd) {
  int progFd = bpf_program__fd(skeleton_->progs.sd_dispatch);
  if (::setsockopt(listenerFd, SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &progFd, sizeof(progFd)) !=
      0) {
    return osError("attach the dispatch program to the reuseport group");
  }
  return {};
}

Result<void> DispatchProgram::setSocket(uint32_t slot, int listenerFd) {
  uint64_t value = static_cast<uint64_t>(listenerFd);
  if (calls_.updateMapElement(bpf_map__fd(skeleton_->maps.sockets), &slot, &value, BPF_ANY) != 0) {
    return osError("put the listener of slot " + std::to_string(slot) + " into the sockarray");
  }
  return {};
}

Result<void> DispatchProgram::pinInto(const std::string &dir) {
  struct Pin {
    bpf_map *map;
    const char *name;
  };
  const Pin pins[] = {{skeleton_->maps.slots, kPinSlots},
                      {skeleton_->maps.config, kPinConfig},
                      {skeleton_->maps.verdicts, kPinVerdicts},
                      {skeleton_->maps.sockets, kPinSockets}};
  for (const auto &pin : pins) {
    if (auto pinned = pinMap(pin.map, dir + "/" + pin.name); !pinned) {
      return pinned;
    }
  }
  std::string progPath = dir + "/" + kPinProgram;
  int err = bpf_program__pin(skeleton_->progs.sd_dispatch, progPath.c_str());
  if (err != 0) {
    return osError(-err, "pin program " + progPath);
  }
  return {};
}

int DispatchProgram::slotsMapFd() const {
  return bpf_map__fd(skeleton_->maps.slots);
}

Scoreboard DispatchProgram::scoreboard() const {
  return Scoreboard(slots_.as<sd_slot>(), config_.as<sd_config>());
}

uint32_t DispatchProgram::programId() const {
  bpf_prog_info info{};
  uint32_t length = sizeof(info);
  if (bpf_obj_get_info_by_fd(bpf_program__fd(skeleton_->progs.sd_dispatch), &info, &length) != 0) {
    return 0;
  }
  return info.id;
}

Result<void> detachReuseportProgram(int memberFd) {
  int unused = 0;
  if (::setsockopt(memberFd, SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, &unused, sizeof(unused)) != 0) {
    return osError("detach the program from the reuseport group");
  }
  return {};
}

namespace {

std::optional<bpf_prog_info> programInfo(uint32_t id) {
  UniqueFd fd(bpf_prog_get_fd_by_id(id));
  if (!fd) {
    return std::nullopt;
  }
  bpf_prog_info info{};
  uint32_t length = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd.get(), &info, &length) != 0) {
    return std::nullopt;
  }
  return info;
}

} // namespace

std::string describeBpfProgram(uint32_t id) {
  auto info = programInfo(id);
  if (!info) {
    return "";
  }
  const char *type = libbpf_bpf_prog_type_str(static_cast<bpf_prog_type>(info->type));
  return fmt::format("{} (type {})", info->name, type != nullptr ? type : "unknown");
}

Result<void> emptySockarraysOf(uint32_t programId) {
  UniqueFd program(bpf_prog_get_fd_by_id(programId));
  if (!program) {
    return osError("open BPF program " + std::to_string(programId));
  }
  bpf_prog_info info{};
  uint32_t length = sizeof(info);
  if (bpf_obj_get_info_by_fd(program.get(), &info, &length) != 0) {
    return osError("read BPF program " + std::to_string(programId));
  }
  std::vector<uint32_t> mapIds(info.nr_map_ids);
  info = bpf_prog_info{};
  info.nr_map_ids = static_cast<uint32_t>(mapIds.size());
  info.map_ids = reinterpret_cast<uint64_t>(mapIds.data());
  length = sizeof(info);
  if (bpf_obj_get_info_by_fd(program.get(), &info, &length) != 0) {
    return osError("read the maps of BPF program " + std::to_string(programId));
  }
  for (uint32_t mapId : mapIds) {
    UniqueFd map(bpf_map_get_fd_by_id(mapId));
    bpf_map_info mapInfo{};
    uint32_t mapLength = sizeof(mapInfo);
    if (!map || bpf_obj_get_info_by_fd(map.get(), &mapInfo, &mapLength) != 0 ||
        mapInfo.type != BPF_MAP_TYPE_REUSEPORT_SOCKARRAY) {
      continue;
    }
    for (uint32_t key = 0; key < mapInfo.max_entries; ++key) {
      if (bpf_map_delete_elem(map.get(), &key) != 0 && errno != ENOENT) {
        return osError("empty the sockarray of BPF program " + std::to_string(programId));
      }
    }
  }
  return {};
}

std::string bpfProgramName(uint32_t id) {
  auto info = programInfo(id);
  return info ? std::string(info->name) : std::string();
}

} // namespace sockdispatch
