#include "commands.h"
#include "config/options.h"
#include "control/status_report.h"
#include "core/listener_diag.h"

#include <algorithm>
#include <cstdio>
#include <memory>

namespace sockdispatch::cli {

namespace {

// Slots whose load the kernel measures count their accept queue in `open`: one sock_diag dump
// of the port's listeners gives each queue, so the report can show it apart. Without it (a
// failed dump, a listener not found) the numbers stay as read, and stderr says why.
// The kernel walks its whole listener hash for each family's dump, so IPv6 is dumped only
// when some slot's listener is not among the IPv4 ones.
Result<std::vector<ListenerInfo>> listenersOf(const AttachmentStatus &status) {
  auto listeners = dumpTcpListeners(status.port, AF_INET);
  if (!listeners) {
    return listeners;
  }
  for (const auto &[slot, cookie] : status.listenerCookies) {
    auto found =
        std::find_if(listeners->begin(), listeners->end(),
                     [cookie = cookie](const ListenerInfo &l) { return l.cookie == cookie; });
    if (found == listeners->end()) {
      auto v6 = dumpTcpListeners(status.port, AF_INET6);
      if (!v6) {
        return v6;
      }
      listeners->insert(listeners->end(), v6->begin(), v6->end());
      break;
    }
  }
  return listeners;
}

void splitKernelLoad(AttachmentStatus &status) {
  if (!status.listenerCookies.empty()) {
    auto listeners = listenersOf(status);
    if (listeners) {
      applyAcceptQueues(status, listeners.value());
    } else {
      status.notes.push_back(listeners.error().message());
    }
  }
  for (const std::string &note : status.notes) {
    std::fprintf(stderr,
                 "status: port %u: %s (open of a kernel-measured slot is shown with its accept "
                 "queue)\n",
                 status.port, note.c_str());
  }
}

} // namespace

Action addStatusCommand(CLI::App &app) {
  struct Flags {
    int port = -1;
    bool json = false;
    bool prometheus = false;
  };
  auto flags = std::make_shared<Flags>();
  CLI::App *cmd = app.add_subcommand("status", "Show attachments: workers, load, verdicts");
  cmd->footer(R"(Examples:
  sockdispatch status                 every attached port
  sockdispatch status 8080 --json     one port, as JSON (schema in docs/operations.md)
  sockdispatch status --prometheus    text exposition format, for a textfile collector

Reads the pinned maps under /sys/fs/bpf/sockdispatch; changes nothing. Without root,
members of the group sockdispatch may read attachments pinned while that group existed;
listing every port skips (and names) the ones this user may not read.
Exit codes: 0 shown, 1 state unreadable, 2 bad flag or port not attached.)");
  cmd->add_option("port", flags->port, "Show only this port")->check(CLI::Range(0, 65535));
  auto *json = cmd->add_flag("--json", flags->json, "JSON output");
  cmd->add_flag("--prometheus", flags->prometheus, "Prometheus text exposition output")
      ->excludes(json);

  return [flags]() {
    std::vector<uint16_t> ports;
    if (flags->port >= 0) {
      ports.push_back(static_cast<uint16_t>(flags->port));
    } else {
      ports = attachedPorts();
    }
    std::vector<AttachmentStatus> all;
    bool listing = flags->port < 0;
    for (uint16_t port : ports) {
      auto status = readStatus(port);
      if (!status) {
        int code = status.error().code;
        // Listing every port: one that went away meanwhile is not shown; one this user may
        // not read (root-only pins), or of another map ABI version, is named and skipped.
        if (listing && code == ENOENT) {
          continue;
        }
        if (listing) {
          std::fprintf(stderr, "status: skipping port %u: %s\n", port,
                       status.error().message().c_str());
          continue;
        }
        if (code == ENOENT) {
          std::fprintf(stderr, "status: port %u is not attached\n", port);
          return kExitUsage;
        }
        std::fprintf(stderr, "status: %s\n", status.error().message().c_str());
        return kExitFailure;
      }
      splitKernelLoad(status.value());
      all.push_back(std::move(status.value()));
    }
    std::string text;
    if (flags->prometheus) {
      text = formatPrometheus(all);
    } else if (flags->json) {
      text = flags->port >= 0 ? formatJson(all.front()) : formatJson(all);
    } else if (all.empty()) {
      text = "no attachments\n";
    } else {
      for (size_t i = 0; i < all.size(); ++i) {
        text += (i > 0 ? "\n" : "") + formatTable(all[i]);
      }
    }
    std::fputs(text.c_str(), stdout);
    return kExitOk;
  };
}

} // namespace sockdispatch::cli
