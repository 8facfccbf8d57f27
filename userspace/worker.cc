#include "worker.h"

#include "builtin_page.h"
#include "fd_channel.h"
#include "monotonic_clock.h"
#include "server_hooks.h"
#include "static_files.h"

#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <csignal>
#include <cstring>
#include <ctime>
#include <vector>

namespace sockdispatch {

namespace {

// A line-mode worker keeps this many descriptors in reserve below its RLIMIT_NOFILE: one
// whole message of connections, and room for the files it serves.
constexpr uint64_t kDescriptorReserve = kMaxFdsPerMessage + 64;
constexpr timeval kAcceptPause{0, 100'000};
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

uint64_t descriptorLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) {
    return 0;
  }
  return limit.rlim_cur > kDescriptorReserve ? limit.rlim_cur - kDescriptorReserve : 1;
}

} // namespace

Worker::Worker(const AttachOptions &options, uint32_t slot, WorkerSockets sockets,
               Scoreboard scoreboard, std::string mode)
    : options_(options), slot_(slot), listenerFd_(std::move(sockets.listener)),
      channel_(std::move(sockets.control)), lineInput_(std::move(sockets.lineInput)),
      lineSuccessor_(std::move(sockets.lineSuccessor)),
      scoreboard_(scoreboard), identity_{std::move(mode), slot, ::getpid()},
      base_(event_base_new()), maxConnections_(options.maxConnections) {
  if (lineInput_) {
    // recvmsg installs descriptors only while the limit allows and drops the rest: a line
    // worker counts itself full before it gets there.
    uint64_t limit = descriptorLimit();
    if (limit != 0 && (maxConnections_ == 0 || maxConnections_ > limit)) {
      maxConnections_ = limit;
    }
  }
}

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
    auto files = StaticFileHandler::open(options_.root, fileOptions);
    if (!files) {
      spdlog::critical("{}", files.error().message());
      return kExitFatalConfig;
    }
    handler_ = std::move(files.value());
  }
  handler_ = std::make_unique<BusyMarkingHandler>(std::move(handler_), scoreboard_, slot_);
  if (listenerFd_) {
    listener_.reset(evconnlistener_new(
        base_.get(),
        [](evconnlistener *, evutil_socket_t fd, sockaddr *, int, void *ctx) {
          static_cast<Worker *>(ctx)->onAccept(fd);
        },
        this, LEV_OPT_CLOSE_ON_EXEC, 0, listenerFd_.get()));
    if (!listener_) {
      spdlog::error("Failed to listen on the slot {} socket", slot_);
      return kExitFailure;
    }
    evconnlistener_set_error_cb(listener_.get(), [](evconnlistener *, void *ctx) {
      auto *self = static_cast<Worker *>(ctx);
      int code = errno;
      if (code == EMFILE || code == ENFILE || code == ENOBUFS || code == ENOMEM) {
        spdlog::warn("Failed to accept: {}; pausing accepts for 100 ms", std::strerror(code));
        self->pauseAccepting();
      } else {
        spdlog::debug("accept failed: {}", std::strerror(code));
      }
    });
  } else if (!startLine()) {
    return kExitFailure;
  }
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

  scoreboard_.setState(slot_, SD_SLOT_RUNNING);
  spdlog::debug("serving slot {}", slot_);
  event_base_dispatch(base_.get());
  spdlog::debug("stopped; {} connections left", connections_.size());
  return kExitOk;
}

void Worker::onAccept(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  scoreboard_.connectionOpened(slot_);
  HttpConnection::Hooks hooks;
  hooks.closed = [this](HttpConnection *connection) { onConnectionClosed(connection); };
  hooks.requestAnswered = [this] { scoreboard_.requestAnswered(slot_); };
  auto connection = std::make_unique<HttpConnection>(base_.get(), fd, *handler_, identity_,
                                                     options_.limits, std::move(hooks));
  HttpConnection *key = connection.get();
  connections_.emplace(key, std::move(connection));
  if (stopping_) {
    key->closeWhenIdle(); // what the client sends first is answered, then it closes
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
    if (listener_) {
      evconnlistener_disable(listener_.get());
    }
  } else {
    scoreboard_.changeState(slot_, SD_SLOT_FULL, SD_SLOT_RUNNING);
    if (listener_) {
      evconnlistener_enable(listener_.get());
    }
  }
}

// Out of descriptors: no spinning on a ready listener that cannot be accepted from. The slot
// is marked full meanwhile, so the program sends new connections elsewhere.
void Worker::pauseAccepting() {
  if (paused_) {
    return;
  }
  paused_ = true;
  updateFull();
  if (!acceptPause_) {
    acceptPause_.reset(evtimer_new(
        base_.get(),
        [](evutil_socket_t, short, void *ctx) {
          auto *self = static_cast<Worker *>(ctx);
          self->paused_ = false;
          self->updateFull();
        },
        this));
  }
  evtimer_add(acceptPause_.get(), &kAcceptPause);
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
      spdlog::warn("the master is gone; stopping");
      event_del(controlEvent_.get()); // freed with the worker, not inside its own callback
      channel_.reset();
      beginStop();
      return;
    }
    switch (received->message.messageType()) {
    case LineMessageType::kStopGracefully:
      spdlog::debug("asked to stop gracefully");
      beginStop();
      break;
    case LineMessageType::kSuccessor: onSuccessor(*received); break;
    default: spdlog::warn("ignored a control message of type {}", received->message.type); break;
    }
  }
}

// Takes every connection the kernel already completed for this listener, then closes it. A
// connection that arrives after the last accept finds the listener closed, and the kernel
// migrates it (with the rest of the queue) to a live worker through the program.
void Worker::drainListener() {
  if (!listenerFd_) {
    return;
  }
  evconnlistener_disable(listener_.get());
  for (;;) {
    int fd = ::accept4(listenerFd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) {
        continue;
      }
      break; // EAGAIN: the queue is empty (EMFILE and the like: the kernel migrates the rest)
    }
    onAccept(fd);
  }
  listener_.reset();
  listenerFd_.reset();
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
  if (stopping_ && connections_.empty()) {
    event_base_loopbreak(base_.get());
  }
}

void Worker::beginStop() {
  if (stopping_) {
    return;
  }
  stopping_ = true;
  scoreboard_.setState(slot_, SD_SLOT_STOPPING);
  if (lineInput_) {
    onLineInput(); // what the line already sent is kept or passed on before anything closes
  }
  std::vector<HttpConnection *> open;
  open.reserve(connections_.size());
  for (auto &entry : connections_) {
    open.push_back(entry.first);
  }
  drainListener();
  if (connections_.empty()) {
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
        spdlog::warn("shutdown timeout: closing {} connections", self->connections_.size());
        event_base_loopbreak(self->base_.get());
      },
      this));
  timeval deadline{static_cast<time_t>(options_.shutdownTimeout.count()), 0};
  evtimer_add(stopDeadline_.get(), &deadline);
}

} // namespace sockdispatch
