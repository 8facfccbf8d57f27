#include "bpf/kernel_features.h"
#include "commands.h"
#include "config/options.h"
#include "control/agent_weight.h"
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

// What the agent port of the attachment answers now (docs/fleet.md, "The weight"); down when
// its master is gone.
HostAnswer answerOf(const AttachmentStatus &status) {
  if (!status.masterAlive) {
    return {HostState::down, 0, "the master is not running"};
  }
  return hostAnswer(hostLoadFrom(status.config, status.workers, status.readAtNs, processStopped));
}

// status PORT --weight [--keepalived]: the weight on stdout; under --keepalived the exit status
// of keepalived's MISC_CHECK misc_dynamic (2 + weight, 1 down).
int showWeight(uint16_t port, bool keepalived) {
  auto status = readStatus(port);
  if (!status) {
    bool missing = status.error().code == ENOENT;
    std::fprintf(stderr, "status: %s\n",
                 missing ? ("port " + std::to_string(port) + " is not attached").c_str()
                         : status.error().message().c_str());
    if (keepalived) {
      return 1; // down
    }
    return missing ? kExitUsage : kExitFailure;
  }
  HostAnswer answer = answerOf(status.value());
  std::printf("%u\n", answer.state == HostState::up ? answer.weightPercent : 0U);
  if (answer.state != HostState::up) {
    std::fprintf(stderr, "status: port %u: %s\n", port,
                 answer.state == HostState::drain ? "draining (leaving)"
                                                  : ("down: " + answer.reason).c_str());
  }
  return keepalived ? keepalivedStatus(answer) : kExitOk;
}

} // namespace

Action addStatusCommand(CLI::App &app) {
  struct Flags {
    int port = -1;
    bool json = false;
    bool prometheus = false;
    bool weight = false;
    bool keepalived = false;
  };
  auto flags = std::make_shared<Flags>();
  CLI::App *cmd = app.add_subcommand("status", "Show attachments: workers, load, verdicts");
  cmd->footer(R"(Examples:
  sockdispatch status                 every attached port
  sockdispatch status 8080 --json     one port, as JSON (schema in docs/operations.md)
  sockdispatch status --prometheus    text exposition format, for a textfile collector
  sockdispatch status 8080 --weight   the host's weight for a balancer in front, 0..100
  sockdispatch status 8080 --keepalived
                                      the same, as keepalived's MISC_CHECK misc_dynamic
                                      exit status (docs/fleet.md)

Reads the pinned maps under /sys/fs/bpf/sockdispatch; changes nothing. Without root,
members of the group sockdispatch may read attachments pinned while that group existed;
listing every port skips (and names) the ones this user may not read.
--weight prints what the agent port (attach --agent-port) answers, as a number: the
percentage of the host's worker capacity that is free (0 while draining or down).
Exit codes: 0 shown, 1 state unreadable, 2 bad flag or port not attached. With
--keepalived: 2 + weight (2..102) while up, 2 (weight 0) while draining, 1 when down or not
attached; 0 is never used (keepalived reads it as "keep the weight").)");
  cmd->add_option("port", flags->port, "Show only this port")->check(CLI::Range(0, 65535));
  auto *json = cmd->add_flag("--json", flags->json, "JSON output");
  auto *prometheus =
      cmd->add_flag("--prometheus", flags->prometheus, "Prometheus text exposition output")
          ->excludes(json);
  cmd->add_flag("--weight", flags->weight,
                "Print the host's weight for a balancer in front (needs PORT)")
      ->excludes(json)
      ->excludes(prometheus);
  cmd->add_flag("--keepalived", flags->keepalived,
                "--weight, and exit with keepalived's misc_dynamic status (2 + weight; 1 down)")
      ->excludes(json)
      ->excludes(prometheus);

  return [flags]() {
    if (flags->weight || flags->keepalived) {
      if (flags->port < 0) {
        std::fprintf(stderr, "status: %s needs a PORT\n",
                     flags->keepalived ? "--keepalived" : "--weight");
        return kExitUsage;
      }
      return showWeight(static_cast<uint16_t>(flags->port), flags->keepalived);
    }
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
      // What the kernel offers the program (a refused load names its cause in the log).
      text += "\n" + describeKernelFeatures(probeKernelFeatures()) + "\n";
    }
    std::fputs(text.c_str(), stdout);
    return kExitOk;
  };
}

} // namespace sockdispatch::cli
