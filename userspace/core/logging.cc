#include "core/logging.h"

#include <event2/event.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

namespace sockdispatch {

namespace {

void libeventLog(int severity, const char *message) {
  switch (severity) {
  case EVENT_LOG_ERR: spdlog::error("libevent: {}", message); break;
  case EVENT_LOG_WARN: spdlog::warn("libevent: {}", message); break;
  default: spdlog::debug("libevent: {}", message); break;
  }
}

} // namespace

void setupLogging(const std::string &role, bool verbose) {
  static bool created = false;
  if (!created) {
    spdlog::set_default_logger(spdlog::stderr_color_mt("sockdispatch"));
    event_set_log_callback(libeventLog);
    created = true;
  }
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [" + role + " " + std::to_string(::getpid()) +
                      "] %v");
  spdlog::set_level(verbose ? spdlog::level::debug : spdlog::level::info);
  spdlog::flush_on(spdlog::level::info);
}

} // namespace sockdispatch
