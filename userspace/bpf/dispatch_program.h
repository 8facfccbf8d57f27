#pragma once

#include "bpf/scoreboard.h"
#include "core/mapped_region.h"
#include "core/result.h"
#include "core/system_calls.h"

#include <cstdint>
#include <memory>
#include <string>

struct dispatch_bpf;

namespace sockdispatch {

// The loaded kernel program and its maps (RAII over the libbpf skeleton). The slot and
// config arrays are mmapped here, before any fork, so every worker shares the mapping.
class DispatchProgram {
public:
  // Opens and loads the skeleton. Fails (EPERM without CAP_BPF, EINVAL on an old kernel or
  // a verifier refusal) with the reason in the Error. `calls`: its map updates.
  static Result<std::unique_ptr<DispatchProgram>> load(SystemCalls &calls = systemCalls());
  ~DispatchProgram();
  DispatchProgram(const DispatchProgram &) = delete;
  DispatchProgram &operator=(const DispatchProgram &) = delete;

  // Attaches the program to the reuseport group of `listenerFd` (SO_ATTACH_REUSEPORT_EBPF).
  Result<void> attachTo(int listenerFd);
  // Puts a listening socket into the sockarray at `slot`. Also after start-up (a reload's or
  // the pool's new slot): a failure (ENOMEM) leaves the sockarray as it was.
  Result<void> setSocket(uint32_t slot, int listenerFd);
  // Pins every map and the program into `dir`, which must exist and be empty.
  Result<void> pinInto(const std::string &dir);

  [[nodiscard]] Scoreboard scoreboard() const;
  // The `slots` map, for a second program that shares it (ForeignLoad).
  [[nodiscard]] int slotsMapFd() const;
  [[nodiscard]] uint32_t programId() const;

private:
  explicit DispatchProgram(SystemCalls &calls) : calls_(calls) {}
  SystemCalls &calls_;
  dispatch_bpf *skeleton_ = nullptr;
  MappedRegion slots_;
  MappedRegion config_;
};

// Removes whatever program steers the reuseport group of `memberFd` (SO_DETACH_REUSEPORT_BPF):
// the group falls back to the kernel's hash. ENOENT when none was attached.
Result<void> detachReuseportProgram(int memberFd);

// "NAME (type TYPE)" of a loaded BPF program, or "" when it cannot be read.
std::string describeBpfProgram(uint32_t id);
// Takes every socket out of the REUSEPORT_SOCKARRAY maps program `programId` uses: a socket
// is in one sockarray at most, so a program being replaced must let go of the group's
// listeners before the new one can hold them.
Result<void> emptySockarraysOf(uint32_t programId);
// The kernel's name of a loaded BPF program, or "" when it cannot be read.
std::string bpfProgramName(uint32_t id);
// What the kernel calls the steering program (its function name, truncated to 15 bytes).
inline constexpr const char *kDispatchProgramName = "sd_dispatch";

// libbpf's own log, bridged into spdlog (debug level for libbpf's info/debug lines).
void bridgeLibbpfLog();
// Whether libbpf's warnings are logged at debug level only: while a load is only tried (auto
// mode falls back to the line with one warning of its own that says why).
void quietLibbpfWarnings(bool quiet);

} // namespace sockdispatch
