#pragma once

#include "core/system_calls.h"

#include <bpf/bpf.h>
#include <fcntl.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

namespace sockdispatch::test {

// SystemCalls for unit tests: each call does the real thing unless a fault is queued for it,
// in which case it fails with that errno (one queued fault, one failed call; a queued 0 lets
// one call through, to fail a later one). The clock is the
// test's: it moves only when the test says so. Every accept4 is timed (steady clock), so a
// test can tell a pause from a spin.
class FakeSystemCalls final : public SystemCalls {
public:
  int accept4(int fd, sockaddr *address, socklen_t *length, int flags) override {
    acceptTimes.push_back(std::chrono::steady_clock::now());
    if (failed(acceptFaults)) {
      return -1;
    }
    return ::accept4(fd, address, length, flags);
  }
  int allocate(int fd, off_t offset, off_t length) override {
    ++allocations;
    if (failed(allocateFaults)) {
      return -1;
    }
    int error = ::posix_fallocate(fd, offset, length);
    errno = error;
    return error == 0 ? 0 : -1;
  }
  int updateMapElement(int mapFd, const void *key, const void *value, uint64_t flags) override {
    ++mapUpdates;
    if (failed(mapUpdateFaults)) {
      return -1;
    }
    return bpf_map_update_elem(mapFd, key, value, flags);
  }
  std::chrono::steady_clock::time_point now() override { return clock; }

  std::deque<int> acceptFaults;
  std::deque<int> allocateFaults;
  std::deque<int> mapUpdateFaults;
  std::vector<std::chrono::steady_clock::time_point> acceptTimes;
  int allocations = 0;
  int mapUpdates = 0;
  std::chrono::steady_clock::time_point clock{std::chrono::hours(1)};

private:
  static bool failed(std::deque<int> &faults) {
    if (faults.empty()) {
      return false;
    }
    int code = faults.front();
    faults.pop_front();
    errno = code;
    return code != 0;
  }
};

// A test case named by its errno ("EMFILE"), for INSTANTIATE_TEST_SUITE_P over errnos.
inline std::string errnoName(const testing::TestParamInfo<int> &param) {
  const char *name = ::strerrorname_np(param.param);
  return name != nullptr ? name : "errno" + std::to_string(param.param);
}

} // namespace sockdispatch::test
