// `sockdispatch top` against a running attachment: the full-screen view in a real terminal
// (tmux), its keys, and the plain-text fallback.
#include "support/load.h"
#include "support/process.h"
#include "support/temp_dir.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>

namespace sockdispatch::test {
namespace {

bool haveTmux() {
  return ::access("/usr/bin/tmux", X_OK) == 0;
}

// A tmux server of the test's own (its socket in the test's directory).
class Tmux {
public:
  explicit Tmux(const TempDir &dir) : socket_(dir.path() + "/tmux.sock") {}
  ~Tmux() { (void)run({"kill-server"}); }
  Tmux(const Tmux &) = delete;
  Tmux &operator=(const Tmux &) = delete;

  Completed run(const std::vector<std::string> &args) const {
    std::vector<std::string> argv{"/usr/bin/tmux", "-S", socket_};
    argv.insert(argv.end(), args.begin(), args.end());
    return runCommand(argv, 10s);
  }
  [[nodiscard]] std::string capture() const { return run({"capture-pane", "-p", "-t", "top"}).out; }

private:
  std::string socket_;
};

// The requests/s column of every row naming a pid of the attachment, in order.
std::vector<std::string> requestRates(const std::string &screen) {
  std::vector<std::string> rates;
  static const std::regex row(R"(^\s+\d+\s+\d+ running\*?\s+\d+\s+\d+\s+\d+\s+\S+\s+(\S+))");
  std::istringstream lines(screen);
  std::string line;
  while (std::getline(lines, line)) {
    std::smatch match;
    if (std::regex_search(line, match, row)) {
      rates.push_back(match[1]);
    }
  }
  return rates;
}

class TopCli : public BpfTest {};

TEST_F(TopCli, TheLiveViewShowsEveryWorkerWithMovingRatesAndQExits) {
  if (!haveTmux()) {
    GTEST_SKIP() << "needs tmux (packaging/install-deps.sh installs it)";
  }
  auto attachment = Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "3"});
  ASSERT_TRUE(attachment);
  Load load(attachment->port(), 2, 2, 200000, 60s);
  ASSERT_TRUE(load.waitFor(200));
  TempDir dir;
  Tmux tmux(dir);
  std::string exitFile = dir.path() + "/exit";
  std::string command = std::string(SOCKDISPATCH_BINARY) + " top " +
                        std::to_string(attachment->port()) + " --interval 0.3; echo $? > " +
                        exitFile + "; sleep 30";
  ASSERT_EQ(tmux.run({"new-session", "-d", "-s", "top", "-x", "160", "-y", "40", command}).code, 0);
  std::string first;
  ASSERT_TRUE(eventually(
      [&] {
        first = tmux.capture();
        auto rates = requestRates(first);
        return rates.size() == 3 &&
               std::any_of(rates.begin(), rates.end(), [](const auto &r) { return r != "0.0"; });
      },
      10s))
      << first;
  EXPECT_NE(first.find("ebpf  least_conn"), std::string::npos) << first;
  if (const char *keep = std::getenv("SOCKDISPATCH_SCREENSHOT_DIR"); keep != nullptr) {
    std::ofstream(std::string(keep) + "/top.txt") << first; // docs/screenshots.sh draws it
  }
  EXPECT_NE(first.find("[#"), std::string::npos) << "bars drawn: " << first;
  std::string later;
  EXPECT_TRUE(eventually(
      [&] {
        later = tmux.capture();
        return requestRates(later).size() == 3 && requestRates(later) != requestRates(first);
      },
      10s))
      << "the rates move between refreshes:\n"
      << first << "\n"
      << later;
  ASSERT_EQ(tmux.run({"send-keys", "-t", "top", "?"}).code, 0);
  EXPECT_TRUE(
      eventually([&] { return tmux.capture().find("keys:  q  quit") != std::string::npos; }));
  ASSERT_EQ(tmux.run({"send-keys", "-t", "top", "x", "p"}).code, 0);
  EXPECT_TRUE(eventually(
      [&] { return tmux.capture().find("sorted by open+queued") != std::string::npos; }));
  ASSERT_EQ(tmux.run({"send-keys", "-t", "top", "q"}).code, 0);
  std::string code;
  EXPECT_TRUE(eventually(
      [&] {
        std::ifstream in(exitFile);
        return static_cast<bool>(in >> code);
      },
      5s));
  EXPECT_EQ(code, "0");
  LoadTally tally = load.stop();
  EXPECT_EQ(tally.failures(), 0U) << tally.describe();
}

TEST_F(TopCli, WithoutATerminalItPrintsPlainTextBlocks) {
  auto attachment = Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "2"});
  ASSERT_TRUE(attachment);
  Load load(attachment->port(), 1, 1, 200000, 60s);
  ASSERT_TRUE(load.waitFor(100));
  Completed done =
      runSockdispatch({"top", std::to_string(attachment->port()), "-n", "2", "--interval", "0.2"});
  EXPECT_EQ(done.code, 0) << done.err;
  EXPECT_EQ(done.out.find('\x1b'), std::string::npos) << "no escape codes";
  size_t blocks = 0;
  for (size_t at = done.out.find("sockdispatch top "); at != std::string::npos;
       at = done.out.find("sockdispatch top ", at + 1)) {
    ++blocks;
  }
  EXPECT_EQ(blocks, 2U) << done.out;
  EXPECT_EQ(requestRates(done.out).size(), 4U) << done.out;
  (void)load.stop();
}

TEST_F(TopCli, BadFlagsAndUnknownPortsAreUsageErrors) {
  for (const auto &args : std::vector<std::vector<std::string>>{{"top", "--interval", "0"},
                                                                {"top", "--interval", "abc"},
                                                                {"top", "70000"},
                                                                {"top", "-n", "-1"}}) {
    Completed done = runSockdispatch(args);
    EXPECT_EQ(done.code, 2) << args.back() << ": " << done.err;
  }
  Completed missing = runSockdispatch({"top", "1", "-n", "1"});
  EXPECT_EQ(missing.code, 2);
  EXPECT_NE(missing.err.find("port 1 is not attached"), std::string::npos) << missing.err;
}

} // namespace
} // namespace sockdispatch::test
