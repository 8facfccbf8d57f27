#include "library/offload_pool.h"

#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <optional>
#include <system_error>

namespace sockdispatch {

Result<std::unique_ptr<OffloadPool>> OffloadPool::create(event_base *base, Options options,
                                                         LoadChanged loadChanged) {
  if (options.threads == 0) {
    return logicError("create the offload pool", "it needs at least one thread");
  }
  UniqueFd eventFd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!eventFd) {
    return osError("create the offload pool's eventfd");
  }
  std::unique_ptr<OffloadPool> pool(
      new OffloadPool(options, std::move(eventFd), std::move(loadChanged)));
  pool->completionEvent_.reset(event_new(
      base, pool->eventFd_.get(), EV_READ | EV_PERSIST,
      [](evutil_socket_t, short, void *ctx) { static_cast<OffloadPool *>(ctx)->onCompletions(); },
      pool.get()));
  if (!pool->completionEvent_ || event_add(pool->completionEvent_.get(), nullptr) != 0) {
    return logicError("watch the offload pool's eventfd", "libevent refused the event");
  }
  // Pool threads never take signals: they start with every signal blocked (a thread inherits
  // its creator's mask), so a process-directed SIGTERM reaches the loop's signalfd instead of
  // killing the process through a thread that left it unblocked.
  sigset_t all;
  sigset_t previous;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &previous);
  std::optional<Error> failure;
  try {
    for (size_t i = 0; i < options.threads; ++i) {
      pool->threads_.emplace_back([raw = pool.get()] { raw->runThread(); });
    }
  } catch (const std::system_error &error) {
    failure = osError(error.code().value(), "start the offload pool's threads");
  }
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  if (failure) {
    return *failure; // the threads already started are stopped and joined with the pool
  }
  return pool;
}

OffloadPool::OffloadPool(Options options, UniqueFd eventFd, LoadChanged loadChanged)
    : options_(options), eventFd_(std::move(eventFd)), loadChanged_(std::move(loadChanged)) {}

OffloadPool::~OffloadPool() {
  std::deque<Job> cancelled;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    cancelled.swap(queue_);
  }
  wake_.notify_all();
  for (std::thread &thread : threads_) {
    thread.join(); // a running job is waited for: it cannot be interrupted safely
  }
  if (completionEvent_) {
    event_del(completionEvent_.get());
  }
  size_t dropped = cancelled.size() + finished_.size();
  if (dropped > 0) {
    spdlog::debug("offload pool: {} jobs cancelled or unanswered at exit", dropped);
  }
  if (loadChanged_) {
    for (size_t i = 0; i < outstanding_; ++i) {
      loadChanged_(-1);
    }
  }
  // `cancelled` and finished_ are freed here, on the loop thread, their `done` never run.
}

bool OffloadPool::submit(Work work, Done done) {
  if (full()) {
    return false;
  }
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(Job{std::move(work), std::move(done), nullptr});
  }
  wake_.notify_one();
  ++outstanding_;
  if (loadChanged_) {
    loadChanged_(+1);
  }
  return true;
}

void OffloadPool::runThread() {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) {
        return;
      }
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    try {
      job.work();
    } catch (...) {
      job.failure = std::current_exception();
    }
    job.work = nullptr; // what it captured is released here, off the loop
    {
      std::lock_guard lock(mutex_);
      finished_.push_back(std::move(job));
    }
    uint64_t one = 1;
    // Cannot fail short of a counter overflow; EAGAIN would mean the loop is woken anyway.
    (void)!::write(eventFd_.get(), &one, sizeof(one));
  }
}

void OffloadPool::onCompletions() {
  uint64_t count = 0;
  (void)!::read(eventFd_.get(), &count, sizeof(count));
  std::vector<Job> done;
  {
    std::lock_guard lock(mutex_);
    done.swap(finished_);
  }
  for (Job &job : done) {
    --outstanding_;
    if (loadChanged_) {
      loadChanged_(-1);
    }
    if (job.done) {
      job.done(job.failure);
    }
  }
}

} // namespace sockdispatch
