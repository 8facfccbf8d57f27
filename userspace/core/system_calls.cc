#include "core/system_calls.h"

#include <bpf/bpf.h>
#include <fcntl.h>

#include <cerrno>

namespace sockdispatch {

namespace {

class SystemCallsOfTheSystem final : public SystemCalls {
public:
  int accept4(int fd, sockaddr *address, socklen_t *length, int flags) override {
    return ::accept4(fd, address, length, flags);
  }
  int allocate(int fd, off_t offset, off_t length) override {
    int error = ::posix_fallocate(fd, offset, length);
    if (error != 0) {
      errno = error;
      return -1;
    }
    return 0;
  }
  int updateMapElement(int mapFd, const void *key, const void *value, uint64_t flags) override {
    return bpf_map_update_elem(mapFd, key, value, flags);
  }
  std::chrono::steady_clock::time_point now() override { return std::chrono::steady_clock::now(); }
};

} // namespace

SystemCalls &systemCalls() {
  static SystemCallsOfTheSystem calls;
  return calls;
}

} // namespace sockdispatch
