#include "commands.h"
#include "config/options.h"
#include "control/pinned_attachment.h"
#include "control/tune.h"

#include <cstdio>
#include <memory>
#include <variant>

namespace sockdispatch::cli {

namespace {

int refuse(const Refusal &refusal) {
  std::fprintf(stderr, "tune: %s\n", refusal.reason.c_str());
  return kExitUsage;
}

} // namespace

Action addTuneCommand(CLI::App &app) {
  struct Flags {
    int port = -1;
    TuneFlags tune;
  };
  auto flags = std::make_shared<Flags>();
  CLI::App *cmd = app.add_subcommand("tune", "Change a running attachment's balancing, live");
  cmd->footer(R"(Examples:
  sockdispatch tune 8080 --policy least_conn
  sockdispatch tune 8080 --drain 2                  slot 2 gets no new connections
  sockdispatch tune 8080 --policy weighted --weight 0=1 --weight 3=2 --undrain 2

Writes the pinned maps under /sys/fs/bpf/sockdispatch/PORT (needs root); the next
connection uses the change, nothing restarts. Every value is checked before anything is
written. Changes last as long as the attachment (a new attach starts from its
--policy, least_conn by default).
Exit codes: 0 changed, 1 state unwritable or stale, 2 bad flag or value, port not attached.)");
  cmd->add_option("port", flags->port, "The attached TCP port")
      ->required()
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--policy", flags->tune.policy,
                  "skip_load, least_conn, p2c, round_robin, weighted or hash");
  cmd->add_option("--weight", flags->tune.weights,
                  "SLOT=WEIGHT for the weighted policy, 0 to " + std::to_string(kMaxWeight) +
                      " (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--drain", flags->tune.drain, "Choose SLOT for no new connection (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--undrain", flags->tune.undrain, "Choose SLOT again (repeatable)")
      ->allow_extra_args(false);

  return [flags]() {
    auto parsed = parseTuneFlags(flags->tune);
    if (const auto *refused = std::get_if<Refusal>(&parsed)) {
      return refuse(*refused);
    }
    const TuneRequest &request = std::get<TuneRequest>(parsed);
    if (request.empty()) {
      return refuse({"nothing to change: give --policy, --weight, --drain or --undrain"});
    }
    auto port = static_cast<uint16_t>(flags->port);
    auto locked = openLocked(port, true, true);
    if (!locked) {
      const Error &error = locked.error();
      if (error.code == ENOENT) {
        return refuse({"port " + std::to_string(port) + " is not attached"});
      }
      bool denied = error.code == EACCES || error.code == EPERM;
      std::fprintf(stderr, "tune: %s%s\n", error.message().c_str(),
                   denied ? " (tune writes the pinned maps: run it as root)" : "");
      return kExitFailure;
    }
    const sd_config &config = locked->pins.config();
    uint32_t master = loadRelaxed(config.master_pid);
    if (!processAlive(master) || !locked->pins.heldBy(master).value_or(true)) {
      std::fprintf(stderr,
                   "tune: port %u is not served: its master pid %u is not running (stale "
                   "state; 'sockdispatch detach %u' removes it)\n",
                   port, master, port);
      return kExitFailure;
    }
    if (auto refused = checkTuneRequest(request, config)) {
      return refuse(*refused);
    }
    Scoreboard board = locked->pins.scoreboard();
    uint64_t before = loadRelaxed(config.generation);
    for (const auto &change : applyTune(request, board)) {
      std::printf("%s\n", change.c_str());
    }
    std::printf("port %u: generation %llu -> %llu\n", port, static_cast<unsigned long long>(before),
                static_cast<unsigned long long>(loadRelaxed(config.generation)));
    return kExitOk;
  };
}

} // namespace sockdispatch::cli
