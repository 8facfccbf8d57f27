// `attach` where the file systems it writes its state to refuse: the real binary, in a mount
// namespace of the test's own (unshare), so the host's mounts are untouched. A bpffs mounted
// read-only refuses the pins; a run directory on a full tmpfs cannot hold line mode's
// scoreboard file. Each is refused at start-up with a message naming the file system's
// error and exit 1 (a runtime failure), never a crash later.
#include "line/shared_scoreboard.h"
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
  return runCommand({"unshare", "--mount", "--propagation", "private", "sh", "-c", script});
}

class ReadOnlyBpffs : public AttachFaults, public testing::WithParamInterface<std::string> {};

/*
 * bpffs is mounted, holds the base directory, and is read-only: the program loads, but its
 * pins cannot be created. attach says so, with the remedy, and exits 1; --mode auto does the
 * same (the program runs here; it is the state that cannot be kept).
 */
TEST_P(ReadOnlyBpffs, RefusesTheAttachWithExit1) {
  TempDir dir;
  const std::string bpffs = dir.path() + "/bpf";
  auto done = attachInMountNamespace("mkdir " + bpffs + "; mount -t bpf bpf " + bpffs +
                                         "; mkdir " + bpffs + "/sockdispatch; mount --bind -o ro " +
                                         bpffs + " " + bpffs,
                                     "SOCKDISPATCH_PIN_ROOT=" + bpffs + "/sockdispatch", GetParam());
  EXPECT_EQ(done.code, 1) << done.err;
  EXPECT_THAT(done.err, HasSubstr("attach: Failed to create directory " + bpffs +
                                  "/sockdispatch/staging-"));
  EXPECT_THAT(done.err, HasSubstr(": Read-only file system (the bpffs that holds " + bpffs +
                                  "/sockdispatch must be mounted read-write to pin an "
                                  "attachment)"));
  EXPECT_THAT(done.out, Not(HasSubstr("listening on")));
}

INSTANTIATE_TEST_SUITE_P(Modes, ReadOnlyBpffs, testing::Values("ebpf", "auto"),
                         [](const testing::TestParamInfo<std::string> &info) {
                           return info.param;
                         });

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
  EXPECT_THAT(done.err, HasSubstr("attach: Failed to reserve " +
                                  std::to_string(scoreboardLayout().bytes) +
                                  " bytes for scoreboard " + run + "/sockdispatch/"));
  EXPECT_THAT(done.err, HasSubstr("/scoreboard: No space left on device"));
  EXPECT_THAT(done.out, Not(HasSubstr("listening on")));
}

} // namespace
} // namespace sockdispatch::test
