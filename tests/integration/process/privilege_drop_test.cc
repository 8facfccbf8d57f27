// `attach --user NAME`: the master keeps root (it loaded the program and bound the sockets);
// every worker runs as NAME with no capability left, and still serves and keeps its scoreboard
// slot (a mapping made before the fork) up to date.
#include "control/pinned_attachment.h"
#include "process/privileges.h"
#include "support/http_client.h"
#include "support/process.h"
#include "support/temp_dir.h"
#include "support/worker_state.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <map>
#include <sstream>
#include <string>

namespace sockdispatch::test {
namespace {

using PrivilegeDrop = BpfTest;

std::string fourTimes(unsigned id) {
  std::string one = std::to_string(id);
  return one + "\t" + one + "\t" + one + "\t" + one;
}

/*
 * Two workers attached with --user nobody over a document root holding a public file and one
 * only root may read. Each worker's /proc status shows nobody's uid and gid in all four
 * places, nobody's groups only, every capability set empty, no_new_privs and a seccomp
 * filter (the requests below then pass through it); the master is still root, unfiltered. The
 * public file is served, the root-only one is refused (403) without its content, and the workers'
 * scoreboard slots (written after the drop) count the requests.
 */
TEST_F(PrivilegeDrop, WorkersRunAsTheUserWithNoCapabilities) {
  auto nobody = lookupUser("nobody");
  ASSERT_TRUE(nobody) << nobody.error().message();
  TempDir root;
  ASSERT_EQ(::chmod(root.path().c_str(), 0755), 0) << "chmod " << root.path();
  (void)root.write("index.html", "public page\n");
  std::string secret = root.write("secret.txt", "root only secret\n");
  ASSERT_EQ(::chmod(secret.c_str(), 0600), 0) << "chmod " << secret;

  auto attachment = Attachment::start(
      {"0", "--bind", "127.0.0.1", "--workers", "2", "--root", root.path(), "--user", "nobody"});
  ASSERT_NE(attachment, nullptr);
  auto pinned = PinnedAttachment::open(attachment->port(), false);
  ASSERT_TRUE(pinned) << pinned.error().message();
  auto slots = pinned->scoreboard().snapshotAll();
  ASSERT_EQ(slots.size(), 2U);

  for (const auto &slot : slots) {
    SCOPED_TRACE("worker " + std::to_string(slot.slot) + " pid " + std::to_string(slot.pid));
    EXPECT_EQ(slot.state, SD_SLOT_RUNNING) << "set by the worker after the drop";
    auto status = procStatus(static_cast<pid_t>(slot.pid));
    EXPECT_EQ(status["Uid"], fourTimes(nobody->uid));
    EXPECT_EQ(status["Gid"], fourTimes(nobody->gid));
    EXPECT_EQ(status["Groups"], std::to_string(nobody->gid)) << "nobody's groups only";
    for (const char *set : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}) {
      EXPECT_EQ(status[set], "0000000000000000") << set;
    }
    EXPECT_EQ(status["NoNewPrivs"], "1");
    EXPECT_EQ(status["Seccomp"], "2") << "the worker's system-call filter (filter mode)";
  }
  auto master = procStatus(attachment->process().pid());
  EXPECT_EQ(master["Uid"], fourTimes(0)) << "the master stays root";
  EXPECT_NE(master["CapEff"], "0000000000000000");
  EXPECT_EQ(master["Seccomp"], "0") << "the master is not confined to the workers' calls";

  constexpr int kRequests = 20;
  for (int i = 0; i < kRequests; ++i) {
    auto page = fetch(attachment->port(), "/index.html");
    ASSERT_TRUE(page.has_value()) << "request " << i;
    EXPECT_EQ(page->status, 200);
    EXPECT_EQ(page->body, "public page\n");
  }
  auto hidden = fetch(attachment->port(), "/secret.txt");
  ASSERT_TRUE(hidden.has_value());
  EXPECT_EQ(hidden->status, 403) << "EACCES for the worker's user";
  EXPECT_EQ(hidden->body.find("root only secret"), std::string::npos) << hidden->body;

  uint64_t requests = 0;
  ASSERT_TRUE(eventually([&] {
    requests = 0;
    for (const auto &slot : pinned->scoreboard().snapshotAll()) {
      requests += slot.requests;
    }
    return requests >= kRequests + 1;
  })) << "the dropped workers counted "
      << requests << " requests in their slots";

  EXPECT_EQ(attachment->stop(), 0) << attachment->process().stderrText();
}

/*
 * A master without CAP_SETUID and CAP_SETGID (removed from its bounding set by setpriv before
 * exec) still loads the program and binds, but its workers cannot become nobody: each says
 * why and exits with the reserved fatal-configuration status, none is respawned, and the
 * master stops with exit 1 saying that no worker can run. Nothing ever serves as root.
 */
TEST_F(PrivilegeDrop, WorkersThatCannotDropAreNotRespawned) {
  auto attach = Process::start({"/usr/bin/setpriv", "--bounding-set=-setuid,-setgid", "--",
                                SOCKDISPATCH_BINARY, "attach", "0", "--bind", "127.0.0.1",
                                "--workers", "2", "--user", "nobody"});
  ASSERT_NE(attach, nullptr);
  auto code = attach->wait(20s);
  std::string log = attach->stderrText();
  EXPECT_EQ(code, 1) << log;
  EXPECT_NE(log.find("Failed to set the supplementary groups for user nobody: Operation not "
                     "permitted"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("not respawning"), std::string::npos) << log;
  EXPECT_NE(log.find("no worker can run"), std::string::npos) << log;
  EXPECT_EQ(log.find("; respawning it"), std::string::npos) << "a worker was respawned:\n" << log;
}

/* An unknown user is a usage error, named, before anything starts (no pins, exit 2). */
TEST(PrivilegeDropUsage, UnknownUserIsRefusedBeforeStarting) {
  auto done = runSockdispatch({"attach", "0", "--bind", "127.0.0.1", "--user", "no-such-user-x"});
  EXPECT_EQ(done.code, 2) << done.err;
  EXPECT_NE(done.err.find("user 'no-such-user-x': no such user"), std::string::npos) << done.err;
  auto root = runSockdispatch({"attach", "0", "--bind", "127.0.0.1", "--user", "root"});
  EXPECT_EQ(root.code, 2) << root.err;
  EXPECT_NE(root.err.find("uid 0 is root"), std::string::npos) << root.err;
}

} // namespace
} // namespace sockdispatch::test
