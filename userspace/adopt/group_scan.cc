#include "adopt/group_scan.h"

#include "core/unique_fd.h"
#include "group_scan.skel.h"
#include "sockdispatch/group_scan.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cstring>

namespace sockdispatch {

namespace {

SocketAddress addressOf(const sd_listener_record &record) {
  SocketAddress address;
  if (record.family == AF_INET) {
    auto *in = reinterpret_cast<sockaddr_in *>(&address.storage);
    in->sin_family = AF_INET;
    std::memcpy(&in->sin_addr, record.address, sizeof(in->sin_addr));
    address.length = sizeof(sockaddr_in);
  } else {
    auto *in6 = reinterpret_cast<sockaddr_in6 *>(&address.storage);
    in6->sin6_family = AF_INET6;
    std::memcpy(&in6->sin6_addr, record.address, sizeof(in6->sin6_addr));
    address.length = sizeof(sockaddr_in6);
  }
  address.setPort(record.port);
  return address;
}

} // namespace

Result<std::unique_ptr<GroupScan>> GroupScan::load(uint16_t port) {
  std::unique_ptr<GroupScan> scan(new GroupScan());
  scan->skeleton_ = group_scan_bpf__open();
  if (scan->skeleton_ == nullptr) {
    return osError("open the group-scan BPF object");
  }
  scan->skeleton_->rodata->port = port;
  if (int err = group_scan_bpf__load(scan->skeleton_); err != 0) {
    return osError(-err, "load the group-scan BPF iterator (iter/tcp with BTF, Linux 5.9)");
  }
  scan->link_ = bpf_program__attach_iter(scan->skeleton_->progs.scan_listeners, nullptr);
  if (scan->link_ == nullptr) {
    return osError("attach the group-scan BPF iterator");
  }
  return scan;
}

GroupScan::~GroupScan() {
  if (link_ != nullptr) {
    bpf_link__destroy(link_);
  }
  if (skeleton_ != nullptr) {
    group_scan_bpf__destroy(skeleton_);
  }
}

Result<std::vector<ListenerRecord>> GroupScan::scan() const {
  UniqueFd iterator(bpf_iter_create(bpf_link__fd(link_)));
  if (!iterator) {
    return osError("start the group-scan iterator");
  }
  std::vector<ListenerRecord> listeners;
  sd_listener_record record{};
  // Each read returns whole records: the program writes them one at a time.
  for (;;) {
    ssize_t got = ::read(iterator.get(), &record, sizeof(record));
    if (got == 0) {
      break;
    }
    if (got < 0) {
      if (errno == EINTR) {
        continue;
      }
      return osError("read the group-scan iterator");
    }
    if (static_cast<size_t>(got) != sizeof(record)) {
      return logicError("read the group-scan iterator", "a short record");
    }
    ListenerRecord out;
    out.inode = record.inode;
    out.address = addressOf(record);
    out.inGroup = record.in_group != 0;
    out.programId = record.program_id;
    out.acceptQueue = record.accept_queue;
    out.backlog = record.backlog;
    out.uid = record.uid;
    out.boundDevice = record.bound_dev_if;
    listeners.push_back(out);
  }
  return listeners;
}

} // namespace sockdispatch
