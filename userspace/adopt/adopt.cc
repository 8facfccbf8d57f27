#include "adopt/adopt.h"

#include "adopt/adopted_slots.h"
#include "adopt/group_scan.h"
#include "adopt/seeded_connections.h"
#include "adopt/socket_holders.h"
#include "bpf/dispatch_program.h"
#include "bpf/foreign_load.h"
#include "bpf/names.h"
#include "bpf/pin_dir.h"
#include "config/options.h"
#include "control/attachment_pins.h"
#include "control/pinned_attachment.h"
#include "core/event_ptr.h"
#include "core/listener_diag.h"
#include "core/logging.h"
#include "core/pidfd.h"
#include "core/signal_set.h"
#include "core/timeval.h"

#include <fmt/format.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <stdexcept>

namespace sockdispatch {

namespace {

using Clock = std::chrono::steady_clock;

// A refusal or failure before the program steers anything: the message and the exit code.
struct AdoptError : std::runtime_error {
  AdoptError(int exitCode, const std::string &message)
      : std::runtime_error(message), code(exitCode) {}
  int code;
};

// Which listeners on the port are the group: same address and device.
std::string groupKey(const ListenerRecord &listener) {
  std::string key = listener.address.toString();
  if (listener.boundDevice != 0) {
    key += fmt::format(" (device {})", listener.boundDevice);
  }
  return key;
}

bool sameHost(const SocketAddress &a, const SocketAddress &b) {
  SocketAddress left = a;
  SocketAddress right = b;
  left.setPort(0);
  right.setPort(0);
  return left.toString() == right.toString();
}

std::set<uint64_t> inodesOf(const std::vector<ListenerRecord> &listeners) {
  std::set<uint64_t> inodes;
  for (const ListenerRecord &listener : listeners) {
    inodes.insert(listener.inode);
  }
  return inodes;
}

// The steering of one adopted group, from adoption to release.
class AdoptedGroup {
public:
  AdoptedGroup(const AdoptOptions &options, std::unique_ptr<GroupScan> scan)
      : options_(options), scan_(std::move(scan)) {}

  // Finds the group, checks it may be adopted, fills the sockarray, attaches, pins. Throws
  // AdoptError.
  void adopt();
  // Runs until released or the group is gone. Returns the exit code.
  int run();

private:
  std::vector<ListenerRecord> findGroup(const std::vector<ListenerRecord> &all,
                                        const SocketHolders &holders) const;
  // The inodes of the group's listeners now, from one sock_diag listener dump.
  Result<std::set<uint64_t>> groupListeners() const;
  Result<UniqueFd> copyListener(uint64_t inode, const SocketHolders &holders) const;
  Result<uint32_t> takeListener(uint64_t inode, const SocketHolders &holders, UniqueFd *keep);
  void setWorker(uint32_t slot, uint64_t inode, const SocketHolders &holders);
  void rescan();
  void refreshWorkers(const std::set<uint64_t> &inodes);
  void clearStaleQueues();
  void seedExisting(const std::set<uint64_t> &connections);
  void forgetClosedSeeds();
  void release();

  AdoptOptions options_;
  std::unique_ptr<GroupScan> scan_;
  std::unique_ptr<DispatchProgram> program_;
  std::unique_ptr<ForeignLoad> load_;
  std::optional<Scoreboard> board_;
  std::optional<PinGuard> pins_;
  AdoptedSlots slots_;
  std::string key_;       // the group's address, as the log names it
  SocketAddress address_; // the group's address and port
  SocketHolders holders_;
  std::map<uint32_t, std::pair<uint64_t, Clock::time_point>> lastSelected_; // per slot
  Clock::time_point holdersAt_;
  uint64_t generation_ = 0;      // of the latest slot taken
  std::set<uint64_t> unsteered_; // listeners that could not be taken (warned once)
  SeededConnections seeded_;     // open before the adoption: counted by us
  Clock::time_point seedsCheckedAt_;
  EventBasePtr base_;
  bool groupGone_ = false;
};

std::vector<ListenerRecord> AdoptedGroup::findGroup(const std::vector<ListenerRecord> &all,
                                                    const SocketHolders &holders) const {
  std::vector<ListenerRecord> chosen;
  std::optional<SocketAddress> bind;
  if (!options_.bind.empty()) {
    bind = parseAddress(options_.bind, options_.port);
  }
  for (const ListenerRecord &listener : all) {
    if (bind && !sameHost(listener.address, *bind)) {
      continue;
    }
    if (options_.pid) {
      auto found = holders.find(listener.inode);
      bool held = false;
      if (found != holders.end()) {
        for (const SocketHolder &holder : found->second) {
          held = held || holder.pid == *options_.pid;
        }
      }
      if (!held) {
        continue;
      }
    }
    chosen.push_back(listener);
  }
  std::string port = std::to_string(options_.port);
  if (chosen.empty()) {
    std::string which = options_.bind.empty() ? "" : " on " + options_.bind;
    if (options_.pid) {
      which += " held by pid " + std::to_string(*options_.pid);
    }
    throw AdoptError(kExitUsage, "no TCP listener on port " + port + which +
                                     " in this network namespace: nothing to adopt");
  }
  std::set<std::string> keys;
  for (const ListenerRecord &listener : chosen) {
    keys.insert(groupKey(listener));
  }
  if (keys.size() > 1) {
    std::string list;
    for (const std::string &key : keys) {
      list += (list.empty() ? "" : ", ") + key;
    }
    throw AdoptError(kExitUsage, "the listeners on port " + port + " form " +
                                     std::to_string(keys.size()) + " groups (" + list +
                                     "); choose one with --bind ADDRESS");
  }
  for (const ListenerRecord &listener : chosen) {
    if (!listener.inGroup) {
      auto worker = workerOf(listener.inode, holders);
      std::string who = worker ? " (pid " + std::to_string(worker->pid) + ")" : "";
      throw AdoptError(kExitUsage, fmt::format("the listener on {}{} is not in a SO_REUSEPORT "
                                               "group: there is nothing to steer; start the "
                                               "service with SO_REUSEPORT (nginx: listen {} "
                                               "reuseport)",
                                               listener.address.toString(), who, port));
    }
  }
  return chosen;
}

// The iterator would tell the same, but it walks every TCP socket of the namespace (about
// 2 ms with none established, docs/design/adopt.md); the listener dump walks the listeners
// only (about 30 µs). A listener that joins the group's address and port is in the group: a
// socket outside it could not have bound there.
Result<std::set<uint64_t>> AdoptedGroup::groupListeners() const {
  auto listeners = dumpTcpListeners(options_.port, address_.family());
  if (!listeners) {
    return listeners.error();
  }
  std::set<uint64_t> inodes;
  for (const ListenerInfo &listener : listeners.value()) {
    if (sameHost(listener.local, address_)) {
      inodes.insert(listener.inode);
    }
  }
  return inodes;
}

Result<UniqueFd> AdoptedGroup::copyListener(uint64_t inode, const SocketHolders &holders) const {
  auto found = holders.find(inode);
  if (found == holders.end() || found->second.empty()) {
    return logicError("copy the listener socket:[" + std::to_string(inode) + "]",
                      "no process this one may inspect holds it");
  }
  Error last;
  for (const SocketHolder &holder : found->second) {
    auto pidfd = openPidfd(holder.pid);
    if (!pidfd) {
      last = pidfd.error();
      continue;
    }
    auto copy = copyDescriptor(pidfd->get(), holder.pid, holder.fd);
    if (!copy) {
      last = copy.error();
      if (last.code == EPERM) {
        return last; // the same for every holder
      }
      continue;
    }
    struct stat status {};
    if (::fstat(copy->get(), &status) == 0 && status.st_ino == inode) {
      return std::move(copy.value());
    }
    // The process reused the descriptor number meanwhile: try another holder.
    last = logicError("copy the listener socket:[" + std::to_string(inode) + "]",
                      "its descriptor changed while it was copied");
  }
  return last;
}

void AdoptedGroup::setWorker(uint32_t slot, uint64_t inode, const SocketHolders &holders) {
  auto worker = workerOf(inode, holders);
  board_->setPid(slot, worker ? worker->pid : 0);
}

// Copies, tags and inserts one listener, then lets the policies choose its slot. `keep`
// receives the copy when given (to attach through); otherwise it is closed, so the service
// alone keeps the listener alive.
Result<uint32_t> AdoptedGroup::takeListener(uint64_t inode, const SocketHolders &holders,
                                            UniqueFd *keep) {
  auto copy = copyListener(inode, holders);
  if (!copy) {
    return copy.error();
  }
  auto slot = slots_.assign(inode);
  if (!slot) {
    return logicError("adopt the listener socket:[" + std::to_string(inode) + "]",
                      "every one of the " + std::to_string(SD_MAX_WORKERS) + " slots is taken");
  }
  Scoreboard &board = *board_;
  board.resetCounters(*slot);
  // A new epoch for the slot: closes of an earlier listener's children in this slot are
  // not taken from this one's count.
  board.prepareSlot(*slot, ++generation_);
  auto refuse = [&](const Error &error) -> Result<uint32_t> {
    board.releaseSlot(*slot);
    slots_.release(*slot);
    return error;
  };
  if (auto tagged = load_->tag(copy->get(), *slot); !tagged) {
    return refuse(tagged.error());
  }
  if (auto set = program_->setSocket(*slot, copy->get()); !set) {
    return refuse(set.error());
  }
  board.setLoadSource(*slot, SD_LOAD_KERNEL);
  setWorker(*slot, inode, holders);
  board.setState(*slot, SD_SLOT_RUNNING);
  storeRelease<__u32>(board.config()->nr_slots, slots_.slotsInUse());
  if (keep != nullptr) {
    *keep = std::move(copy.value());
  }
  return *slot;
}

void AdoptedGroup::adopt() {
  std::string port = std::to_string(options_.port);
  auto all = scan_->scan();
  if (!all) {
    throw AdoptError(kExitFailure, all.error().message());
  }
  std::vector<pid_t> hidden;
  SocketHolders holders = findSocketHolders(inodesOf(all.value()), ::getpid(), &hidden);
  std::vector<ListenerRecord> group = findGroup(all.value(), holders);
  key_ = groupKey(group.front());
  address_ = group.front().address;
  for (const ListenerRecord &listener : group) {
    if (holders.count(listener.inode) == 0 && !hidden.empty()) {
      std::string pids;
      for (size_t i = 0; i < hidden.size() && i < 8; ++i) {
        pids += (i == 0 ? "" : " ") + std::to_string(hidden[i]);
      }
      throw AdoptError(kExitUsage,
                       "the listeners on " + key_ +
                           " are held by processes this one may not "
                           "inspect (pids " +
                           pids + (hidden.size() > 8 ? " ..." : "") +
                           "): reading and copying their descriptors needs ptrace access "
                           "(CAP_SYS_PTRACE, and kernel.yama.ptrace_scope below 3)");
    }
  }

  // One attach or adopt at a time decides who holds a port; a live one is refused first.
  auto locked = DirLock::acquire(pinBaseDir(), true);
  if (!locked) {
    throw AdoptError(kExitFailure, locked.error().message());
  }
  if (auto claimed = claimPort(options_.port); !claimed) {
    const Error &error = claimed.error();
    throw AdoptError(error.code == EADDRINUSE ? kExitUsage : kExitFailure,
                     error.code == 0 || error.code == EADDRINUSE ? error.detail : error.message());
  }

  uint32_t attached = group.front().programId;
  // Our own program with no live sockdispatch holding the port: left by an adopt that was
  // killed. It steers on counts nobody updates any more; replacing it is what the operator
  // asked for by adopting again.
  const bool leftover = attached != 0 && bpfProgramName(attached) == kDispatchProgramName;
  program_ = [] {
    auto loaded = loadDispatchProgram();
    if (!loaded) {
      throw AdoptError(kExitFailure, loaded.error().message());
    }
    return std::move(loaded.value());
  }();
  if (attached != 0 && !leftover && !options_.force) {
    std::string what = describeBpfProgram(attached);
    throw AdoptError(kExitUsage, "BPF program " + std::to_string(attached) +
                                     (what.empty() ? "" : " " + what) +
                                     " already steers the group on " + key_ +
                                     "; adopt never replaces one silently (--force replaces it)");
  }
  auto loaded = ForeignLoad::load(program_->slotsMapFd());
  if (!loaded) {
    throw AdoptError(kExitFailure,
                     loaded.error().message() +
                         " (adopt measures the service's load in the kernel: it needs BTF "
                         "tracepoints, Linux 5.11)");
  }
  load_ = std::move(loaded.value());

  board_.emplace(program_->scoreboard());
  sd_config *config = board_->config();
  config->abi_version = SD_ABI_VERSION;
  config->policy =
      options_.policy < SD_NR_POLICIES ? options_.policy : static_cast<__u32>(SD_POLICY_LEAST_CONN);
  config->mode = SD_MODE_ADOPT;
  config->master_pid = static_cast<__u32>(::getpid());
  config->port = options_.port;
  config->generation = 1;

  if (attached != 0) {
    // The program being replaced may hold the listeners in its own sockarray.
    if (auto emptied = emptySockarraysOf(attached); !emptied) {
      throw AdoptError(kExitFailure, emptied.error().message());
    }
  }
  // The connections open now, before any listener is tagged: the kernel will not count them.
  auto existing = liveConnectionInodes(options_.port, address_.family());
  if (!existing) {
    spdlog::warn("{}; the connections open before the adoption are not counted",
                 existing.error().message());
  }
  // Every listener is in the sockarray before the program sees a SYN.
  UniqueFd member;
  for (const ListenerRecord &listener : group) {
    auto taken = takeListener(listener.inode, holders, member ? nullptr : &member);
    if (!taken) {
      throw AdoptError(taken.error().code == EPERM ? kExitUsage : kExitFailure,
                       taken.error().message());
    }
  }
  if (existing) {
    seedExisting(existing.value());
  }
  if (leftover) {
    spdlog::warn("replacing the steering program {} that a sockdispatch no longer running left "
                 "on {}",
                 attached, key_);
  } else if (attached != 0) {
    spdlog::warn("replacing BPF program {} {} on {} (--force)", attached,
                 describeBpfProgram(attached), key_);
  }
  if (auto steering = program_->attachTo(member.get()); !steering) {
    throw AdoptError(kExitFailure, steering.error().message());
  }
  auto published = publishPins(*program_, options_.port);
  if (!published) {
    if (auto detached = detachReuseportProgram(member.get()); !detached) {
      spdlog::error("{}", detached.error().message());
    }
    throw AdoptError(kExitFailure, published.error().message());
  }
  pins_.emplace(published.value());
  scan_.reset(); // the rescans use the listener dump
  holders_ = std::move(holders);
  holdersAt_ = Clock::now();

  std::set<pid_t> workers;
  for (uint32_t slot = 0; slot < slots_.slotsInUse(); ++slot) {
    if (uint32_t pid = board_->snapshot(slot).pid; pid != 0) {
      workers.insert(static_cast<pid_t>(pid));
    }
  }
  std::string pids;
  for (pid_t pid : workers) {
    pids += (pids.empty() ? "" : " ") + std::to_string(pid);
  }
  std::printf("adopted %s: %zu listener%s, worker pid%s %s (policy %s, program id %u)\n",
              key_.c_str(), group.size(), group.size() == 1 ? "" : "s",
              workers.size() == 1 ? "" : "s", pids.c_str(),
              std::string(policyName(config->policy)).c_str(), program_->programId());
  std::fflush(stdout);
  spdlog::info("adopted {}: {} listeners, steered by program {}", key_, group.size(),
               program_->programId());
}

// Each connection open at the adoption counts on the slot of the worker that holds it.
void AdoptedGroup::seedExisting(const std::set<uint64_t> &connections) {
  if (connections.empty()) {
    return;
  }
  std::map<pid_t, uint32_t> slotOfWorker;
  for (uint32_t slot = slots_.slotsInUse(); slot > 0; --slot) {
    if (uint32_t pid = board_->snapshot(slot - 1).pid; pid != 0) {
      slotOfWorker[static_cast<pid_t>(pid)] = slot - 1; // the lowest slot of a process
    }
  }
  SocketHolders holders = findSocketHolders(connections, ::getpid());
  for (const auto &[inode, list] : holders) {
    for (const SocketHolder &holder : list) {
      if (auto found = slotOfWorker.find(holder.pid); found != slotOfWorker.end()) {
        seeded_.add(found->second, inode);
        break;
      }
    }
  }
  for (const auto &[slot, count] : seeded_.perSlot()) {
    board_->adjustOpen(slot, static_cast<int64_t>(count));
  }
  seedsCheckedAt_ = Clock::now();
  spdlog::info("{} connections were open before the adoption: counted on their workers' slots "
               "until they close",
               seeded_.size());
}

// Once a second while any is left (the dump walks the established hash: milliseconds).
void AdoptedGroup::forgetClosedSeeds() {
  if (seeded_.empty() || Clock::now() - seedsCheckedAt_ < std::chrono::seconds(1)) {
    return;
  }
  seedsCheckedAt_ = Clock::now();
  auto open = liveConnectionInodes(options_.port, address_.family());
  if (!open) {
    spdlog::warn("{}", open.error().message());
    return;
  }
  for (const auto &[slot, count] : seeded_.closedSince(open.value())) {
    board_->adjustOpen(slot, -static_cast<int64_t>(count));
  }
}

void AdoptedGroup::refreshWorkers(const std::set<uint64_t> &inodes) {
  holders_ = findSocketHolders(inodes, ::getpid());
  holdersAt_ = Clock::now();
  for (uint32_t slot = 0; slot < slots_.slotsInUse(); ++slot) {
    if (auto inode = slots_.inodeOf(slot)) {
      uint32_t before = board_->snapshot(slot).pid;
      setWorker(slot, *inode, holders_);
      uint32_t after = board_->snapshot(slot).pid;
      if (before != after) {
        spdlog::info("slot {}: its listener is now served by pid {} (was {})", slot, after, before);
      }
    }
  }
}

// A SYN the program chose whose handshake never completed left one in `queued` (the tracing
// program takes it away at the child's birth): a slot nobody has chosen for a second has
// nothing on its way.
void AdoptedGroup::clearStaleQueues() {
  auto now = Clock::now();
  for (uint32_t slot = 0; slot < slots_.slotsInUse(); ++slot) {
    SlotSnapshot snap = board_->snapshot(slot);
    auto &[selected, since] = lastSelected_[slot];
    if (snap.selected != selected) {
      selected = snap.selected;
      since = now;
    } else if (snap.queued > 0 && now - since >= std::chrono::seconds(1)) {
      board_->resetQueued(slot);
    }
  }
}

void AdoptedGroup::rescan() {
  auto listeners = groupListeners();
  if (!listeners) {
    spdlog::warn("{}", listeners.error().message());
    return;
  }
  const std::set<uint64_t> &inodes = listeners.value();
  if (inodes.empty()) {
    spdlog::info("every listener of {} is gone: the service stopped; nothing left to steer", key_);
    groupGone_ = true;
    event_base_loopbreak(base_.get());
    return;
  }
  AdoptedSlots::Changes changes = slots_.compare(inodes);
  for (uint32_t slot : changes.left) {
    // The kernel took the closed listener out of the sockarray when it closed.
    spdlog::info("slot {}: its listener closed (pid {}); the slot is free", slot,
                 board_->snapshot(slot).pid);
    board_->releaseSlot(slot);
    slots_.release(slot);
    lastSelected_.erase(slot);
    seeded_.dropSlot(slot);
  }
  bool workersMoved = false;
  for (uint32_t slot = 0; slot < slots_.slotsInUse() && !workersMoved; ++slot) {
    uint32_t pid = board_->snapshot(slot).pid;
    workersMoved = pid != 0 && !processAlive(pid); // a slot with no worker found: the 5 s scan
  }
  if (changes.any() || workersMoved || Clock::now() - holdersAt_ >= std::chrono::seconds(5)) {
    refreshWorkers(inodes);
  }
  for (uint64_t inode : changes.joined) {
    auto taken = takeListener(inode, holders_, nullptr);
    if (!taken) {
      if (unsteered_.insert(inode).second) { // said once, tried again at every scan
        spdlog::warn("a new listener of {} is not steered: {}", key_, taken.error().message());
      }
      continue;
    }
    unsteered_.erase(inode);
    spdlog::info("slot {}: a new listener of {} (pid {})", taken.value(), key_,
                 board_->snapshot(taken.value()).pid);
  }
  if (!changes.left.empty()) {
    storeRelease<__u32>(board_->config()->nr_slots, slots_.slotsInUse());
  }
  clearStaleQueues();
  forgetClosedSeeds();
}

// Gives the group back to the kernel's hash: through a fresh copy of any of its listeners.
void AdoptedGroup::release() {
  auto listeners = groupListeners();
  std::set<uint64_t> inodes = listeners ? listeners.value() : std::set<uint64_t>{};
  if (inodes.empty()) {
    spdlog::info("{} has no listener left: nothing to release", key_);
    return;
  }
  SocketHolders holders = findSocketHolders(inodes, ::getpid());
  for (uint64_t inode : inodes) {
    auto copy = copyListener(inode, holders);
    if (!copy) {
      continue;
    }
    if (auto detached = detachReuseportProgram(copy->get()); !detached) {
      spdlog::error("{}", detached.error().message());
      return;
    }
    spdlog::info("released {}: the kernel's hash chooses again", key_);
    return;
  }
  spdlog::error("could not copy a listener of {} to release it: the program stays attached "
                "until the service closes its listeners",
                key_);
}

int AdoptedGroup::run() {
  base_.reset(event_base_new());
  if (!base_) {
    spdlog::error("cannot create the event loop");
    release();
    return kExitFailure;
  }
  SignalSet signals(base_.get(), {SIGTERM, SIGINT, SIGQUIT, SIGHUP}, [this](int signo) {
    if (signo == SIGHUP) {
      rescan();
      return;
    }
    spdlog::info("{}: releasing {}", strsignal(signo), key_);
    event_base_loopbreak(base_.get());
  });
  auto onTick = [](evutil_socket_t, short, void *self) {
    static_cast<AdoptedGroup *>(self)->rescan();
  };
  EventPtr tick(event_new(base_.get(), -1, EV_PERSIST, onTick, this));
  timeval period = toTimeval(options_.interval);
  event_add(tick.get(), &period);
  event_base_dispatch(base_.get());
  if (!groupGone_) {
    release();
  }
  return kExitOk;
}

} // namespace

int runAdopt(const AdoptOptions &options) {
  setupLogging("adopt", options.verbose);
  bridgeLibbpfLog();
  if (!options.bind.empty() && !parseAddress(options.bind, options.port)) {
    spdlog::error("adopt: --bind {} is not a numeric IPv4 or IPv6 address", options.bind);
    return kExitUsage;
  }
  if (auto mounted = ensureBpffs(); !mounted) {
    spdlog::error("adopt: {}", mounted.error().message());
    return kExitFailure;
  }
  auto scan = GroupScan::load(options.port);
  if (!scan) {
    spdlog::error("adopt: {}", scan.error().message());
    return kExitFailure;
  }
  AdoptedGroup group(options, std::move(scan.value()));
  try {
    group.adopt();
  } catch (const AdoptError &error) {
    spdlog::error("adopt: {}", error.what());
    return error.code;
  }
  return group.run();
}

} // namespace sockdispatch
