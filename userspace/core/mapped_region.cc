#include "core/mapped_region.h"

#include <unistd.h>

namespace sockdispatch {

Result<MappedRegion> mapShared(int fd, size_t bytes, bool writable, const std::string &what) {
  auto page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  size_t length = (bytes + page - 1) / page * page;
  int protection = PROT_READ | (writable ? PROT_WRITE : 0);
  void *addr = ::mmap(nullptr, length, protection, MAP_SHARED, fd, 0);
  if (addr == MAP_FAILED) {
    return osError("map " + what);
  }
  return MappedRegion(addr, length);
}

} // namespace sockdispatch
