// HttpExchange: a busy connection's reader, writer, buffer and timer, handed from one
// connection to the next by ConnectionContext.
#include "http/http_exchange.h"

#include "http/http_connection.h"

#include <event2/buffer.h>

namespace sockdispatch {

HttpExchange::HttpExchange(event_base *base, int fd, const WorkerIdentity &who,
                           const HttpLimits &limits)
    : input(evbuffer_new()), timer(evtimer_new(
                                 base,
                                 [](evutil_socket_t, short, void *ctx) {
                                   static_cast<HttpExchange *>(ctx)->owner_->onTimer();
                                 },
                                 this)),
      reader(limits, *this), writer(base, fd, who, limits, *this) {}

HttpExchange::~HttpExchange() = default;

void HttpExchange::bind(HttpConnection &owner, int fd) {
  if (owner_ != nullptr) { // reused: made new again
    reader.reset();
    writer.attach(fd);
    evbuffer_drain(input.get(), evbuffer_get_length(input.get()));
    phase = RequestPhase::idle;
    closeAfterWrite = false;
    waitingForDrain = false;
    peerClosed = false;
  }
  owner_ = &owner;
}

bool HttpExchange::settled() const {
  return phase == RequestPhase::idle && !closeAfterWrite && !waitingForDrain && !peerClosed &&
         writer.done() && evbuffer_get_length(input.get()) == 0;
}

void HttpExchange::phaseEntered(RequestPhase entered) {
  owner_->phaseEntered(entered);
}
void HttpExchange::continueExpected() {
  owner_->continueExpected();
}
void HttpExchange::writeFailed() {
  owner_->writeFailed();
}
void HttpExchange::writeBlocked() {
  owner_->writeBlocked();
}
void HttpExchange::writeDrained(bool wasBlocked) {
  owner_->writeDrained(wasBlocked);
}
void HttpExchange::streamEnded(bool failed) {
  owner_->streamEnded(failed);
}

} // namespace sockdispatch
