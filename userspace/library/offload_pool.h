#pragma once

#include "core/event_ptr.h"
#include "core/result.h"
#include "core/unique_fd.h"

#include <event2/event.h>

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace sockdispatch {

// A worker's pool of threads for blocking work (EventMachine's `defer`): the loop submits a
// job, a pool thread runs its `work`, and its `done` runs back on the loop, woken through an
// eventfd the loop watches. One request queue into the pool, one completion queue back, each
// under the pool's mutex.
//
// Bounded: at most threads + queueLimit jobs are outstanding (submitted, not yet done on the
// loop); submit() refuses more, so the caller can answer 503 instead of queueing without end.
// Created in the worker after fork (threads do not survive fork), used from the loop thread
// only; `work` alone runs on pool threads.
//
// Destruction (on the loop thread, before the loop is freed) cancels the jobs still queued,
// waits for the running ones to return, and drops every completion: no `done` runs after it.
class OffloadPool {
public:
  struct Options {
    size_t threads = 4;
    size_t queueLimit = 64; // jobs waiting for a thread, beyond the ones running
  };
  // `done` receives the exception `work` threw, or nullptr.
  using Work = std::function<void()>;
  using Done = std::function<void(std::exception_ptr)>;
  // Called on the loop with +1 when a job is accepted and -1 when it leaves (done or
  // cancelled): the worker counts outstanding work as load on its scoreboard slot.
  using LoadChanged = std::function<void(int delta)>;

  static Result<std::unique_ptr<OffloadPool>> create(event_base *base, Options options,
                                                     LoadChanged loadChanged);
  ~OffloadPool();
  OffloadPool(const OffloadPool &) = delete;
  OffloadPool &operator=(const OffloadPool &) = delete;

  // Whether submit() would refuse a job now.
  [[nodiscard]] bool full() const { return outstanding_ >= capacity(); }
  // Queues a job; false (and nothing queued) when full.
  bool submit(Work work, Done done);
  [[nodiscard]] size_t outstanding() const { return outstanding_; }
  [[nodiscard]] size_t capacity() const { return options_.threads + options_.queueLimit; }

private:
  struct Job {
    Work work;
    Done done;
    std::exception_ptr failure;
  };

  OffloadPool(Options options, UniqueFd eventFd, LoadChanged loadChanged);
  void runThread();
  void onCompletions();

  Options options_;
  UniqueFd eventFd_;
  LoadChanged loadChanged_;
  EventPtr completionEvent_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job> queue_;     // under mutex_
  std::vector<Job> finished_; // under mutex_
  bool stopping_ = false;     // under mutex_
  size_t outstanding_ = 0;    // loop thread only
  std::vector<std::thread> threads_;
};

} // namespace sockdispatch
