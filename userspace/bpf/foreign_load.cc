#include "bpf/foreign_load.h"

#include "foreign_load.skel.h"
#include "sockdispatch/abi.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

namespace sockdispatch {

Result<std::unique_ptr<ForeignLoad>> ForeignLoad::load(int slotsMapFd) {
  std::unique_ptr<ForeignLoad> load(new ForeignLoad());
  load->skeleton_ = foreign_load_bpf__open();
  if (load->skeleton_ == nullptr) {
    return osError("open the foreign-load BPF object");
  }
  if (int err = bpf_map__reuse_fd(load->skeleton_->maps.slots, slotsMapFd); err != 0) {
    return osError(-err, "share the slots map with the foreign-load program");
  }
  if (int err = foreign_load_bpf__load(load->skeleton_); err != 0) {
    return osError(-err, "load the foreign-load BPF program (BTF tracepoints, Linux 5.11)");
  }
  load->link_ = bpf_program__attach(load->skeleton_->progs.count_children);
  if (load->link_ == nullptr) {
    return osError("attach the foreign-load program to sock:inet_sock_set_state");
  }
  return load;
}

ForeignLoad::~ForeignLoad() {
  if (link_ != nullptr) {
    bpf_link__destroy(link_);
  }
  if (skeleton_ != nullptr) {
    foreign_load_bpf__destroy(skeleton_);
  }
}

Result<void> ForeignLoad::tag(int listenerFd, uint32_t slot) {
  sd_sock_tag tag{};
  tag.slot = slot;
  int key = listenerFd;
  if (bpf_map_update_elem(bpf_map__fd(skeleton_->maps.ktags), &key, &tag, BPF_ANY) != 0) {
    return osError("tag the listener of slot " + std::to_string(slot));
  }
  return {};
}

} // namespace sockdispatch
