#include "worker.h"

#include "builtin_page.h"
#include "fd_channel.h"
#include "server_hooks.h"
#include "static_files.h"

#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <csignal>
#include <cstring>
#include <vector>

namespace sockdispatch {

Worker::Worker(const AttachOptions &options, uint32_t slot, UniqueFd listener, UniqueFd channel,
               Scoreboard scoreboard, std::string mode)
    : options_(options), slot_(slot), listenerFd_(std::move(listener)),
      channel_(std::move(channel)),
      scoreboard_(scoreboard), identity_{std::move(mode), slot, ::getpid()},
      base_(event_base_new()) {}

int Worker::run() {
  if (!base_) {
    spdlog::error("Failed to create the event loop");
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
    auto files = StaticFileHandler::open(options_.root);
    if (!files) {
      spdlog::critical("{}", files.error().message());
      return kExitFatalConfig;
    }
    handler_ = std::move(files.value());
  }
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
  evconnlistener_set_error_cb(listener_.get(), [](evconnlistener *, void *) {
    // EMFILE/ENFILE and friends: libevent tries again on the next readiness.
    spdlog::debug("accept failed: {}", std::strerror(errno));
  });
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
}

void Worker::onControl() {
  auto received = receive(channel_.get());
  if (!received) {
    if (!wouldBlock(received.error())) {
      spdlog::warn("ignored a control message: {}", received.error().message());
    }
    return;
  }
  if (received->peerClosed) {
    spdlog::warn("the master is gone; stopping");
    event_del(controlEvent_.get()); // freed with the worker, not inside its own callback
    channel_.reset();
    beginStop();
    return;
  }
  if (received->message.messageType() == LineMessageType::kStopGracefully) {
    spdlog::debug("asked to stop gracefully");
    beginStop();
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
