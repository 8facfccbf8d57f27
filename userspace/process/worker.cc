#include "process/worker.h"

#include "core/monotonic_clock.h"
#include "core/socket_options.h"
#include "dispatch/listener_intake.h"
#include "http/builtin_page.h"
#include "http/static_files.h"
#include "library/server_hooks.h"
#include "line/fd_channel.h"

#include <event2/event.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <csignal>
#include <cstring>
#include <ctime>
#include <vector>

namespace sockdispatch {

namespace {

// Two event priorities: the master's control messages (stop, re-link) run before any client
// I/O that became ready in the same loop turn; everything else shares the default.
constexpr int kEventPriorities = 2;
constexpr int kControlPriority = 0;

// Marks the worker's slot busy for the length of every handler call (busy_since), so the
// load-aware policies see a worker stuck in slow work, which accepts and counts nothing
// while it lasts (sd_busy_load in sockdispatch/policy.h). Two vDSO clock reads a request.
class BusyMarkingHandler : public Handler {
public:
  BusyMarkingHandler(std::unique_ptr<Handler> inner, Scoreboard scoreboard, uint32_t slot)
      : inner_(std::move(inner)), scoreboard_(scoreboard), slot_(slot) {}

  void handle(const Request &request, Response &response) const override {
    Busy busy(scoreboard_, slot_);
    inner_->handle(request, response);
  }
  void respond(const Request &request, Response &response, Deferral &later) const override {
    Busy busy(scoreboard_, slot_);
    inner_->respond(request, response, later);
  }

private:
  // busy_since is set for as long as this lives (an exception thrown by the handler included).
  class Busy {
  public:
    Busy(Scoreboard &board, uint32_t slot) : board_(board), slot_(slot) {
      board_.setBusySince(slot_, monotonicNs());
    }
    ~Busy() { board_.setBusySince(slot_, 0); }
    Busy(const Busy &) = delete;
    Busy &operator=(const Busy &) = delete;

  private:
    Scoreboard &board_;
    uint32_t slot_;
  };

  std::unique_ptr<Handler> inner_;
  mutable Scoreboard scoreboard_;
  uint32_t slot_;
};

} // namespace

Worker::Worker(const AttachOptions &options, uint32_t slot, WorkerSockets sockets,
               Scoreboard scoreboard, std::string mode)
    : options_(options), slot_(slot),
      servesAsOrphan_(sockets.listener.valid() || sockets.lineListener.valid()),
      orphanListener_(std::move(sockets.lineListener)), channel_(std::move(sockets.control)),
      scoreboard_(scoreboard), identity_{std::move(mode), slot, ::getpid()},
      base_(event_base_new()),
      intake_(makeIntake(sockets, slot, scoreboard, options.maxConnections, options.deferAccept)),
      maxConnections_(intake_->connectionLimit()) {}

int Worker::run() {
  if (!base_) {
    spdlog::error("Failed to create the event loop");
    return kExitFailure;
  }
  // Before any event exists, so each one gets the default (lower) priority when it is made.
  if (event_base_priority_init(base_.get(), kEventPriorities) != 0) {
    spdlog::error("Failed to set up the event loop's priorities");
    return kExitFailure;
  }
  if (options_.hooks && options_.hooks->makeHandler) {
    WorkerContext context{identity_, base_.get(), scoreboard_};
    handler_ = options_.hooks->makeHandler(context);
    if (!handler_) {
      return kExitFatalConfig; // the reason is logged
    }
  } else if (options_.root.empty()) {
    handler_ = std::make_unique<BuiltinPageHandler>(identity_);
  } else {
    StaticFileHandler::Options fileOptions;
    fileOptions.serveDotfiles = options_.dotfiles;
    fileOptions.cache.valid = options_.fileCacheValid;
    auto files = StaticFileHandler::open(options_.root, fileOptions);
    if (!files) {
      spdlog::critical("{}", files.error().message());
      return kExitFatalConfig;
    }
    handler_ = std::move(files.value());
  }
  handler_ = std::make_unique<BusyMarkingHandler>(std::move(handler_), scoreboard_, slot_);
  ConnectionHooks hooks;
  hooks.closed = [this](HttpConnection *connection) { onConnectionClosed(connection); };
  hooks.requestAnswered = [this] { scoreboard_.requestAnswered(slot_); };
  connectionContext_ = std::make_unique<ConnectionContext>(base_.get(), *handler_, identity_,
                                                           options_.limits, std::move(hooks));
  if (!intake_->start(base_.get(), *this)) {
    return kExitFailure;
  }
  noDelayInherited_ = intake_->deliversNoDelay();
  signals_ = std::make_unique<SignalSet>(base_.get(), std::initializer_list<int>{SIGTERM, SIGINT},
                                         [this](int) { beginStop(); });
  if (!signals_->valid()) {
    spdlog::error("Failed to watch signals: {}", std::strerror(errno));
    return kExitFailure;
  }
  if (channel_) {
    controlEvent_.reset(event_new(
        base_.get(), channel_.get(), EV_READ | EV_PERSIST,
        [](evutil_socket_t, short, void *ctx) { static_cast<Worker *>(ctx)->onControl(); }, this));
    event_priority_set(controlEvent_.get(), kControlPriority);
    event_add(controlEvent_.get(), nullptr);
  }
  reaper_.reset(event_new(
      base_.get(), -1, 0,
      [](evutil_socket_t, short, void *ctx) { static_cast<Worker *>(ctx)->reapClosed(); }, this));

  if (options_.confineWorker) {
    if (auto confined = options_.confineWorker(); !confined) {
      spdlog::warn("serving without a system-call filter: {}", confined.error().message());
    }
  }
  scoreboard_.setState(slot_, SD_SLOT_RUNNING);
  spdlog::debug("serving slot {}", slot_);
  event_base_dispatch(base_.get());
  spdlog::debug("stopped; {} connections left", connections_.size());
  return kExitOk;
}

void Worker::takeConnection(int fd) {
  if (!noDelayInherited_) {
    setNoDelay(fd);
  }
  scoreboard_.connectionOpened(slot_);
  auto connection = std::make_unique<HttpConnection>(*connectionContext_, fd);
  HttpConnection *key = connection.get();
  connections_.emplace(key, std::move(connection));
  if (stopping_) {
    key->closeWhenIdle(); // what the client sends first is answered, then it closes
  }
  bool tried = firstReads_.worthTrying();
  bool found = key->start(tried); // may answer and close it at once
  if (tried) {
    firstReads_.record(found);
  }
  updateFull();
}

void Worker::updateFull() {
  if (stopping_) {
    return;
  }
  bool full = paused_ || (maxConnections_ != 0 && connections_.size() >= maxConnections_);
  if (full == full_) {
    return;
  }
  full_ = full;
  if (full) {
    scoreboard_.changeState(slot_, SD_SLOT_RUNNING, SD_SLOT_FULL);
  } else {
    scoreboard_.changeState(slot_, SD_SLOT_FULL, SD_SLOT_RUNNING);
  }
  intake_->setFull(full);
  if (orphanIntake_) {
    orphanIntake_->setFull(full);
  }
}

// Out of descriptors (the intake pauses): the slot is marked full meanwhile, so the program
// sends new connections elsewhere.
void Worker::setPaused(bool paused) {
  paused_ = paused;
  updateFull();
}

// Reads everything queued: a re-link and a stop sent together take effect together, before
// any client bytes that arrived meanwhile are served.
void Worker::onControl() {
  constexpr int kMessagesPerTurn = 64;
  for (int turn = 0; turn < kMessagesPerTurn && channel_; ++turn) {
    auto received = receive(channel_.get());
    if (!received) {
      if (wouldBlock(received.error())) {
        return;
      }
      spdlog::warn("ignored a control message: {}", received.error().message());
      continue;
    }
    if (received->peerClosed) {
      event_del(controlEvent_.get()); // freed with the worker, not inside its own callback
      channel_.reset();
      onMasterGone();
      return;
    }
    switch (received->message.messageType()) {
    case LineMessageType::kStopGracefully:
      spdlog::debug("asked to stop gracefully");
      beginStop();
      break;
    case LineMessageType::kSuccessor: intake_->changeSuccessor(*received); break;
    case LineMessageType::kHoldExit: exitHeld_ = true; break;
    case LineMessageType::kMayExit:
      exitHeld_ = false;
      // Whatever reached the input before the master said so is queued there now: taken
      // before the worker may leave.
      intake_->drain();
      exitWhenDone();
      break;
    default: spdlog::warn("ignored a control message of type {}", received->message.type); break;
    }
  }
}

void Worker::onMasterGone() {
  exitHeld_ = false; // nobody is left to lift it
  const auto bound = options_.orphanTimeout;
  if (!servesAsOrphan_ || bound.count() == 0 || stopping_) {
    spdlog::warn("the master is gone; stopping");
    beginStop();
    return;
  }
  spdlog::warn("the master is gone; serving on for up to {} s for a restarted master to take "
               "over, then stopping",
               bound.count());
  if (orphanListener_) {
    // The line: nothing more comes down it; what the kernel queues on the listener is taken
    // here, by every orphan alike.
    orphanIntake_ = std::make_unique<ListenerIntake>(std::move(orphanListener_), slot_,
                                                     maxConnections_, options_.deferAccept);
    if (!orphanIntake_->start(base_.get(), *this)) {
      orphanIntake_.reset();
    } else {
      orphanIntake_->setFull(full_);
      noDelayInherited_ = noDelayInherited_ && orphanIntake_->deliversNoDelay();
    }
  }
  orphanDeadline_.reset(evtimer_new(
      base_.get(),
      [](evutil_socket_t, short, void *ctx) {
        spdlog::warn("no master took over within --orphan-timeout; stopping");
        static_cast<Worker *>(ctx)->beginStop();
      },
      this));
  timeval deadline{static_cast<time_t>(bound.count()), 0};
  evtimer_add(orphanDeadline_.get(), &deadline);
}

void Worker::onConnectionClosed(HttpConnection *connection) {
  auto found = connections_.find(connection);
  if (found == connections_.end()) {
    return;
  }
  scoreboard_.connectionClosed(slot_);
  closed_.push_back(std::move(found->second));
  connections_.erase(found);
  event_active(reaper_.get(), EV_TIMEOUT, 0);
  updateFull();
}

void Worker::reapClosed() {
  closed_.clear();
  exitWhenDone();
}

void Worker::exitWhenDone() {
  if (stopping_ && !exitHeld_ && connections_.empty()) {
    event_base_loopbreak(base_.get());
  }
}

void Worker::beginStop() {
  if (stopping_) {
    return;
  }
  stopping_ = true;
  scoreboard_.setState(slot_, SD_SLOT_STOPPING);
  // What is already queued for this worker is taken (each new one answers its first request
  // with Connection: close), then nothing more is chosen for it.
  intake_->drain();
  if (orphanIntake_) {
    orphanIntake_->drain();
  }
  orphanListener_.reset();
  std::vector<HttpConnection *> open;
  open.reserve(connections_.size());
  for (auto &entry : connections_) {
    open.push_back(entry.first);
  }
  if (connections_.empty() && !exitHeld_) {
    event_base_loopbreak(base_.get());
    return;
  }
  for (HttpConnection *connection : open) {
    connection->closeWhenIdle();
  }
  stopDeadline_.reset(evtimer_new(
      base_.get(),
      [](evutil_socket_t, short, void *ctx) {
        auto *self = static_cast<Worker *>(ctx);
        if (self->connections_.empty()) {
          spdlog::warn("shutdown timeout: leaving without the master's word that nothing more "
                       "reaches this worker");
        } else {
          spdlog::warn("shutdown timeout: closing {} connections", self->connections_.size());
        }
        event_base_loopbreak(self->base_.get());
      },
      this));
  timeval deadline{static_cast<time_t>(options_.shutdownTimeout.count()), 0};
  evtimer_add(stopDeadline_.get(), &deadline);
}

} // namespace sockdispatch
