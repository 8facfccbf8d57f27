#include "commands.h"
#include "config/options.h"
#include "control/status_report.h"

#include <cstdio>
#include <memory>

namespace sockdispatch::cli {

namespace {

void printNotes(const AttachmentStatus &status) {
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
      printNotes(status.value());
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
