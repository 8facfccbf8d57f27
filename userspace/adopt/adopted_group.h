#pragma once

#include "adopt/adopt.h"
#include "adopt/adopted_slots.h"
#include "adopt/group_scan.h"
#include "adopt/seeded_connections.h"
#include "adopt/socket_holders.h"
#include "bpf/dispatch_program.h"
#include "bpf/foreign_load.h"
#include "bpf/scoreboard.h"
#include "control/attachment_pins.h"
#include "core/event_ptr.h"

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace sockdispatch {

// A refusal or failure before the program steers anything: the message and the exit code.
struct AdoptError : std::runtime_error {
  AdoptError(int exitCode, const std::string &message)
      : std::runtime_error(message), code(exitCode) {}
  int code;
};

// The steering of one adopted group (docs/design/adopt.md): its start-up in
// adopted_group.cc, following the service and the release in adopted_group_follow.cc.
class AdoptedGroup {
public:
  using Clock = std::chrono::steady_clock;

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

} // namespace sockdispatch
