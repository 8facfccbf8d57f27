#pragma once

#include "core/result.h"

#include <cstdint>
#include <memory>

struct foreign_load_bpf;
struct bpf_link;

namespace sockdispatch {

// The kernel-side load of workers that do not write their slot (an exec'd COMMAND): the
// tracing program of bpf/foreign_load.bpf.c, attached to sock:inet_sock_set_state and
// sharing the steering program's `slots` map (docs/design/foreign-load.md). The master tags
// each such worker's listener; from then on the kernel keeps that slot's `open`, `accepted`
// and `queued` as our own workers do. RAII: the program and its link live as long as this.
class ForeignLoad {
public:
  // Loads and attaches the program over the `slots` map `slotsMapFd`. Fails (with the
  // reason) where the kernel lacks BTF tracepoints or socket storage for tracing programs.
  static Result<std::unique_ptr<ForeignLoad>> load(int slotsMapFd);
  ~ForeignLoad();
  ForeignLoad(const ForeignLoad &) = delete;
  ForeignLoad &operator=(const ForeignLoad &) = delete;

  // Counts the children of `listenerFd` in `slot` from now on.
  Result<void> tag(int listenerFd, uint32_t slot);

private:
  ForeignLoad() = default;
  foreign_load_bpf *skeleton_ = nullptr;
  bpf_link *link_ = nullptr;
};

} // namespace sockdispatch
