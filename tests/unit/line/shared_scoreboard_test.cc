// The line-mode scoreboard file (userspace/line/shared_scoreboard.cc): created complete and renamed
// into place, mapped MAP_SHARED by the master and by real forked processes, refused when its
// ABI differs or it is truncated, removed by its owner only; on a full file system, refused at
// creation (its blocks are reserved) and nothing left behind.
#include "core/monitoring_group.h"
#include "line/shared_scoreboard.h"
#include "support/fake_system_calls.h"

#include <dirent.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <string>
#include <vector>

namespace sockdispatch {
namespace {

using testing::HasSubstr;

constexpr uint16_t kPort = 18123;

bool exists(const std::string &path) {
  struct stat status {};
  return ::stat(path.c_str(), &status) == 0;
}

std::vector<std::string> entries(const std::string &dir) {
  std::vector<std::string> names;
  DIR *stream = ::opendir(dir.c_str());
  if (stream == nullptr) {
    return names;
  }
  while (dirent *entry = ::readdir(stream)) {
    std::string name = entry->d_name;
    if (name != "." && name != "..") {
      names.push_back(name);
    }
  }
  ::closedir(stream);
  return names;
}

// Waits for a forked child and returns its exit status, or -1 when it did not exit normally.
int reap(pid_t child) {
  int status = 0;
  EXPECT_EQ(::waitpid(child, &status, 0), child) << "waitpid";
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

class SharedScoreboardTest : public testing::Test {
protected:
  void SetUp() override {
    std::array<char, 64> dir{};
    std::string pattern = "/tmp/sockdispatch-run-XXXXXX";
    std::copy(pattern.begin(), pattern.end(), dir.begin());
    ASSERT_NE(::mkdtemp(dir.data()), nullptr) << "mkdtemp";
    temp_ = dir.data();
    ASSERT_EQ(::setenv("SOCKDISPATCH_RUN_ROOT", (temp_ + "/run/sockdispatch").c_str(), 1), 0);
  }
  void TearDown() override {
    std::string portDir = runDirFor(kPort);
    for (const auto &name : entries(portDir)) {
      ::unlink((portDir + "/" + name).c_str());
    }
    ::rmdir(portDir.c_str());
    ::rmdir((temp_ + "/run/sockdispatch").c_str());
    ::rmdir((temp_ + "/run").c_str());
    EXPECT_EQ(::rmdir(temp_.c_str()), 0) << "the test leaves nothing behind in " << temp_;
    ::unsetenv("SOCKDISPATCH_RUN_ROOT");
  }

  static SharedScoreboard create(uint32_t policy = SD_POLICY_SKIP_LOAD, uint32_t slots = 4) {
    sd_config config{};
    config.policy = policy;
    config.nr_slots = slots;
    config.generation = 1;
    auto board = SharedScoreboard::create(kPort, config);
    EXPECT_TRUE(board.ok()) << (board.ok() ? "" : board.error().message());
    return std::move(board.value());
  }

  std::string temp_;
};

TEST_F(SharedScoreboardTest, LayoutIsPageAligned) {
  ScoreboardLayout layout = scoreboardLayout();
  auto page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  EXPECT_GE(layout.slotsOffset, sizeof(sd_config));
  EXPECT_EQ(layout.slotsOffset % page, 0U);
  EXPECT_EQ(layout.bytes % page, 0U);
  EXPECT_GE(layout.bytes, layout.slotsOffset + sizeof(sd_slot) * SD_MAX_WORKERS);
}

TEST_F(SharedScoreboardTest, CreatesTheCompleteFileUnderItsName) {
  SharedScoreboard board = create(SD_POLICY_LEAST_CONN, 4);
  EXPECT_EQ(board.path(), runDirFor(kPort) + "/scoreboard");
  EXPECT_EQ(runDirFor(kPort), temp_ + "/run/sockdispatch/" + std::to_string(kPort));
  EXPECT_EQ(entries(runDirFor(kPort)), std::vector<std::string>{"scoreboard"})
      << "no temporary file is left";
  struct stat status {};
  ASSERT_EQ(::stat(board.path().c_str(), &status), 0);
  EXPECT_EQ(static_cast<size_t>(status.st_size), scoreboardLayout().bytes);
  // Root's to write, the monitoring group's to read (as the pins), nobody else's: 0640 and the
  // group's gid where the group exists, else root's 0600. (Whether it exists is read from the
  // file: PinAccess tests may create the group for a moment, in parallel.)
  EXPECT_EQ(status.st_uid, 0U);
  bool shared = status.st_gid != 0;
  EXPECT_EQ(status.st_mode & 0777, shared ? 0640U : 0600U);
  if (shared) {
    auto group = monitoringGroup();
    ASSERT_TRUE(group) << group.error().message();
    EXPECT_EQ(status.st_gid, group->value_or(0)) << "the group of " << kMonitoringGroup;
  }
  ASSERT_EQ(::stat(runDirFor(kPort).c_str(), &status), 0);
  EXPECT_EQ(status.st_mode & 0777, status.st_gid != 0 ? 0750U : 0700U);

  const Scoreboard view = board.reader();
  EXPECT_EQ(view.config()->abi_version, static_cast<uint32_t>(SD_ABI_VERSION));
  EXPECT_EQ(view.config()->mode, static_cast<uint32_t>(SD_MODE_LINE));
  EXPECT_EQ(view.config()->port, kPort);
  EXPECT_EQ(view.config()->policy, static_cast<uint32_t>(SD_POLICY_LEAST_CONN));
  EXPECT_EQ(view.config()->master_pid, static_cast<uint32_t>(::getpid()));
  EXPECT_EQ(view.slotCount(), 4U);
  for (uint32_t slot = 0; slot < 4; ++slot) {
    SlotSnapshot s = view.snapshot(slot);
    EXPECT_EQ(s.state, static_cast<uint32_t>(SD_SLOT_EMPTY));
    EXPECT_EQ(s.weight, 1U);
    EXPECT_EQ(s.open + s.accepted + s.skipped + s.selected, 0U);
  }
}

TEST_F(SharedScoreboardTest, ItsBlocksAreReservedAtCreation) {
  test::FakeSystemCalls calls;
  sd_config config{};
  config.nr_slots = 2;
  auto board = SharedScoreboard::create(kPort, config, false, calls);
  ASSERT_TRUE(board.ok()) << board.error().message();
  EXPECT_EQ(calls.allocations, 1) << "posix_fallocate, not only a size";
  struct stat status {};
  ASSERT_EQ(::stat(board->path().c_str(), &status), 0);
  EXPECT_EQ(static_cast<size_t>(status.st_size), scoreboardLayout().bytes);
}

TEST_F(SharedScoreboardTest, AFullFileSystemFailsTheCreationAndLeavesNothing) {
  test::FakeSystemCalls calls;
  calls.allocateFaults = {ENOSPC};
  sd_config config{};
  config.nr_slots = 2;
  auto board = SharedScoreboard::create(kPort, config, false, calls);
  ASSERT_FALSE(board.ok()) << "no SIGBUS later: an error now";
  EXPECT_EQ(board.error().code, ENOSPC);
  EXPECT_EQ(board.error().message(), "Failed to reserve " +
                                         std::to_string(scoreboardLayout().bytes) +
                                         " bytes for scoreboard " + runDirFor(kPort) +
                                         "/scoreboard: No space left on device");
  EXPECT_TRUE(entries(runDirFor(kPort)).empty()) << "the temporary file is removed";

  auto retried = SharedScoreboard::create(kPort, config, false, calls);
  EXPECT_TRUE(retried.ok()) << "with room again, the same port is created";
}

TEST_F(SharedScoreboardTest, AForkedWorkerAndTheMasterShareTheCounters) {
  SharedScoreboard owner = create();
  Scoreboard master = owner.writer();
  master.prepareSlot(1, 1);
  pid_t child = ::fork();
  ASSERT_GE(child, 0) << "fork";
  if (child == 0) {
    // The worker: the inherited mapping, and a second mapping of the file by name.
    Scoreboard inherited = owner.writer();
    inherited.setState(1, SD_SLOT_RUNNING);
    auto reopened = SharedScoreboard::open(kPort, true);
    if (!reopened.ok() || reopened->owner()) {
      ::_exit(3);
    }
    Scoreboard mine = reopened->writer();
    for (int i = 0; i < 5; ++i) {
      mine.connectionOpened(1);
    }
    mine.connectionClosed(1);
    mine.requestAnswered(1);
    (void)mine.countSkip(1);
    mine.countSelected(1);
    {
      SharedScoreboard moved = std::move(owner); // its destructor runs in the child
    }
    ::_exit(exists(runDirFor(kPort) + "/scoreboard") ? 0 : 4);
  }
  ASSERT_EQ(reap(child), 0) << "the child mapped and wrote the file, and did not remove it";

  auto reader = SharedScoreboard::open(kPort, false);
  ASSERT_TRUE(reader.ok()) << reader.error().message();
  EXPECT_FALSE(reader->writable());
  EXPECT_FALSE(reader->owner());
  for (const Scoreboard view : {master, reader->reader()}) {
    SlotSnapshot slot = view.snapshot(1);
    EXPECT_EQ(slot.state, static_cast<uint32_t>(SD_SLOT_RUNNING));
    EXPECT_EQ(slot.open, 4U);
    EXPECT_EQ(slot.accepted, 5U);
    EXPECT_EQ(slot.requests, 1U);
    EXPECT_EQ(slot.skipped, 1U);
    EXPECT_EQ(slot.selected, 1U);
    EXPECT_EQ(view.snapshot(0).accepted, 0U);
  }
  EXPECT_TRUE(owner.owner());
}

TEST_F(SharedScoreboardTest, OwnerRemovesTheFileAndItsDirectory) {
  std::string path;
  {
    SharedScoreboard board = create();
    path = board.path();
    auto reader = SharedScoreboard::open(kPort, false);
    ASSERT_TRUE(reader.ok());
    { SharedScoreboard gone = std::move(reader.value()); } // a reader removes nothing
    EXPECT_TRUE(exists(path));
  }
  EXPECT_FALSE(exists(path));
  EXPECT_FALSE(exists(runDirFor(kPort)));
}

TEST_F(SharedScoreboardTest, MissingFileIsEnoent) {
  auto missing = SharedScoreboard::open(kPort, false);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ENOENT);
  EXPECT_EQ(missing.error().message(), "Failed to open scoreboard " + runDirFor(kPort) +
                                           "/scoreboard: No such file or directory");
}

TEST_F(SharedScoreboardTest, AbiMismatchIsRefused) {
  SharedScoreboard board = create();
  board.writer().config()->abi_version = SD_ABI_VERSION + 98;
  for (bool writable : {false, true}) {
    auto opened = SharedScoreboard::open(kPort, writable);
    ASSERT_FALSE(opened.ok());
    EXPECT_THAT(opened.error().message(),
                HasSubstr("Failed to open scoreboard " + board.path() + ": its ABI is version " +
                          std::to_string(SD_ABI_VERSION + 98) + ", this sockdispatch speaks " +
                          "version " + std::to_string(SD_ABI_VERSION)));
  }
}

TEST_F(SharedScoreboardTest, TruncatedFileIsRefused) {
  SharedScoreboard board = create();
  ASSERT_EQ(::truncate(board.path().c_str(), 4096), 0) << "truncate";
  auto opened = SharedScoreboard::open(kPort, false);
  ASSERT_FALSE(opened.ok());
  EXPECT_THAT(opened.error().message(), HasSubstr("it is 4096 bytes, the layout needs " +
                                                  std::to_string(scoreboardLayout().bytes)));
}

TEST_F(SharedScoreboardTest, ReadOnlyMappingHasNoWriter) {
  SharedScoreboard board = create();
  auto reader = SharedScoreboard::open(kPort, false);
  ASSERT_TRUE(reader.ok());
  EXPECT_DEATH((void)reader->writer(), "writer\\(\\) on a read-only mapping");
}

TEST_F(SharedScoreboardTest, LiveMasterKeepsItsFileAStaleOneIsReplaced) {
  std::array<int, 2> ready{};
  std::array<int, 2> release{};
  ASSERT_EQ(::pipe(ready.data()), 0);
  ASSERT_EQ(::pipe(release.data()), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0) << "fork";
  if (child == 0) {
    // Another master: creates the file, waits to be released, exits without cleaning up
    // (as a crashed master would).
    ::alarm(20);
    ::close(ready[0]);
    ::close(release[1]);
    sd_config config{};
    auto board = SharedScoreboard::create(kPort, config);
    char byte = board.ok() ? 'y' : 'n';
    (void)::write(ready[1], &byte, 1);
    (void)::read(release[0], &byte, 1);
    ::_exit(0);
  }
  ::close(ready[1]);
  ::close(release[0]);
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);
  ::close(ready[0]);
  ASSERT_EQ(byte, 'y') << "the other master created its file";

  sd_config config{};
  auto refused = SharedScoreboard::create(kPort, config);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, EEXIST);
  EXPECT_THAT(refused.error().message(),
              HasSubstr("the port is attached by master pid " + std::to_string(child)));

  ::close(release[1]);
  ASSERT_EQ(reap(child), 0);
  ASSERT_TRUE(exists(runDirFor(kPort) + "/scoreboard")) << "the dead master left its file";
  SharedScoreboard replaced = create();
  EXPECT_EQ(replaced.reader().config()->master_pid, static_cast<uint32_t>(::getpid()));
  EXPECT_EQ(entries(runDirFor(kPort)), std::vector<std::string>{"scoreboard"});
}

TEST_F(SharedScoreboardTest, StaleFileWhosePidWasReusedIsReplaced) {
  pid_t child = ::fork();
  ASSERT_GE(child, 0) << "fork";
  if (child == 0) {
    sd_config config{};
    ::_exit(SharedScoreboard::create(kPort, config).ok() ? 0 : 1); // dies without cleaning up
  }
  ASSERT_EQ(reap(child), 0);
  {
    auto stale = SharedScoreboard::open(kPort, true);
    ASSERT_TRUE(stale.ok()) << stale.error().message();
    // The dead master's pid now names a running process: this one.
    stale->writer().config()->master_pid = static_cast<uint32_t>(::getpid());
  }
  SharedScoreboard replaced = create();
  EXPECT_TRUE(replaced.owner()) << "no process holds the lock: the file is stale";
}

} // namespace
} // namespace sockdispatch
