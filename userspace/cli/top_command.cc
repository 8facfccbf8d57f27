#include "commands.h"
#include "config/options.h"
#include "control/status_report.h"
#include "control/top_view.h"
#include "top_screen.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <thread>

namespace sockdispatch::cli {

namespace {

using Clock = std::chrono::steady_clock;

// The two latest samples of the attachments shown (one port, or all of them).
class TopSampler {
public:
  explicit TopSampler(std::optional<uint16_t> port) : port_(port) {}

  // Takes a new sample. With a port: ENOENT once it is not attached any more.
  Result<void> refresh() {
    before_ = std::move(now_);
    beforeAt_ = nowAt_;
    now_.clear();
    nowAt_ = Clock::now();
    std::vector<uint16_t> ports = port_ ? std::vector<uint16_t>{*port_} : attachedPorts();
    for (uint16_t port : ports) {
      auto status = readStatus(port);
      if (!status) {
        if (port_) {
          return status.error();
        }
        continue; // gone meanwhile, or not ours to read
      }
      splitKernelLoad(status.value());
      now_.emplace(port, std::move(status.value()));
    }
    return {};
  }

  [[nodiscard]] std::vector<TopFrame> frames(TopSort sort) const {
    double seconds = std::chrono::duration<double>(nowAt_ - beforeAt_).count();
    std::vector<TopFrame> frames;
    for (const auto &[port, status] : now_) {
      auto old = before_.find(port);
      frames.push_back(
          makeTopFrame(status, old == before_.end() ? nullptr : &old->second, seconds, sort));
    }
    return frames;
  }

private:
  std::optional<uint16_t> port_;
  std::map<uint16_t, AttachmentStatus> now_;
  std::map<uint16_t, AttachmentStatus> before_;
  Clock::time_point nowAt_;
  Clock::time_point beforeAt_;
};

int reportGone(const Error &error, uint16_t port) {
  if (error.code == ENOENT) {
    std::fprintf(stderr, "top: port %u is not attached\n", port);
    return kExitUsage;
  }
  std::fprintf(stderr, "top: %s\n", error.message().c_str());
  return kExitFailure;
}

} // namespace

Action addTopCommand(CLI::App &app) {
  struct Flags {
    int port = -1;
    double interval = 1.0;
    int iterations = 0;
  };
  auto flags = std::make_shared<Flags>();
  CLI::App *cmd = app.add_subcommand("top", "Watch attachments live: workers, load, rates");
  cmd->footer(R"(Examples:
  sockdispatch top                  every attachment, refreshed every second
  sockdispatch top 8080 --interval 0.5
  sockdispatch top 8080 -n 3 > log  plain text, three refreshes (stdout not a terminal)

A full-screen view of the pinned state: per worker its state, open and queued connections
(as numbers and bars), accepted connections and requests per second between refreshes; per
attachment its mode, policy and the program's verdicts per second. Keys: q quits, p sorts by
the next column, ? shows help. When stdout is not a terminal it prints plain text, one
block per refresh. Reads like status (members of the group sockdispatch need no root);
changes nothing.
Exit codes: 0 quit (or -n refreshes done), 1 state unreadable, 2 bad flag or port not
attached.)");
  cmd->add_option("port", flags->port, "Show only this port")->check(CLI::Range(0, 65535));
  cmd->add_option("--interval", flags->interval, "Seconds between refreshes (0.1 to 60)")
      ->check(CLI::Range(0.1, 60.0))
      ->capture_default_str();
  cmd->add_option("-n,--iterations", flags->iterations,
                  "Stop after N refreshes (0: until q, or forever as plain text)")
      ->check(CLI::Range(0, 1000000));

  return [flags]() {
    std::optional<uint16_t> port;
    if (flags->port >= 0) {
      port = static_cast<uint16_t>(flags->port);
    }
    TopSampler sampler(port);
    if (auto first = sampler.refresh(); !first) {
      return reportGone(first.error(), port.value_or(0));
    }
    auto interval = std::chrono::milliseconds(static_cast<int64_t>(flags->interval * 1000));
    if (::isatty(STDOUT_FILENO) != 0 && flags->iterations == 0) {
      int code = kExitOk;
      int exit = runTopScreen(
          [&] {
            if (auto refreshed = sampler.refresh(); !refreshed && code == kExitOk) {
              code = reportGone(refreshed.error(), port.value_or(0));
            }
          },
          [&](TopSort sort) { return sampler.frames(sort); }, interval);
      return code != kExitOk ? code : exit;
    }
    // Plain text: the first block once the first interval's rates exist.
    for (int shown = 0; flags->iterations == 0 || shown < flags->iterations; ++shown) {
      std::this_thread::sleep_for(interval);
      if (auto refreshed = sampler.refresh(); !refreshed) {
        return reportGone(refreshed.error(), port.value_or(0));
      }
      std::fputs((formatTopPlain(sampler.frames(TopSort::kSlot), TopSort::kSlot) + "\n").c_str(),
                 stdout);
      std::fflush(stdout);
    }
    return kExitOk;
  };
}

} // namespace sockdispatch::cli
