#pragma once

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace sockdispatch::test {

// Captures what spdlog's default logger writes while it lives (one message per line, no
// pattern), then puts the previous logger back.
class LogCapture {
public:
  LogCapture() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(stream_);
    sink->set_pattern("%l %v");
    auto logger = std::make_shared<spdlog::logger>("capture", sink);
    logger->set_level(spdlog::level::debug);
    spdlog::set_default_logger(logger);
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }
  LogCapture(const LogCapture &) = delete;
  LogCapture &operator=(const LogCapture &) = delete;

  // The lines that contain `text`.
  [[nodiscard]] std::vector<std::string> linesWith(const std::string &text) const {
    std::vector<std::string> found;
    std::istringstream lines(stream_.str());
    for (std::string line; std::getline(lines, line);) {
      if (line.find(text) != std::string::npos) {
        found.push_back(line);
      }
    }
    return found;
  }

private:
  std::ostringstream stream_;
  std::shared_ptr<spdlog::logger> previous_;
};

} // namespace sockdispatch::test
