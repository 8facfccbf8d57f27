#include "process/notify.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <cstring>
#include <ctime>
#include <string>

namespace sockdispatch {

namespace {

bool send(const std::string &state) {
  // $NOTIFY_SOCKET stays set (unset_environment = 0): the master sends more than one state.
  // Workers never send; systemd's NotifyAccess=main would ignore them anyway.
  int sent = ::sd_notify(0, state.c_str());
  if (sent < 0) {
    spdlog::warn("Failed to notify systemd ({}): {}", state.substr(0, state.find('\n')),
                 std::strerror(-sent));
    return false;
  }
  return sent > 0;
}

} // namespace

bool notifyReady(std::string_view status) {
  return send(fmt::format("READY=1\nSTATUS={}", status));
}

bool notifyReloading() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  uint64_t usec =
      static_cast<uint64_t>(now.tv_sec) * 1000000 + static_cast<uint64_t>(now.tv_nsec) / 1000;
  return send(fmt::format("RELOADING=1\nMONOTONIC_USEC={}", usec));
}

bool notifyStopping() {
  return send("STOPPING=1");
}

bool notifyStatus(std::string_view status) {
  return send(fmt::format("STATUS={}", status));
}

} // namespace sockdispatch
