// Out of descriptors for real: RLIMIT_NOFILE lowered from outside (prlimit) on a running
// process. In eBPF mode, a worker left two descriptors: its accepts fail with EMFILE; it
// pauses, its slot counts as full, and the program sends new connections to the other worker,
// which answers them. Connections already queued for it wait in its queue (the kernel
// completed them) and are answered once descriptors are free again. In line mode, the master
// left none: nothing is accepted, and nothing is lost; once the limit is raised every
// connection that waited is answered. Either fault, repeated every 100 ms while it lasts, is
// logged once.
#include "control/pinned_attachment.h"
#include "support/held_connections.h"
#include "support/http_client.h"
#include "support/process.h"
#include "support/temp_dir.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

namespace sockdispatch::test {
namespace {

// The RLIMIT_NOFILE that leaves `pid` exactly `free` descriptor numbers to allocate (the limit
// bounds the numbers, not the count: a hole below the limit is a free number).
rlim_t limitLeaving(pid_t pid, size_t free) {
  std::set<long> used;
  DIR *dir = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
  if (dir == nullptr) {
    return 0;
  }
  while (dirent *entry = ::readdir(dir)) {
    if (entry->d_name[0] != '.') {
      used.insert(std::stol(entry->d_name));
    }
  }
  ::closedir(dir);
  long limit = 0;
  for (size_t left = free; left > 0; ++limit) {
    if (used.count(limit) == 0) {
      --left;
    }
  }
  while (used.count(limit) != 0) { // numbers in use above: no room added
    ++limit;
  }
  return static_cast<rlim_t>(limit);
}

size_t countOf(const std::string &text, const std::string &needle) {
  size_t count = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++count;
  }
  return count;
}

// Runs the attachment under the sanitizer run's options with UndefinedBehaviorSanitizer's
// dynamic-type (vptr) check suppressed, in this process only. On a cache miss that check reads
// the object's type through a pipe it opens (sanitizer_common's IsAccessibleMemoryRange); with
// no descriptor free the pipe fails and a valid object is reported as having "an invalid
// vptr", which halts the process. Every other test keeps the check. Empty outside that run.
std::vector<std::string> withoutVptrCheck(const TempDir &dir) {
  const char *options = std::getenv("UBSAN_OPTIONS");
  if (options == nullptr) {
    return {};
  }
  const std::string suppressions = dir.write("ubsan.supp", "vptr:*\n");
  return {"/usr/bin/env",
          std::string("UBSAN_OPTIONS=") + options + ":suppressions=" + suppressions};
}

using DescriptorLimit = BpfTest;

TEST_F(DescriptorLimit, AWorkerOutOfDescriptorsPausesAndTheOtherServes) {
  TempDir dir;
  auto attachment =
      Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "2"}, 20s, withoutVptrCheck(dir));
  ASSERT_NE(attachment, nullptr);
  auto pinned = PinnedAttachment::open(attachment->port(), false);
  ASSERT_TRUE(pinned) << pinned.error().message();
  const auto pid = static_cast<pid_t>(pinned->scoreboard().snapshot(0).pid);
  ASSERT_GT(pid, 0);

  // Worker 0 serves a request first, so that what it does once (on its first request) is done
  // before it is out of descriptors.
  bool servedByWorker0 = false;
  for (int i = 0; i < 20 && !servedByWorker0; ++i) {
    auto reply = fetch(attachment->port());
    servedByWorker0 = reply && reply->workerSlot() == 0;
  }
  ASSERT_TRUE(servedByWorker0) << "worker 0 answered none of 20 requests";

  // Room for two connections in worker 0, no more, counted once its descriptors are settled
  // (a connection of the start-up check or of the requests above it has not closed yet would
  // be one more room later): first every connection it took is closed.
  ASSERT_TRUE(eventually([&] { return pinned->scoreboard().snapshot(0).open == 0; }))
      << "worker 0 still holds connections: " << pinned->scoreboard().snapshot(0).open;
  rlim_t limit = limitLeaving(pid, 2);
  for (int i = 0; i < 20; ++i) {
    ::usleep(100 * 1000);
    rlim_t again = limitLeaving(pid, 2);
    if (again == limit) {
      break;
    }
    limit = again;
  }
  ASSERT_GT(limit, 0U) << "/proc/" << pid << "/fd";
  rlimit lowered{limit, limit};
  ASSERT_EQ(::prlimit(pid, RLIMIT_NOFILE, &lowered, nullptr), 0) << "prlimit";

  // Requests sent, answers left unread, connections kept alive: worker 0 holds two, then
  // refuses the next accept.
  std::vector<TcpClient> queued = sendQueued(attachment->port(), 8);
  ASSERT_EQ(queued.size(), 8U);
  ASSERT_TRUE(eventually([&] {
    return attachment->process().stderrText().find(
               "Failed to accept on the slot 0 socket: Too many open files") != std::string::npos;
  })) << attachment->process().stderrText();

  // While worker 0 is out of descriptors, new connections are answered by worker 1.
  const auto faultBegan = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) {
    auto reply = fetch(attachment->port());
    ASSERT_TRUE(reply) << "fetch " << i;
    EXPECT_EQ(reply->status, 200);
    EXPECT_EQ(reply->workerSlot(), 1) << "fetch " << i;
  }

  // Answered now: all but those waiting in worker 0's queue.
  std::vector<TcpClient *> waiting;
  for (TcpClient &client : queued) {
    if (auto reply = client.readReply(std::chrono::milliseconds(500)); !reply) {
      waiting.push_back(&client);
    }
  }
  EXPECT_FALSE(waiting.empty()) << "the connection that met EMFILE waits in worker 0's queue";
  EXPECT_GE(std::chrono::steady_clock::now() - faultBegan, std::chrono::milliseconds(300))
      << "the fault lasted several 100 ms pauses";

  // Descriptors freed: what waited is answered.
  for (TcpClient &client : queued) {
    if (std::find(waiting.begin(), waiting.end(), &client) == waiting.end()) {
      client.close();
    }
  }
  // Each one answered is closed before the next is read: worker 0 has room for two, and a
  // connection it took before the fault but answered after the 500 ms above (a slow run)
  // holds one of them until it is closed.
  for (TcpClient *client : waiting) {
    auto reply = client->readReply(std::chrono::seconds(5));
    ASSERT_TRUE(reply) << "a connection queued for worker 0 is answered once it has room";
    EXPECT_EQ(reply->workerSlot(), 0);
    client->close();
  }

  EXPECT_EQ(attachment->stop(), 0);
  EXPECT_EQ(countOf(attachment->process().stderrText(), "Failed to accept on the slot 0 socket"),
            1U)
      << "one line for the whole fault, not one per pause:\n"
      << attachment->process().stderrText();
}

/*
 * Line mode: the master accepts every connection. Its soft RLIMIT_NOFILE is lowered to leave
 * it no descriptor, so each accept fails with EMFILE and it pauses 100 ms at a time: clients
 * get no answer (their connections wait in the listener's backlog). Once the limit is put
 * back, every one of them is answered. One log line for the whole fault.
 */
TEST_F(DescriptorLimit, TheLineMasterOutOfDescriptorsLosesNothing) {
  TempDir dir;
  auto attachment = Attachment::start(
      {"0", "--bind", "127.0.0.1", "--workers", "2", "--mode", "line"}, 20s, withoutVptrCheck(dir));
  ASSERT_NE(attachment, nullptr);
  const pid_t master = attachment->process().pid();
  rlimit saved{};
  ASSERT_EQ(::prlimit(master, RLIMIT_NOFILE, nullptr, &saved), 0) << "prlimit (read)";
  const rlim_t limit = limitLeaving(master, 0);
  ASSERT_GT(limit, 0U) << "/proc/" << master << "/fd";
  rlimit lowered{limit, saved.rlim_max};
  ASSERT_EQ(::prlimit(master, RLIMIT_NOFILE, &lowered, nullptr), 0) << "prlimit (lower)";

  constexpr int kClients = 6;
  std::vector<TcpClient> queued = sendQueued(attachment->port(), kClients);
  ASSERT_EQ(queued.size(), static_cast<size_t>(kClients));
  ASSERT_TRUE(eventually([&] {
    return attachment->process().stderrText().find(
               "Failed to accept on the line's listener: Too many open files") != std::string::npos;
  })) << attachment->process().stderrText();
  for (int i = 0; i < kClients; ++i) {
    EXPECT_FALSE(queued[i].readReply(std::chrono::milliseconds(100)))
        << "client " << i << " answered by a master that cannot accept";
  }

  ASSERT_EQ(::prlimit(master, RLIMIT_NOFILE, &saved, nullptr), 0) << "prlimit (restore)";
  for (int i = 0; i < kClients; ++i) {
    auto reply = queued[i].readReply(std::chrono::seconds(5));
    ASSERT_TRUE(reply) << "client " << i << ": waited in the backlog, answered now";
    EXPECT_EQ(reply->status, 200);
  }

  EXPECT_EQ(attachment->stop(), 0);
  EXPECT_EQ(countOf(attachment->process().stderrText(), "Failed to accept on the line's listener"),
            1U)
      << "one line for the whole fault, not one per pause:\n"
      << attachment->process().stderrText();
}

} // namespace
} // namespace sockdispatch::test
