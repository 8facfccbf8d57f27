#include "support/open_loop_load.h"

#include <algorithm>

namespace sockdispatch::test {

OpenLoopLoad::OpenLoopLoad(uint16_t port, int perSecond, std::chrono::seconds limit, int senders)
    : port_(port), interval_(std::chrono::nanoseconds(1'000'000'000 / std::max(perSecond, 1))),
      start_(std::chrono::steady_clock::now()), deadline_(start_ + limit) {
  for (int i = 0; i < senders; ++i) {
    threads_.emplace_back([this] { run(); });
  }
}

OpenLoopLoad::~OpenLoopLoad() {
  stop();
}

bool OpenLoopLoad::waitFor(uint64_t more, std::chrono::milliseconds timeout) const {
  return waitForMore(completed_, more, timeout);
}

LoadTally OpenLoopLoad::stop() {
  stop_ = true;
  for (auto &thread : threads_) {
    if (thread.joinable()) {
      thread.join();
    }
  }
  std::lock_guard lock(mutex_);
  return tally_;
}

void OpenLoopLoad::run() {
  LoadTally local;
  for (;;) {
    uint64_t index = next_.fetch_add(1);
    auto due = start_ + interval_ * static_cast<int64_t>(index);
    if (due >= deadline_) {
      break;
    }
    std::this_thread::sleep_until(due);
    if (stop_) {
      break;
    }
    if (std::chrono::steady_clock::now() - due > std::chrono::milliseconds(100)) {
      ++late_;
    }
    sendOnNewConnection(port_, local);
    ++completed_;
  }
  std::lock_guard lock(mutex_);
  tally_.add(local);
}

} // namespace sockdispatch::test
