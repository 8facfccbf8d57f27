// Who may read and write an attachment's pins. With a `sockdispatch` group, the pin directory
// is root:sockdispatch 0750 and the pins 0640: a member runs `status` without root, and
// `tune` is refused by the kernel's permission check. Pins of another map ABI are refused.
#include "bpf/pin_dir.h"
#include "control/pinned_attachment.h"
#include "support/http_client.h"
#include "support/live_attachment.h"
#include "support/process.h"

#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace sockdispatch::test {
namespace {

// Runs a program to completion with a deadline; stdout and stderr are collected.
Completed runProgram(const std::vector<std::string> &argv) {
  Completed done;
  auto process = Process::start(argv);
  if (!process) {
    return done;
  }
  while (auto line = process->readLine(20s)) {
    done.out += *line + "\n";
  }
  done.code = process->wait(20s).value_or(-1);
  done.err = process->stderrText();
  return done;
}

// An exclusive lock between test processes, held while it lives. The tests of this file run
// in parallel processes: one that created the group would delete it under another's user,
// and useradd fails while another holds the password file's lock.
class InterProcessLock {
public:
  explicit InterProcessLock(const char *path)
      : fd_(::open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) {
    if (fd_ >= 0) {
      while (::flock(fd_, LOCK_EX) != 0 && errno == EINTR) {
      }
    }
  }
  ~InterProcessLock() {
    if (fd_ >= 0) {
      ::close(fd_); // releases the lock
    }
  }
  InterProcessLock(const InterProcessLock &) = delete;
  InterProcessLock &operator=(const InterProcessLock &) = delete;

private:
  int fd_;
};

// A system user in the sockdispatch group (and the group, if it did not exist), removed
// again when the test ends however it ends. One lives at a time on the machine.
class GroupMember {
public:
  GroupMember() : name_("sdtest" + std::to_string(::getpid())) {
    if (::getgrnam(kPinGroup) == nullptr) {
      createdGroup_ = runProgram({"/usr/sbin/groupadd", "--system", kPinGroup}).code == 0;
    }
    created_ = runProgram({"/usr/sbin/useradd", "--system", "--no-create-home", "--gid", kPinGroup,
                           "--shell", "/usr/sbin/nologin", name_})
                   .code == 0;
  }
  ~GroupMember() {
    if (created_) {
      runProgram({"/usr/sbin/userdel", name_});
    }
    if (createdGroup_) {
      runProgram({"/usr/sbin/groupdel", kPinGroup});
    }
  }
  GroupMember(const GroupMember &) = delete;
  GroupMember &operator=(const GroupMember &) = delete;

  [[nodiscard]] bool ready() const { return created_ && ::getgrnam(kPinGroup) != nullptr; }
  // Any program run as this user, with its groups.
  Completed runProgramAs(const std::vector<std::string> &program) const {
    std::vector<std::string> argv{"/usr/bin/setpriv", "--reuid",       name_, "--regid",
                                  kPinGroup,          "--init-groups", "--"};
    argv.insert(argv.end(), program.begin(), program.end());
    return runProgram(argv);
  }
  // The project's binary run as this user, with its groups.
  [[nodiscard]] Completed run(const std::vector<std::string> &args) const {
    std::vector<std::string> argv{"/usr/bin/setpriv", "--reuid",       name_, "--regid",
                                  kPinGroup,          "--init-groups", "--",  SOCKDISPATCH_BINARY};
    argv.insert(argv.end(), args.begin(), args.end());
    return runProgram(argv);
  }

private:
  InterProcessLock lock_{"/tmp/sockdispatch-test-group-member.lock"};
  std::string name_;
  bool created_ = false;
  bool createdGroup_ = false;
};

mode_t modeOf(const std::string &path, gid_t *group = nullptr) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return 0;
  }
  if (group != nullptr) {
    *group = st.st_gid;
  }
  return st.st_mode & 07777;
}

class PinAccess : public BpfTest {
protected:
  void SetUp() override {
    BpfTest::SetUp();
    if (IsSkipped()) {
      return;
    }
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root to create a temporary user and group";
    }
  }
};

/*
 * A member of the sockdispatch group (not root): status and status --json work from the
 * read-only pins; tune fails with a clear message and changes nothing.
 */
TEST_F(PinAccess, GroupMemberReadsStatusButCannotTune) {
  GroupMember member;
  ASSERT_TRUE(member.ready()) << "could not create the test user";
  // systemd mounts bpffs with mode 0700: attach must let the group reach its pins anyway.
  if (modeOf("/sys/fs/bpf") != 0) {
    ASSERT_EQ(::chmod("/sys/fs/bpf", 01700), 0) << "chmod /sys/fs/bpf";
  }
  auto attachment = Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "4"});
  ASSERT_NE(attachment, nullptr);
  std::string port = std::to_string(attachment->port());
  std::string dir = pinDirFor(attachment->port());
  EXPECT_EQ(modeOf("/sys/fs/bpf") & 0011U, 0011U) << "others cannot reach the pins";
  gid_t group = 0;
  EXPECT_EQ(modeOf(dir, &group), 0750U);
  EXPECT_EQ(group, ::getgrnam(kPinGroup)->gr_gid);
  for (const char *pin : {kPinSlots, kPinConfig, kPinVerdicts, kPinSockets, kPinProgram}) {
    EXPECT_EQ(modeOf(dir + "/" + pin), 0640U) << pin;
  }

  auto json = member.run({"status", port, "--json"});
  ASSERT_EQ(json.code, 0) << json.err;
  auto status = nlohmann::json::parse(json.out);
  EXPECT_EQ(status["port"], attachment->port());
  EXPECT_EQ(status["stale"], false);
  EXPECT_EQ(status["workers"].size(), 4U);
  auto table = member.run({"status"});
  EXPECT_EQ(table.code, 0) << table.err;
  EXPECT_NE(table.out.find("port " + port + "  mode ebpf"), std::string::npos) << table.out;

  auto tune = member.run({"tune", port, "--policy", "least_conn", "--drain", "1"});
  EXPECT_EQ(tune.code, 1) << tune.err;
  EXPECT_NE(tune.err.find("tune: Failed to open pin " + dir), std::string::npos) << tune.err;
  EXPECT_NE(tune.err.find("run it as root"), std::string::npos) << tune.err;
  auto pins = PinnedAttachment::open(attachment->port(), false);
  ASSERT_TRUE(pins) << pins.error().message();
  EXPECT_EQ(pins->config().policy, SD_POLICY_LEAST_CONN) << "unchanged";
  EXPECT_EQ(pins->scoreboard().snapshot(1).draining, 0U);

  // Nor can plain bpftool write a map: the pins open read-only for the group, and the kernel
  // refuses an update through a read-only map descriptor.
  std::vector<std::string> update{"/usr/sbin/bpftool",
                                  "map",
                                  "update",
                                  "pinned",
                                  dir + "/" + kPinConfig,
                                  "key",
                                  "hex",
                                  "00",
                                  "00",
                                  "00",
                                  "00",
                                  "value",
                                  "hex"};
  for (size_t i = 0; i < sizeof(sd_config); ++i) {
    update.emplace_back("ff");
  }
  auto written = member.runProgramAs(update);
  EXPECT_NE(written.code, 0) << "an unprivileged member changed the config map: " << written.out;
  EXPECT_TRUE(written.err.find("Permission denied") != std::string::npos ||
              written.err.find("not permitted") != std::string::npos)
      << "refused for another reason: " << written.err;
  EXPECT_EQ(pins->config().policy, SD_POLICY_LEAST_CONN) << "unchanged";
  EXPECT_EQ(pins->config().stopping, 0U) << "unchanged";

  auto detach = member.run({"detach", port});
  EXPECT_EQ(detach.code, 1) << detach.err;
  EXPECT_NE(attachment->process().wait(200ms).has_value(), true) << "a member stopped the master";
}

/*
 * The split of a kernel-measured slot needs no privilege either: a member's status reads the
 * slot's listener cookie from the read-only `sockets` pin and dumps the port's listeners with
 * sock_diag. The COMMAND (sleep) holds its listener and never accepts: the 3 connections made
 * show as queued, in the accept queue, none open.
 */
TEST_F(PinAccess, GroupMemberSeesTheAcceptQueueOfAKernelMeasuredSlot) {
  GroupMember member;
  ASSERT_TRUE(member.ready()) << "could not create the test user";
  auto attachment =
      Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "1", "--", "/bin/sleep", "600"});
  ASSERT_NE(attachment, nullptr);
  std::vector<TcpClient> clients;
  for (int i = 0; i < 3; ++i) {
    auto client = TcpClient::connect(attachment->port());
    ASSERT_TRUE(client) << "connect " << i;
    clients.push_back(std::move(*client));
  }
  nlohmann::json slot;
  std::string err;
  EXPECT_TRUE(eventually([&] {
    auto done = member.run({"status", std::to_string(attachment->port()), "--json"});
    err = done.err;
    if (done.code != 0) {
      return false;
    }
    slot = nlohmann::json::parse(done.out)["workers"][0];
    return slot.value("accept_queue", -1) == 3;
  })) << slot.dump()
      << "\n"
      << err;
  EXPECT_EQ(err, "") << "no note: the dump and the lookup worked";
  EXPECT_EQ(slot["load_source"], "kernel");
  EXPECT_EQ(slot["open"], 0);
  EXPECT_EQ(slot["queued"], 3);
}

/* Pins written by another map ABI version are refused by status and tune alike. */
class PinAbi : public LiveAttachmentTest {};

TEST_F(PinAbi, OtherAbiVersionIsRefused) {
  sd_config *config = pinned_->scoreboard().config();
  storeRelease<__u32>(config->abi_version, SD_ABI_VERSION + 1);
  std::string port = std::to_string(attachment_->port());
  auto status = runSockdispatch({"status", port});
  auto tune = runSockdispatch({"tune", port, "--policy", "hash"});
  storeRelease<__u32>(config->abi_version, SD_ABI_VERSION);
  std::string expected = "its map ABI is version " + std::to_string(SD_ABI_VERSION + 1) +
                         ", this sockdispatch speaks version " + std::to_string(SD_ABI_VERSION);
  EXPECT_EQ(status.code, 1);
  EXPECT_NE(status.err.find(expected), std::string::npos) << status.err;
  EXPECT_EQ(tune.code, 1);
  EXPECT_NE(tune.err.find(expected), std::string::npos) << tune.err;
  EXPECT_EQ(loadRelaxed(config->policy), SD_POLICY_LEAST_CONN) << "unchanged";
}

} // namespace
} // namespace sockdispatch::test
