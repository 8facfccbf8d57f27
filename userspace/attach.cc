#include "attach.h"

#include "dispatch_program.h"
#include "listener.h"
#include "logging.h"
#include "master.h"
#include "notify.h"
#include "pin_dir.h"
#include "pinned_attachment.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
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

[[noreturn]] void fail(const Error &error, int code = kExitFailure) {
  throw StartupError(code, error.message());
}

std::string bpfLoadHint(int code) {
  switch (code) {
  case EPERM:
  case EACCES: return " (loading BPF needs root, or CAP_BPF with CAP_NET_ADMIN)";
  case EINVAL:
  case ENOTSUP:
    return " (the kernel lacks sk_reuseport/migrate programs or the verifier refused; "
           "Linux 5.14 or newer is needed)";
  default: return "";
  }
}

// Refuses a port some live master holds; removes the pins a dead master left behind.
void claimPort(uint16_t port) {
  std::string dir = pinDirFor(port);
  if (::access(dir.c_str(), F_OK) != 0) {
    return;
  }
  auto existing = PinnedAttachment::open(port, false);
  if (!existing) {
    // Never remove what we cannot prove is dead: the operator decides.
    throw StartupError(kExitFailure, "cannot read the state of port " + std::to_string(port) +
                                         " in " + dir + " (" + existing.error().message() +
                                         "); remove that directory if no sockdispatch serves "
                                         "the port");
  }
  uint32_t owner = loadRelaxed(existing->config().master_pid);
  if (processAlive(owner)) {
    throw StartupError(kExitUsage, "port " + std::to_string(port) +
                                       " is already attached by sockdispatch (master pid " +
                                       std::to_string(owner) + "); stop it first (kill -TERM " +
                                       std::to_string(owner) + ")");
  }
  spdlog::warn("removing stale state of port {} left by master pid {}", port, owner);
  if (auto removed = removePinDir(dir); !removed) {
    fail(removed.error());
  }
}

// Removes the attachment's pins when the attachment ends, however it ends.
class PinGuard {
public:
  explicit PinGuard(std::string dir) : dir_(std::move(dir)) {}
  ~PinGuard() {
    if (auto removed = removePinDir(dir_); !removed) {
      spdlog::error("{}", removed.error().message());
    }
  }
  PinGuard(const PinGuard &) = delete;
  PinGuard &operator=(const PinGuard &) = delete;

private:
  std::string dir_;
};

struct Prepared {
  ListenerGroup listeners;
  std::unique_ptr<DispatchProgram> program;
  std::string pinDir;
};

Prepared prepare(const AttachOptions &options) {
  auto address = parseAddress(options.bind, options.port);
  if (!address) {
    throw StartupError(kExitUsage,
                       "--bind " + options.bind + " is not a numeric IPv4 or IPv6 address");
  }
  if (auto mounted = ensureBpffs(); !mounted) {
    fail(mounted.error());
  }
  auto lock = DirLock::acquire(pinBaseDir(), true);
  if (!lock) {
    fail(lock.error());
  }
  if (options.port != 0) {
    claimPort(options.port);
    if (portHasListener(options.port)) {
      throw StartupError(kExitFailure, "port " + std::to_string(options.port) +
                                           " is already in use by another listener");
    }
  }
  Prepared prepared;
  auto group = bindReuseportGroup(*address, initialWorkers(options));
  if (!group) {
    fail(group.error());
  }
  prepared.listeners = std::move(group.value());
  uint16_t port = prepared.listeners.address.port();
  if (options.port == 0) {
    claimPort(port); // an ephemeral port may still carry a dead master's pins
  }

  auto program = DispatchProgram::load();
  if (!program) {
    throw StartupError(kExitFailure, program.error().message() + bpfLoadHint(program.error().code));
  }
  prepared.program = std::move(program.value());
  Scoreboard board = prepared.program->scoreboard();
  sd_config *config = board.config();
  config->abi_version = SD_ABI_VERSION;
  config->policy = SD_POLICY_SKIP_LOAD;
  config->nr_slots = static_cast<__u32>(initialWorkers(options));
  config->mode = SD_MODE_EBPF;
  config->master_pid = static_cast<__u32>(::getpid());
  config->port = port;
  config->generation = 1;

  // Attach before listen(): no SYN is ever hashed past the program.
  if (auto attached = prepared.program->attachTo(prepared.listeners.sockets[0].get()); !attached) {
    fail(attached.error());
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

  // Pin into a private directory, then rename it into place: readers never see half.
  prepared.pinDir = pinDirFor(port);
  // bpffs refuses names with a dot; attachments are the all-digit entries.
  std::string staging = pinBaseDir() + "/staging-" + std::to_string(::getpid());
  (void)removePinDir(staging);
  if (::mkdir(staging.c_str(), 0700) != 0) {
    fail(osError("create directory " + staging));
  }
  if (auto pinned = prepared.program->pinInto(staging); !pinned) {
    (void)removePinDir(staging);
    fail(pinned.error());
  }
  // Readable by the monitoring group (status without root), writable by root only.
  if (auto restricted = restrictPinDir(staging); !restricted) {
    (void)removePinDir(staging);
    fail(restricted.error());
  }
  if (::rename(staging.c_str(), prepared.pinDir.c_str()) != 0) {
    Error error = osError("move " + staging + " to " + prepared.pinDir);
    (void)removePinDir(staging);
    fail(error);
  }
  return prepared;
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
  PinGuard pins(prepared->pinDir);
  const SocketAddress address = prepared->listeners.address;
  uint32_t programId = prepared->program->programId();
  Master master(options, std::move(prepared->listeners), *prepared->program, reloadOptions);
  master.onReloading([] { notifyReloading(); });
  master.onReloaded([](bool committed) {
    notifyReady(committed ? "reloaded: a new generation serves"
                          : "reload abandoned: the running generation serves");
  });
  master.onStopping([] { notifyStopping(); });
  master.onReady([&] {
    std::printf("listening on %s (ebpf mode, %d worker%s, policy skip_load, program id %u)\n",
                address.toString().c_str(), initialWorkers(options),
                initialWorkers(options) == 1 ? "" : "s", programId);
    std::fflush(stdout);
    spdlog::info("listening on {} with {} workers", address.toString(), initialWorkers(options));
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
