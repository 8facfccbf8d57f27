#pragma once

#include "core/result.h"

#include <sys/mman.h>

#include <cstddef>
#include <utility>

namespace sockdispatch {

// Owns one mmap()ed region; unmaps it on destruction.
class MappedRegion {
public:
  MappedRegion() = default;
  MappedRegion(void *addr, size_t length) : addr_(addr), length_(length) {}
  ~MappedRegion() { reset(); }
  MappedRegion(const MappedRegion &) = delete;
  MappedRegion &operator=(const MappedRegion &) = delete;
  MappedRegion(MappedRegion &&other) noexcept
      : addr_(std::exchange(other.addr_, nullptr)), length_(std::exchange(other.length_, 0)) {}
  MappedRegion &operator=(MappedRegion &&other) noexcept {
    if (this != &other) {
      reset();
      addr_ = std::exchange(other.addr_, nullptr);
      length_ = std::exchange(other.length_, 0);
    }
    return *this;
  }

  [[nodiscard]] void *get() const { return addr_; }
  template <typename T> [[nodiscard]] T *as() const { return static_cast<T *>(addr_); }
  [[nodiscard]] size_t length() const { return length_; }

  void reset() {
    if (addr_ != nullptr) {
      ::munmap(addr_, length_);
    }
    addr_ = nullptr;
    length_ = 0;
  }

private:
  void *addr_ = nullptr;
  size_t length_ = 0;
};

// Maps `bytes` (rounded up to whole pages) of a shared fd: a BPF_F_MMAPABLE array map, or a
// file. `what` names it for the error message.
Result<MappedRegion> mapShared(int fd, size_t bytes, bool writable, const std::string &what);

} // namespace sockdispatch
