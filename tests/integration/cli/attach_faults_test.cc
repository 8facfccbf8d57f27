// `attach` where the file systems it writes its state to refuse: the real binary, in a mount
// namespace of the test's own (unshare), so the host's mounts are untouched. A bpffs mounted
// read-only refuses the pins: --mode ebpf exits 1 naming EROFS, --mode auto serves in line
// mode. A run directory on a full tmpfs cannot hold line mode's scoreboard file: refused at
// start-up with ENOSPC and exit 1 (a runtime failure), never a SIGBUS later.
#include "line/shared_scoreboard.h"
#include "support/http_client.h"
#include "support/process.h"
#include "support/temp_dir.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace sockdispatch::test {
namespace {

using testing::HasSubstr;
using testing::Not;

using AttachFaults = BpfTest;

// Runs `setup` (shell) in a new mount namespace, then `sockdispatch attach` there.
Completed attachInMountNamespace(const std::string &setup, const std::string &environment,
                                 const std::string &mode) {
  std::string script = "set -e; " + setup + "; export " + environment + "; exec " +
                       SOCKDISPATCH_BINARY + " attach 0 --bind 127.0.0.1 --workers 1 --mode " +
                       mode;
  return runCommand(
      {"/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script});
}

// Shell that mounts a fresh bpffs on `bpffs`, makes the attachments' directory in it, then
// remounts it read-only.
std::string mountReadOnlyBpffs(const std::string &bpffs) {
  return "mkdir " + bpffs + "; mount -t bpf bpf " + bpffs + "; mkdir " + bpffs +
         "/sockdispatch; mount -o remount,bind,ro " + bpffs;
}

/*
 * bpffs is mounted, holds the base directory, and is read-only: the program would load, but
 * its pins could not be created, and without them neither status, tune nor detach would find
 * the attachment. --mode ebpf refuses at once, before anything is loaded, naming EROFS with
 * the remedy, and exits 1.
 */
TEST_F(AttachFaults, AReadOnlyBpffsRefusesTheEbpfAttachWithExit1) {
  TempDir dir;
  const std::string bpffs = dir.path() + "/bpf";
  auto done = attachInMountNamespace(mountReadOnlyBpffs(bpffs),
                                     "SOCKDISPATCH_PIN_ROOT=" + bpffs + "/sockdispatch", "ebpf");
  EXPECT_EQ(done.code, 1) << done.err;
  EXPECT_THAT(done.err,
              HasSubstr("attach: Failed to pin an attachment into " + bpffs +
                        "/sockdispatch: Read-only file system (the bpffs that holds " + bpffs +
                        "/sockdispatch must be mounted read-write to pin an "
                        "attachment)"));
  EXPECT_THAT(done.out, Not(HasSubstr("listening on")));
}

/*
 * The same read-only bpffs with --mode auto: the attachment serves in line mode (its state is
 * the scoreboard file on /run, which is writable), and the warning says why, naming EROFS.
 * A request is answered.
 */
TEST_F(AttachFaults, AReadOnlyBpffsLeavesTheAutoAttachServingInLineMode) {
  TempDir dir;
  const std::string bpffs = dir.path() + "/bpf";
  const std::string setup = mountReadOnlyBpffs(bpffs) + "; export SOCKDISPATCH_PIN_ROOT=" + bpffs +
                            "/sockdispatch; exec \"$@\"";
  auto attachment = Attachment::start(
      {"0", "--bind", "127.0.0.1", "--workers", "2", "--mode", "auto"}, 20s,
      {"/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", setup, "sh"});
  ASSERT_NE(attachment, nullptr);
  auto reply = fetch(attachment->port());
  ASSERT_TRUE(reply) << "fetch";
  EXPECT_EQ(reply->status, 200);
  EXPECT_EQ(attachment->stop(), 0);
  const std::string err = attachment->process().stderrText();
  EXPECT_THAT(err, HasSubstr("Failed to pin an attachment into " + bpffs +
                             "/sockdispatch: Read-only file system"));
  EXPECT_THAT(err, HasSubstr("serving in line mode"));
}

/*
 * Line mode's run directory is on a tmpfs of one page: the scoreboard file's blocks cannot be
 * reserved. attach exits 1 naming the file and ENOSPC; without the reservation, the first
 * write to the mapped file would have killed it with SIGBUS.
 */
TEST_F(AttachFaults, AFullRunDirectoryRefusesTheLineAttachWithExit1) {
  TempDir dir;
  const std::string run = dir.path() + "/run";
  auto done = attachInMountNamespace("mkdir " + run + "; mount -t tmpfs -o size=4k tmpfs " + run,
                                     "SOCKDISPATCH_RUN_ROOT=" + run + "/sockdispatch", "line");
  EXPECT_EQ(done.code, 1) << done.err << " (135 would be SIGBUS)";
  EXPECT_THAT(done.err,
              HasSubstr("attach: Failed to reserve " + std::to_string(scoreboardLayout().bytes) +
                        " bytes for scoreboard " + run + "/sockdispatch/"));
  EXPECT_THAT(done.err, HasSubstr("/scoreboard: No space left on device"));
  EXPECT_THAT(done.out, Not(HasSubstr("listening on")));
}

} // namespace
} // namespace sockdispatch::test
