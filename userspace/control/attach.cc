#include "control/attach.h"

#include "bpf/dispatch_program.h"
#include "bpf/foreign_load.h"
#include "bpf/kernel_features.h"
#include "bpf/names.h"
#include "bpf/pin_dir.h"
#include "control/agent_responder.h"
#include "control/attachment_pins.h"
#include "control/orphan_retirement.h"
#include "control/pinned_attachment.h"
#include "control/status_server.h"
#include "core/logging.h"
#include "dispatch/listener.h"
#include "dispatch/reuseport_dispatch.h"
#include "line/line_dispatch.h"
#include "line/shared_scoreboard.h"
#include "process/exec_worker_kind.h"
#include "process/master.h"
#include "process/notify.h"
#include "process/worker_kind.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <optional>
#include <stdexcept>

namespace sockdispatch {

namespace {

// A start-up failure: the message for the operator and the exit code it maps to.
struct StartupError : std::runtime_error {
  StartupError(int exitCode, const std::string &message)
      : std::runtime_error(message), code(exitCode) {}
  int code;
};

// Past their shutdown timeout, the previous master's workers get this long before they are
// killed (as the master's own do: its stop timer's second and the kill grace).
constexpr std::chrono::seconds kOrphanKillGrace{3};

[[noreturn]] void fail(const Error &error, int code = kExitFailure) {
  throw StartupError(code, error.message());
}

// Refuses a port some live master holds; removes the pins a dead master left behind, unless
// its workers still serve: then they are returned in `orphans`, for a takeover. (A line mode
// attachment's scoreboard file is checked when it is created: one in use is refused, one left
// by a dead master replaced.)
void claimPortOrFail(uint16_t port, Orphans *orphans = nullptr) {
  if (auto claimed = claimPort(port, orphans); !claimed) {
    const Error &error = claimed.error();
    if (error.code == EADDRINUSE) {
      throw StartupError(kExitUsage, error.detail);
    }
    throw StartupError(kExitFailure, error.code == 0 ? error.detail : error.message());
  }
}

struct Prepared {
  ListenerGroup listeners;
  std::unique_ptr<DispatchProgram> program;    // null in line mode
  std::optional<SharedScoreboard> sharedBoard; // line mode's scoreboard
  std::string pinDir;                          // eBPF mode's pins
  std::string fallbackReason;                  // why auto mode serves in line mode
  std::unique_ptr<StatusServer> statusServer;  // --status-port's
  Orphans orphans;                             // a dead master's workers, taken over
};

void writeConfig(sd_config *config, const AttachOptions &options, uint16_t port, sd_mode mode) {
  config->abi_version = SD_ABI_VERSION;
  config->policy =
      options.policy < SD_NR_POLICIES ? options.policy : static_cast<__u32>(SD_POLICY_LEAST_CONN);
  config->nr_slots = static_cast<__u32>(initialWorkers(options));
  config->mode = mode;
  config->master_pid = static_cast<__u32>(::getpid());
  config->port = port;
  config->generation = 1;
  config->agent_capacity = effectiveAgentCapacity(options);
}

void prepareEbpf(Prepared &prepared, const AttachOptions &options) {
  Scoreboard board = prepared.program->scoreboard();
  uint16_t port = prepared.listeners.address.port();
  writeConfig(board.config(), options, port, SD_MODE_EBPF);
  const bool takeover = !prepared.orphans.workers.empty();

  // Attach before listen(): no SYN is ever hashed past the program. Taking over, the group
  // exists and its program steers to the orphans: the new listeners join it by listen(), go
  // into the new sockarray, and only then does the new program replace the old one (through
  // a member of the group: a socket that does not listen yet is in no group).
  if (!takeover) {
    if (auto attached = prepared.program->attachTo(prepared.listeners.sockets[0].get());
        !attached) {
      fail(attached.error());
    }
  }
  if (auto listening = listenAll(prepared.listeners, options.backlog); !listening) {
    fail(listening.error());
  }
  for (uint32_t slot = 0; slot < prepared.listeners.sockets.size(); ++slot) {
    if (auto set = prepared.program->setSocket(slot, prepared.listeners.sockets[slot].get());
        !set) {
      fail(set.error());
    }
  }
  if (takeover) {
    if (auto attached = prepared.program->attachTo(prepared.listeners.sockets[0].get());
        !attached) {
      fail(attached.error());
    }
  }

  auto published = publishPins(*prepared.program, port);
  if (!published) {
    fail(published.error());
  }
  prepared.pinDir = std::move(published.value());
}

void prepareLine(Prepared &prepared, const AttachOptions &options) {
  uint16_t port = prepared.listeners.address.port();
  sd_config initial{};
  writeConfig(&initial, options, port, SD_MODE_LINE);
  auto board = SharedScoreboard::create(port, initial, !prepared.orphans.workers.empty());
  if (!board) {
    throw StartupError(board.error().code == EEXIST ? kExitUsage : kExitFailure,
                       board.error().message());
  }
  prepared.sharedBoard.emplace(std::move(board.value()));
  if (auto listening = listenAll(prepared.listeners, options.backlog); !listening) {
    fail(listening.error());
  }
}

// The status port, bound before any pin is published: a port in use refuses the start.
std::unique_ptr<StatusServer> openStatusServer(const AttachOptions &options, uint16_t port) {
  auto address = parseAddress(options.statusBind, options.statusPort);
  if (!address) {
    throw StartupError(kExitUsage, "--status-bind " + options.statusBind +
                                       " is not a numeric IPv4 or IPv6 address");
  }
  auto server = StatusServer::open(*address, ownAttachmentSource(port));
  if (!server) {
    fail(server.error());
  }
  return std::move(server.value());
}

// The workers of a dead master still serve the port (docs/design/takeover.md): the new master
// takes them over only on their address, and eBPF workers only in eBPF mode (a line has no
// program to migrate their queues with); then it replaces their state.
void takeOverOrFail(Prepared &prepared, const SocketAddress &address, bool line) {
  const Orphans &orphans = prepared.orphans;
  const uint16_t port = address.port();
  const std::string workers =
      std::to_string(orphans.workers.size()) + " worker" + (orphans.workers.size() == 1 ? "" : "s");
  const std::string who = workers + " of master pid " + std::to_string(orphans.masterPid);
  if (line && !orphans.line) {
    throw StartupError(kExitUsage, "port " + std::to_string(port) + " is still served by " + who +
                                       " (ebpf mode), which a line mode attachment cannot "
                                       "take over; attach in ebpf mode, or run `sockdispatch "
                                       "detach " +
                                       std::to_string(port) + "` first");
  }
  if (orphans.address.toString() != address.toString()) {
    throw StartupError(kExitUsage, "port " + std::to_string(port) + " is still served by " + who +
                                       " on " + orphans.address.toString() + ", not on " +
                                       address.toString() +
                                       "; attach with --bind of that address to take them over, "
                                       "or run `sockdispatch detach " +
                                       std::to_string(port) + "` first");
  }
  spdlog::info("port {}: master pid {} is gone and {} still serve; taking them over: new "
               "workers start beside them, and they leave once these serve",
               port, orphans.masterPid, workers);
  // Line mode's state (the scoreboard file) is replaced when the new one is created; an eBPF
  // attachment taking over a line leaves it to the orphans, which hold it until they leave,
  // and joins the line's listener to its group rather than keep a copy: held here, the copy
  // would keep it listening after the orphans leave, with nobody to accept.
  if (!line) {
    prepared.orphans.listener.reset();
  }
  if (!orphans.line) {
    if (auto removed = removePinDir(pinDirFor(port)); !removed) {
      fail(removed.error());
    }
  }
}

Prepared prepare(const AttachOptions &options) {
  auto address = parseAddress(options.bind, options.port);
  if (!address) {
    throw StartupError(kExitUsage,
                       "--bind " + options.bind + " is not a numeric IPv4 or IPv6 address");
  }
  Prepared prepared;
  if (options.mode != DispatchModeOption::kLine) {
    // What this kernel offers, before the load that may fail for want of it.
    spdlog::info("{}", describeKernelFeatures(probeKernelFeatures()));
    quietLibbpfWarnings(options.mode == DispatchModeOption::kAuto);
    auto program = loadDispatchProgram();
    quietLibbpfWarnings(false);
    if (!program && (options.mode == DispatchModeOption::kEbpf || !options.command.empty())) {
      // A COMMAND's workers accept on their own listeners: there is no line to fall back to.
      fail(program.error());
    }
    if (program) {
      prepared.program = std::move(program.value());
    } else {
      prepared.fallbackReason = program.error().message();
    }
  }
  const bool line = prepared.program == nullptr;

  // One attach at a time decides who holds a port (the pins' base directory in eBPF mode,
  // the run directory's in line mode).
  std::optional<DirLock> lock;
  if (!line) {
    auto locked = DirLock::acquire(pinBaseDir(), true);
    if (!locked) {
      fail(locked.error());
    }
    lock.emplace(std::move(locked.value()));
  }
  if (options.port != 0) {
    claimPortOrFail(options.port, &prepared.orphans);
    if (!prepared.orphans.workers.empty()) {
      takeOverOrFail(prepared, *address, line);
    } else if (portHasListener(options.port)) {
      throw StartupError(kExitFailure, "port " + std::to_string(options.port) +
                                           " is already in use by another listener");
    }
  }
  // Line mode accepts on one socket (a group of one: SO_REUSEPORT stays on, so a reload
  // could join it, and the same code binds both modes).
  if (line && prepared.orphans.line && prepared.orphans.listener) {
    // Taking over a line: its listener, copied from an orphan, with what is queued on it.
    prepared.listeners.address = prepared.orphans.address;
    prepared.listeners.sockets.push_back(std::move(prepared.orphans.listener));
  } else {
    auto group = bindReuseportGroup(*address, line ? 1 : initialWorkers(options));
    if (!group) {
      fail(group.error());
    }
    prepared.listeners = std::move(group.value());
  }
  if (options.port == 0) {
    claimPortOrFail(prepared.listeners.address.port()); // a dead master's state may remain
  }
  if (options.statusPort != 0) {
    prepared.statusServer = openStatusServer(options, prepared.listeners.address.port());
  }
  if (line) {
    prepareLine(prepared, options);
  } else {
    prepareEbpf(prepared, options);
  }
  return prepared;
}

// A COMMAND's workers write no load: the kernel measures it for their slots. Where it cannot
// (no BTF tracepoints), they are served all the same, balanced on the choices alone.
std::unique_ptr<ForeignLoad> measureForeignLoad(DispatchProgram &program,
                                                ReuseportDispatch &dispatch, Scoreboard board) {
  auto loaded = ForeignLoad::load(program.slotsMapFd());
  if (!loaded) {
    spdlog::warn("{}; the COMMAND workers' load is not measured: least_conn sees only its own "
                 "choices",
                 loaded.error().message());
    return nullptr;
  }
  std::unique_ptr<ForeignLoad> load = std::move(loaded.value());
  ForeignLoad *tagger = load.get();
  dispatch.observeListeners([tagger, board](uint32_t slot, int listenerFd) mutable {
    if (auto tagged = tagger->tag(listenerFd, slot); !tagged) {
      spdlog::warn("{}; its load is not measured", tagged.error().message());
      return;
    }
    board.setLoadSource(slot, SD_LOAD_KERNEL);
  });
  return load;
}

} // namespace

int runAttach(const AttachOptions &options, const Master::OptionsLoader &reloadOptions) {
  setupLogging("master", options.verbose);
  bridgeLibbpfLog();
  std::optional<Prepared> prepared;
  try {
    prepared = prepare(options);
  } catch (const StartupError &error) {
    spdlog::error("attach: {}", error.what());
    return error.code;
  }
  std::optional<PinGuard> pins;
  if (!prepared->pinDir.empty()) {
    pins.emplace(prepared->pinDir);
  }
  const SocketAddress address = prepared->listeners.address;
  const bool line = prepared->program == nullptr;
  uint32_t programId = line ? 0 : prepared->program->programId();
  if (!prepared->fallbackReason.empty()) {
    spdlog::warn("the dispatch program cannot run here ({}); serving in line mode: the master "
                 "accepts and the workers pass connections down a line (--mode ebpf refuses "
                 "to start instead)",
                 prepared->fallbackReason);
  }
  MasterParts parts;
  parts.scoreboard = line ? prepared->sharedBoard->writer() : prepared->program->scoreboard();
  std::unique_ptr<AgentResponder> agent;
  if (options.agentPort != 0) {
    // Bound before the master exists: a port that cannot be bound refuses the start before
    // any worker runs (and the pins are removed on the way out).
    auto agentAddress = parseAddress(options.agentBind, options.agentPort);
    if (!agentAddress) {
      spdlog::error("attach: --agent-bind {} is not a numeric IPv4 or IPv6 address",
                    options.agentBind);
      return kExitUsage;
    }
    auto opened = AgentResponder::open(*agentAddress, parts.scoreboard);
    if (!opened) {
      spdlog::error("attach: {}", opened.error().message());
      return kExitFailure;
    }
    agent = std::move(opened.value());
  }
  std::unique_ptr<ForeignLoad> foreignLoad; // outlives the master
  if (line) {
    parts.mode = std::make_unique<LineDispatch>(std::move(prepared->listeners), parts.scoreboard);
  } else {
    auto reuseport =
        std::make_unique<ReuseportDispatch>(std::move(prepared->listeners), *prepared->program);
    if (!options.command.empty()) {
      foreignLoad = measureForeignLoad(*prepared->program, *reuseport, parts.scoreboard);
    }
    parts.mode = std::move(reuseport);
  }
  if (options.command.empty()) {
    parts.kind = std::make_unique<NativeWorkerKind>();
  } else {
    parts.kind = std::make_unique<ExecWorkerKind>();
  }
  Master master(options, std::move(parts), reloadOptions);
  if (prepared->statusServer) {
    master.addService(std::move(prepared->statusServer));
  }
  if (agent) {
    master.addService(std::move(agent));
  }
  OrphanRetirement *retirement = nullptr; // owned by the master
  if (!prepared->orphans.workers.empty()) {
    auto service = std::make_unique<OrphanRetirement>(std::move(prepared->orphans),
                                                      options.shutdownTimeout + kOrphanKillGrace);
    retirement = service.get();
    master.addService(std::move(service));
  }
  master.onReloading([] { notifyReloading(); });
  master.onReloaded([](bool committed) {
    notifyReady(committed ? "reloaded: a new generation serves"
                          : "reload abandoned: the running generation serves");
  });
  master.onStopping([] { notifyStopping(); });
  master.onReady([&] {
    if (retirement != nullptr) {
      retirement->retire();
    }
    std::string program = line ? "" : fmt::format(", program id {}", programId);
    std::printf("listening on %s (%s mode, %d worker%s, policy %s%s)\n", address.toString().c_str(),
                line ? "line" : "ebpf", initialWorkers(options),
                initialWorkers(options) == 1 ? "" : "s",
                std::string(policyName(options.policy)).c_str(), program.c_str());
    std::fflush(stdout);
    spdlog::info("listening on {} with {} workers ({} mode)", address.toString(),
                 initialWorkers(options), line ? "line" : "ebpf");
    if (options.maxWorkers > 0) {
      spdlog::info("dynamic pool: {} to {} workers", options.minWorkers, options.maxWorkers);
    }
    notifyReady(
        fmt::format("listening on {}, {} workers", address.toString(), initialWorkers(options)));
  });
  int code = master.run();
  spdlog::info("stopped");
  return code;
}

} // namespace sockdispatch
