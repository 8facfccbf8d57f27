// OffloadPool on a real libevent loop and real threads: completions come back on the loop
// thread, the bound refuses work past threads + queue, an exception in the work reaches
// `done`, the load callback balances, and destruction cancels queued work without running
// its `done`.
#include "core/event_ptr.h"
#include "library/offload_pool.h"

#include <event2/event.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace sockdispatch {
namespace {

using namespace std::chrono_literals;

class OffloadPoolTest : public testing::Test {
protected:
  void SetUp() override { base_.reset(event_base_new()); }

  std::unique_ptr<OffloadPool> makePool(size_t threads, size_t queue) {
    auto pool =
        OffloadPool::create(base_.get(), {threads, queue}, [this](int delta) { load_ += delta; });
    EXPECT_TRUE(pool) << pool.error().message();
    return std::move(pool.value());
  }

  // Runs the loop until `condition` holds (bounded).
  template <typename F> bool loopUntil(F condition) {
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!condition() && std::chrono::steady_clock::now() < deadline) {
      event_base_loop(base_.get(), EVLOOP_ONCE | EVLOOP_NONBLOCK);
      std::this_thread::sleep_for(1ms);
    }
    return condition();
  }

  // A gate the work waits on, so tests decide when it finishes.
  struct Gate {
    std::mutex mutex;
    std::condition_variable changed;
    bool open = false;
    void wait() {
      std::unique_lock lock(mutex);
      changed.wait(lock, [this] { return open; });
    }
    void release() {
      {
        std::lock_guard lock(mutex);
        open = true;
      }
      changed.notify_all();
    }
  };

  EventBasePtr base_;
  int load_ = 0;
};

TEST_F(OffloadPoolTest, DoneRunsOnTheLoopThreadAfterTheWork) {
  auto pool = makePool(2, 2);
  std::thread::id loopThread = std::this_thread::get_id();
  std::atomic<std::thread::id> workThread;
  bool done = false;
  ASSERT_TRUE(pool->submit([&] { workThread = std::this_thread::get_id(); },
                           [&](std::exception_ptr failure) {
                             EXPECT_EQ(failure, nullptr);
                             EXPECT_EQ(std::this_thread::get_id(), loopThread);
                             done = true;
                           }));
  EXPECT_EQ(load_, 1);
  ASSERT_TRUE(loopUntil([&] { return done; }));
  EXPECT_NE(workThread.load(), loopThread);
  EXPECT_EQ(load_, 0);
  EXPECT_EQ(pool->outstanding(), 0U);
}

TEST_F(OffloadPoolTest, RefusesWorkPastThreadsPlusQueue) {
  auto pool = makePool(1, 2);
  Gate gate;
  int finished = 0;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(pool->submit([&] { gate.wait(); }, [&](std::exception_ptr) { ++finished; }))
        << "job " << i;
  }
  EXPECT_TRUE(pool->full());
  EXPECT_FALSE(pool->submit([] {}, [](std::exception_ptr) {}));
  EXPECT_EQ(load_, 3);
  gate.release();
  ASSERT_TRUE(loopUntil([&] { return finished == 3; }));
  EXPECT_FALSE(pool->full());
  EXPECT_EQ(load_, 0);
}

TEST_F(OffloadPoolTest, AnExceptionInTheWorkReachesDone) {
  auto pool = makePool(1, 0);
  std::exception_ptr seen;
  bool done = false;
  ASSERT_TRUE(pool->submit([] { throw std::runtime_error("boom"); },
                           [&](std::exception_ptr failure) {
                             seen = failure;
                             done = true;
                           }));
  ASSERT_TRUE(loopUntil([&] { return done; }));
  ASSERT_NE(seen, nullptr);
  EXPECT_THROW(std::rethrow_exception(seen), std::runtime_error);
}

TEST_F(OffloadPoolTest, DestructionWaitsForRunningWorkAndCancelsQueuedWork) {
  auto pool = makePool(1, 4);
  Gate gate;
  std::atomic<int> ran{0};
  int done = 0;
  std::atomic<bool> started{false};
  ASSERT_TRUE(pool->submit(
      [&] {
        started = true;
        gate.wait();
        ++ran;
      },
      [&](std::exception_ptr) { ++done; }));
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(pool->submit([&] { ++ran; }, [&](std::exception_ptr) { ++done; }));
  }
  while (!started) {
    std::this_thread::sleep_for(1ms);
  }
  std::thread releaser([&] {
    std::this_thread::sleep_for(50ms);
    gate.release();
  });
  pool.reset(); // returns once the running job has
  releaser.join();
  EXPECT_EQ(ran, 1);  // the queued ones never ran
  EXPECT_EQ(done, 0); // and no completion ran after destruction
  EXPECT_EQ(load_, 0);
}

TEST_F(OffloadPoolTest, NeedsAThread) {
  auto pool = OffloadPool::create(base_.get(), {0, 4}, nullptr);
  ASSERT_FALSE(pool);
  EXPECT_NE(pool.error().message().find("at least one thread"), std::string::npos);
}

} // namespace
} // namespace sockdispatch
