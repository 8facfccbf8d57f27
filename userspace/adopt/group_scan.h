#pragma once

#include "core/address.h"
#include "core/result.h"

#include <cstdint>
#include <memory>
#include <vector>

struct group_scan_bpf;
struct bpf_link;

namespace sockdispatch {

// One TCP listener on the scanned port, as the kernel holds it.
struct ListenerRecord {
  uint64_t inode = 0;       // socket:[inode] in the holders' /proc/PID/fd
  SocketAddress address;    // its local address and port
  bool inGroup = false;     // it is in a SO_REUSEPORT group
  uint32_t programId = 0;   // the reuseport program attached to the group, 0 if none
  uint32_t acceptQueue = 0; // connections waiting to be accepted
  uint32_t backlog = 0;     // its listen() backlog
  uint32_t uid = 0;         // its owner
  int boundDevice = 0;      // SO_BINDTODEVICE, 0 if none
};

// The listeners of one port in this network namespace and their groups' programs, read by the
// group-scan iterator (bpf/group_scan.bpf.c; docs/design/adopt.md). Loaded once per port, each
// scan() is one pass of the iterator. Needs CAP_BPF and the kernel's BTF (Linux 5.9).
class GroupScan {
public:
  static Result<std::unique_ptr<GroupScan>> load(uint16_t port);
  ~GroupScan();
  GroupScan(const GroupScan &) = delete;
  GroupScan &operator=(const GroupScan &) = delete;

  [[nodiscard]] Result<std::vector<ListenerRecord>> scan() const;

private:
  GroupScan() = default;
  group_scan_bpf *skeleton_ = nullptr;
  bpf_link *link_ = nullptr;
};

} // namespace sockdispatch
