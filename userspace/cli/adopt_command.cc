#include "adopt/adopt.h"
#include "bpf/names.h"
#include "commands.h"
#include "config/options.h"

#include <cstdio>
#include <memory>

namespace sockdispatch::cli {

Action addAdoptCommand(CLI::App &app) {
  struct Flags {
    int port = -1;
    int pid = 0;
    std::string bind;
    std::string policy = "least_conn";
    bool force = false;
    int intervalMs = 100;
    bool verbose = false;
  };
  auto flags = std::make_shared<Flags>();
  CLI::App *cmd = app.add_subcommand(
      "adopt", "Steer a running service's SO_REUSEPORT listeners on PORT, live, without a restart");
  cmd->footer(R"(Examples:
  sockdispatch adopt 80                      nginx with `listen 80 reuseport`
  sockdispatch adopt 443 --bind 10.0.0.5     one group of several on the port
  sockdispatch tune 80 --drain 2             then: no new connection for slot 2's worker
  sockdispatch detach 80                     give the group back to the kernel's hash

Finds the listeners that form the reuseport group on PORT, copies them from their processes
(pidfd_getfd: needs root, or CAP_SYS_PTRACE with CAP_BPF and CAP_NET_ADMIN), measures each
one's load in the kernel, and attaches the dispatch program to the group: from then on every
new connection goes where the policy says. The service keeps running untouched. adopt stays
in the foreground as the port's controller: status, tune, detach and Prometheus work as for
an attachment. It follows the service's reloads and new listeners; when the service closes
every listener, adopt exits 0. SIGTERM, SIGINT or `detach PORT` release the group: the
program is detached and the kernel's hash chooses again; no connection is refused or reset.
Exit codes: 0 released (or the service went away), 1 runtime failure, 2 bad flag, nothing to
adopt on PORT (no listener, not a reuseport group, several groups without --bind), another
BPF program attached (without --force), the port already attached, or copying the listeners
not permitted.)");
  cmd->add_option("port", flags->port, "The TCP port the service listens on")
      ->required()
      ->check(CLI::Range(1, 65535));
  cmd->add_option("--pid", flags->pid, "Only the listeners this process holds (e.g. a master)")
      ->check(CLI::Range(1, 1 << 22));
  cmd->add_option("--bind", flags->bind, "Only the listeners on this numeric address");
  cmd->add_option("--policy", flags->policy,
                  "skip_load, least_conn, p2c, round_robin, weighted or hash")
      ->capture_default_str()
      ->check([](const std::string &name) {
        return policyFromName(name)
                   ? std::string()
                   : "unknown policy '" + name + "' (expected one of: " + policyNames() + ")";
      });
  cmd->add_flag("--force", flags->force,
                "Replace a BPF program already attached to the group (never done silently)");
  cmd->add_option("--interval", flags->intervalMs,
                  "Milliseconds between scans of the group (new and closed listeners, workers)")
      ->check(CLI::Range(10, 10000))
      ->capture_default_str();
  cmd->add_flag("-v,--verbose", flags->verbose, "Debug logging");

  return [flags]() {
    AdoptOptions options;
    options.port = static_cast<uint16_t>(flags->port);
    if (flags->pid > 0) {
      options.pid = flags->pid;
    }
    options.bind = flags->bind;
    options.policy = *policyFromName(flags->policy);
    options.force = flags->force;
    options.interval = std::chrono::milliseconds(flags->intervalMs);
    options.verbose = flags->verbose;
    return runAdopt(options);
  };
}

} // namespace sockdispatch::cli
