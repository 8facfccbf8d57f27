#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>

namespace sockdispatch {

// The system calls whose failures the server must live through, behind a seam
// (docs/design/faults.md): the system's in production, a fake in the unit tests, which
// injects EMFILE into an accept, ENOSPC into the scoreboard file's allocation, ENOMEM into a
// map update, and moves the clock that paces the fault logs. Each returns what the call
// returns: -1 with errno set on failure.
class SystemCalls {
public:
  virtual ~SystemCalls() = default;
  // accept4(2).
  virtual int accept4(int fd, sockaddr *address, socklen_t *length, int flags) = 0;
  // posix_fallocate(3) (blocks reserved, not just a size), with its error in errno.
  virtual int allocate(int fd, off_t offset, off_t length) = 0;
  // bpf(BPF_MAP_UPDATE_ELEM).
  virtual int updateMapElement(int mapFd, const void *key, const void *value, uint64_t flags) = 0;
  // CLOCK_MONOTONIC.
  virtual std::chrono::steady_clock::time_point now() = 0;
};

// The system's.
SystemCalls &systemCalls();

} // namespace sockdispatch
