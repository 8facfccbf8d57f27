#pragma once

#include "bpf/dispatch_program.h"
#include "control/orphans.h"
#include "core/result.h"

#include <cstdint>
#include <memory>
#include <string>

namespace sockdispatch {

// The pinned state of an eBPF attachment, from its claim to its removal: shared by `attach`
// (our workers) and `adopt` (a running service's listeners).

// Mounts bpffs if needed and loads the steering program. The error names the cause and what
// it means (privileges, kernel version, a read-only bpffs: EROFS, before anything is loaded).
Result<std::unique_ptr<DispatchProgram>> loadDispatchProgram();

// Refuses a port some live sockdispatch holds (EADDRINUSE: a usage error for the caller) and
// removes the pins a dead one left behind. State that cannot be read is never removed. The
// refusals' `detail` is a whole sentence for the operator. With `orphans`, the workers a dead
// master left serving the port are found first (findOrphans); when there are any, they are
// returned there and the pins are left for the caller, which takes them over
// (docs/design/takeover.md) or refuses.
// Hold the pin base directory's lock across the claim and publishPins.
Result<void> claimPort(uint16_t port, Orphans *orphans = nullptr);

// Pins the program's maps into pinDirFor(port): into a private directory first, restricted to
// the monitoring group, then renamed into place, so readers never see half. Returns the
// directory.
Result<std::string> publishPins(DispatchProgram &program, uint16_t port);

// Removes the attachment's pins when it ends, however it ends.
class PinGuard {
public:
  explicit PinGuard(std::string dir) : dir_(std::move(dir)) {}
  ~PinGuard();
  PinGuard(const PinGuard &) = delete;
  PinGuard &operator=(const PinGuard &) = delete;

private:
  std::string dir_;
};

} // namespace sockdispatch
