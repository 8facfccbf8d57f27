#pragma once

#include <string_view>

namespace sockdispatch {

// The systemd readiness protocol (sd_notify(3)) for the master, as `Type=notify` expects.
// Each call sends one datagram to $NOTIFY_SOCKET and returns whether it was sent; without
// $NOTIFY_SOCKET (not started by systemd) it sends nothing and returns false. A failure to
// send is logged, never fatal: the service runs the same without a supervisor.

// READY=1 with a STATUS= line: every worker serves.
bool notifyReady(std::string_view status);
// RELOADING=1 (with MONOTONIC_USEC=, as systemd 253's Type=notify-reload asks): a reload
// began. Send notifyReady() again when it is done.
bool notifyReloading();
// STOPPING=1: the service is stopping.
bool notifyStopping();
// STATUS=<text> alone, shown by `systemctl status`.
bool notifyStatus(std::string_view status);

} // namespace sockdispatch
