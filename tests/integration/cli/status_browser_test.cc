// The status page in a real browser (Debian's headless chromium, driven over its DevTools
// protocol by tests/support/browser_check.py): it loads with no console error, its table
// shows every worker, and its charts have points after a few seconds of load. The screenshot
// it takes is kept where SOCKDISPATCH_SCREENSHOT_DIR says (docs/screenshots.sh sets it).
#include "support/load.h"
#include "support/nginx.h"
#include "support/process.h"
#include "support/temp_dir.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace sockdispatch::test {
namespace {

bool haveBrowser() {
  return ::access("/usr/bin/chromium-headless-shell", X_OK) == 0 ||
         ::access("/usr/bin/chromium", X_OK) == 0;
}

class StatusBrowser : public BpfTest {};

TEST_F(StatusBrowser, ThePageLoadsCleanShowsEveryWorkerAndDrawsTheLoad) {
  if (!haveBrowser()) {
    GTEST_SKIP() << "needs chromium-headless-shell (packaging/install-deps.sh installs it)";
  }
  const uint16_t statusPort = unusedPort();
  auto attachment = Attachment::start(
      {"0", "--bind", "127.0.0.1", "--workers", "4", "--status-port", std::to_string(statusPort)});
  ASSERT_TRUE(attachment);
  Load load(attachment->port(), 3, 2, 2000000, 90s);
  ASSERT_TRUE(load.waitFor(200));

  TempDir dir;
  std::string shot = dir.path() + "/status-page.png";
  Completed browsed = runCommand(
      {"/usr/bin/python3", std::string(SOCKDISPATCH_SOURCE_DIR) + "/tests/support/browser_check.py",
       "http://127.0.0.1:" + std::to_string(statusPort) + "/", "--screenshot", shot, "--samples",
       "5", "--timeout", "40"},
      90s);
  LoadTally tally = load.stop();
  ASSERT_TRUE(browsed.code == 0 || browsed.code == 1) << browsed.out << browsed.err;
  nlohmann::json report = nlohmann::json::parse(browsed.out, nullptr, false);
  ASSERT_FALSE(report.is_discarded()) << browsed.out << browsed.err;
  EXPECT_EQ(browsed.code, 0) << "the page drew 5 refreshes with points: " << report.dump();
  EXPECT_TRUE(report["errors"].empty()) << report["errors"].dump();
  EXPECT_EQ(report["rows"], nlohmann::json({0, 1, 2, 3})) << "a row per worker";
  const nlohmann::json &page = report["page"];
  ASSERT_TRUE(page.is_object()) << report.dump();
  EXPECT_EQ(page["errors"], 0) << page.dump();
  EXPECT_EQ(page["workers"], 4);
  // Open connections: a point per worker per refresh; requests/s from the second on.
  EXPECT_GE(page["chartPoints"].get<int>(), 4 * 5 + 4 * 4) << page.dump();
  EXPECT_EQ(tally.failures(), 0U) << tally.describe();

  std::ifstream png(shot, std::ios::binary);
  char magic[8] = {};
  png.read(magic, sizeof(magic));
  EXPECT_EQ(std::string(magic + 1, 3), "PNG") << "a screenshot was written";
  if (const char *keep = std::getenv("SOCKDISPATCH_SCREENSHOT_DIR"); keep != nullptr) {
    std::filesystem::copy_file(shot, std::string(keep) + "/status-page.png",
                               std::filesystem::copy_options::overwrite_existing);
  }
}

} // namespace
} // namespace sockdispatch::test
