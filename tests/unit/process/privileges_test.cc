#include "core/mapped_region.h"
#include "core/unique_fd.h"
#include "process/privileges.h"
#include "support/process.h"
#include "support/temp_dir.h"

#include <bpf/bpf.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>

namespace sockdispatch {
namespace {

TEST(LookupUser, FindsAnExistingUser) {
  auto nobody = lookupUser("nobody");
  ASSERT_TRUE(nobody) << nobody.error().message();
  EXPECT_EQ(nobody->name, "nobody");
  EXPECT_NE(nobody->uid, 0U);
  EXPECT_FALSE(checkUser("nobody").has_value());
}

TEST(LookupUser, UnknownUserIsNamed) {
  auto missing = lookupUser("no-such-user-x");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message(), "Failed to look up user 'no-such-user-x': no such user");
  EXPECT_EQ(checkUser("no-such-user-x").value_or(""), "user 'no-such-user-x': no such user");
}

TEST(LookupUser, RootIsRefused) {
  auto root = lookupUser("root");
  ASSERT_FALSE(root);
  EXPECT_NE(checkUser("root").value_or("").find("uid 0 is root"), std::string::npos);
}

TEST(BecomeUser, EmptyNameChangesNothing) {
  uid_t before = ::geteuid();
  ASSERT_TRUE(becomeUser("", SIGTERM));
  EXPECT_EQ(::geteuid(), before);
}

// What the child found, one bit per failed check (0: every check held).
enum ChildCheck : int {
  kDropFailed = 1,
  kStillRoot = 2,
  kRootAgain = 4,
  kCapabilitiesLeft = 8,
  kNoDeathSignal = 16,
  kReadRootOnlyFile = 32,
  kScoreboardWrite = 64,
};

uint64_t capabilityField(const std::string &name) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(name + ":", 0) == 0) {
      return std::stoull(line.substr(name.size() + 1), nullptr, 16);
    }
  }
  return ~0ULL;
}

/*
 * A forked child that holds a mapping of a BPF_F_MMAPABLE array map (as a worker holds the
 * scoreboard) drops to nobody: afterwards it is nobody in every id, has no capability in any
 * set, cannot become root again, has its parent-death signal set again, cannot read a file
 * only root may read, and still writes into the mapping, which the parent sees.
 */
TEST(DropPrivileges, ChildBecomesTheUserWithNothingLeftAndKeepsItsMapping) {
  if (::geteuid() != 0 || !test::haveBpfPrivileges()) {
    GTEST_SKIP() << "needs root: changing the uid and creating a BPF map";
  }
  auto nobody = lookupUser("nobody");
  ASSERT_TRUE(nobody) << nobody.error().message();
  test::TempDir dir;
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0) << "chmod " << dir.path();
  std::string secret = dir.write("secret", "root only\n");
  ASSERT_EQ(::chmod(secret.c_str(), 0600), 0) << "chmod " << secret;

  LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = BPF_F_MMAPABLE);
  UniqueFd map(bpf_map_create(BPF_MAP_TYPE_ARRAY, "priv_test", 4, 8, 1, &opts));
  ASSERT_TRUE(map) << "bpf_map_create: " << std::strerror(errno);
  auto region = mapShared(map.get(), 8, true, "the test map");
  ASSERT_TRUE(region) << region.error().message();
  auto *word = region->as<std::atomic<uint64_t>>();
  word->store(0);

  pid_t child = ::fork();
  ASSERT_GE(child, 0) << "fork";
  if (child == 0) {
    int failed = 0;
    if (auto dropped = dropPrivileges(nobody.value(), SIGTERM); !dropped) {
      std::fprintf(stderr, "%s\n", dropped.error().message().c_str());
      ::_exit(kDropFailed);
    }
    if (::getuid() == 0 || ::geteuid() == 0 || ::getgid() == 0 || ::getegid() == 0) {
      failed |= kStillRoot;
    }
    if (::setuid(0) == 0 || ::seteuid(0) == 0) {
      failed |= kRootAgain;
    }
    if (capabilityField("CapEff") != 0 || capabilityField("CapPrm") != 0 ||
        capabilityField("CapInh") != 0 || capabilityField("CapBnd") != 0 ||
        capabilityField("CapAmb") != 0) {
      failed |= kCapabilitiesLeft;
    }
    int signal = 0;
    if (::prctl(PR_GET_PDEATHSIG, &signal) != 0 || signal != SIGTERM) {
      failed |= kNoDeathSignal;
    }
    if (UniqueFd(::open(secret.c_str(), O_RDONLY | O_CLOEXEC))) {
      failed |= kReadRootOnlyFile;
    }
    word->store(42);
    if (word->load() != 42) {
      failed |= kScoreboardWrite;
    }
    ::_exit(failed);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child) << "waitpid";
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "failed checks (bits of ChildCheck)";
  EXPECT_EQ(word->load(), 42U) << "the child's write through the mapping";
}

} // namespace
} // namespace sockdispatch
