#include "adopt/adopted_group.h"

#include "bpf/names.h"
#include "bpf/pin_dir.h"
#include "config/options.h"
#include "control/pinned_attachment.h"
#include "core/listener_diag.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>

namespace sockdispatch {

namespace {

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

} // namespace

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

void AdoptedGroup::setWorker(uint32_t slot, uint64_t inode, const SocketHolders &holders) {
  auto worker = workerOf(inode, holders);
  board_->setPid(slot, worker ? worker->pid : 0);
}

// Copies, tags and inserts one listener, then lets the policies choose its slot. `keep`
// receives the copy when given (to attach through); otherwise it is closed, so the service
// alone keeps the listener alive.
Result<uint32_t> AdoptedGroup::takeListener(uint64_t inode, const SocketHolders &holders,
                                            UniqueFd *keep) {
  auto copy = copyHeldSocket(inode, holders);
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

} // namespace sockdispatch
