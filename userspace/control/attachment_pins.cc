#include "control/attachment_pins.h"

#include "bpf/pin_dir.h"
#include "control/pinned_attachment.h"
#include "core/unique_fd.h"
#include "dispatch/listener.h"
#include "sockdispatch/abi.h"

#include <bpf/bpf.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <vector>

namespace sockdispatch {

namespace {

std::string bpfLoadHint(int code) {
  switch (code) {
  case EPERM: return " (loading BPF needs root, or CAP_BPF and CAP_PERFMON)";
  case EACCES:
    return " (the verifier refused it; Linux 6.1 needs CAP_PERFMON beside CAP_BPF; -v shows "
           "the verifier's log)";
  case EINVAL:
  case ENOTSUP:
    return " (the kernel lacks sk_reuseport/migrate programs or the verifier refused; "
           "Linux 5.14 or newer is needed)";
  default: return "";
  }
}

// A bpffs mounted read-only refuses every pin (EROFS): say what to do about it.
Error explainPinFailure(Error error) {
  if (error.code == EROFS) {
    error.detail = std::string(std::strerror(EROFS)) + " (the bpffs that holds " + pinStoreDir() +
                   " must be mounted read-write to pin an attachment)";
  }
  return error;
}

// The pins are published last, once the program steers the port: a read-only bpffs is found
// out before the load instead, so that --mode auto serves in line mode rather than fail then.
Result<void> checkPinStoreWritable() {
  struct statvfs fs {};
  if (::statvfs(pinStoreDir().c_str(), &fs) != 0) {
    return explainPinFailure(osError("inspect " + pinStoreDir()));
  }
  if ((fs.f_flag & ST_RDONLY) != 0) {
    return explainPinFailure(osError(EROFS, "pin an attachment into " + pinStoreDir()));
  }
  return {};
}

// The master pid in the pinned config record of `dir`, read whatever map ABI version wrote
// it: every version keeps abi_version and master_pid at the head of the record
// (tests/unit/bpf/abi_test.cc).
Result<uint32_t> pinnedMasterPid(const std::string &dir) {
  std::string path = dir + "/" + kPinConfig;
  struct bpf_obj_get_opts opts {};
  opts.sz = sizeof(opts);
  opts.file_flags = BPF_F_RDONLY;
  UniqueFd map(bpf_obj_get_opts(path.c_str(), &opts));
  if (!map) {
    return osError("open pin " + path);
  }
  bpf_map_info info{};
  uint32_t length = sizeof(info);
  if (bpf_obj_get_info_by_fd(map.get(), &info, &length) != 0) {
    return osError("read the map info of " + path);
  }
  constexpr size_t kPidEnd = offsetof(sd_config, master_pid) + sizeof(uint32_t);
  if (info.value_size < kPidEnd) {
    return logicError("read " + path, "its record is too short to be a config");
  }
  std::vector<unsigned char> value(info.value_size);
  uint32_t key = 0;
  if (bpf_map_lookup_elem(map.get(), &key, value.data()) != 0) {
    return osError("read " + path);
  }
  uint32_t pid = 0;
  std::memcpy(&pid, value.data() + offsetof(sd_config, master_pid), sizeof(pid));
  return pid;
}

// State this build cannot open (another map ABI version wrote it) that nobody serves any
// more: its master is gone and no socket listens on the port (a dead master's workers of
// another version could not be taken over anyway, so they keep it).
bool staleOfAnotherVersion(const std::string &dir, uint16_t port) {
  auto owner = pinnedMasterPid(dir);
  return owner && !processAlive(owner.value()) && !portHasListener(port);
}

// A line attachment's state is its scoreboard file, which the next line attachment replaces
// when its master is gone (SharedScoreboard::create refuses it while the master lives),
// unless workers it left still serve: those are returned.
Result<void> findLineOrphans(uint16_t port, Orphans &orphans) {
  auto existing = PinnedAttachment::open(port, false);
  if (!existing || !existing->lineMode() || processAlive(existing->config().master_pid)) {
    return {};
  }
  auto found = findOrphans(existing.value(), port);
  if (!found) {
    return found.error();
  }
  if (!found->workers.empty()) {
    orphans = std::move(found.value());
  }
  return {};
}

} // namespace

Result<std::unique_ptr<DispatchProgram>> loadDispatchProgram() {
  if (auto mounted = ensureBpffs(); !mounted) {
    return explainPinFailure(mounted.error());
  }
  if (auto writable = checkPinStoreWritable(); !writable) {
    return writable.error();
  }
  auto program = DispatchProgram::load();
  if (!program) {
    Error error = program.error();
    error.detail = std::string(std::strerror(error.code)) + bpfLoadHint(error.code);
    return error;
  }
  return std::move(program.value());
}

Result<void> claimPort(uint16_t port, Orphans *orphans) {
  std::string dir = pinDirFor(port);
  if (::access(dir.c_str(), F_OK) != 0) {
    return orphans != nullptr ? findLineOrphans(port, *orphans) : Result<void>{};
  }
  auto existing = PinnedAttachment::open(port, false);
  if (!existing && staleOfAnotherVersion(dir, port)) {
    spdlog::warn("removing stale state of port {} left by a master that is gone ({})", port,
                 existing.error().message());
    return removePinDir(dir);
  }
  if (!existing) {
    return logicError("claim port " + std::to_string(port),
                      "cannot read the state of port " + std::to_string(port) + " in " + dir +
                          " (" + existing.error().message() +
                          "); remove that directory if no sockdispatch serves the port");
  }
  uint32_t owner = loadRelaxed(existing->config().master_pid);
  if (processAlive(owner)) {
    Error error = logicError(
        "claim port " + std::to_string(port),
        "port " + std::to_string(port) + " is already attached by sockdispatch (master pid " +
            std::to_string(owner) + "); stop it first (kill -TERM " + std::to_string(owner) + ")");
    error.code = EADDRINUSE;
    return error;
  }
  if (orphans != nullptr) {
    auto found = findOrphans(existing.value(), port);
    if (!found) {
      return found.error();
    }
    if (!found->workers.empty()) {
      *orphans = std::move(found.value());
      return {}; // the caller takes them over, and then replaces the pins
    }
  }
  spdlog::warn("removing stale state of port {} left by pid {}", port, owner);
  return removePinDir(dir);
}

namespace {

Result<std::string> pinAndRename(DispatchProgram &program, uint16_t port) {
  std::string dir = pinStoreDir() + "/" + std::to_string(port);
  // bpffs refuses names with a dot; attachments are the all-digit entries.
  std::string staging = pinStoreDir() + "/staging-" + std::to_string(::getpid());
  (void)removePinDir(staging);
  if (::mkdir(staging.c_str(), 0700) != 0) {
    return osError("create directory " + staging);
  }
  if (auto pinned = program.pinInto(staging); !pinned) {
    (void)removePinDir(staging);
    return pinned.error();
  }
  // Readable by the monitoring group (status without root), writable by root only.
  if (auto restricted = restrictPinDir(staging); !restricted) {
    (void)removePinDir(staging);
    return restricted.error();
  }
  if (::rename(staging.c_str(), dir.c_str()) != 0) {
    Error error = osError("move " + staging + " to " + dir);
    (void)removePinDir(staging);
    return error;
  }
  // In a named network namespace, the link every later command finds it by.
  auto linked = linkPinDir(dir, port);
  if (!linked) {
    (void)removePinDir(dir);
  }
  return linked;
}

} // namespace

Result<std::string> publishPins(DispatchProgram &program, uint16_t port) {
  auto published = pinAndRename(program, port);
  if (!published) {
    return explainPinFailure(published.error());
  }
  return published;
}

PinGuard::~PinGuard() {
  if (auto removed = removePinDir(dir_); !removed) {
    spdlog::error("{}", removed.error().message());
  }
}

} // namespace sockdispatch
