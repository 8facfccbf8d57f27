// HttpConnection: answering a request, now or later (deferred answers).
#include "http_connection.h"

#include <spdlog/spdlog.h>

#include <exception>

namespace sockdispatch {

// The Deferral a handler receives for one request: defer() marks the connection as waiting
// and hands out a token for this request's sequence number.
class HttpConnection::RequestDeferral : public Deferral {
public:
  explicit RequestDeferral(HttpConnection &connection) : connection_(connection) {}
  PendingResponse defer() override {
    HttpConnection &c = connection_;
    if (c.awaiting_) {
      spdlog::error("a handler deferred the same request twice");
      return {};
    }
    c.awaiting_ = true;
    ++c.deferredSequence_;
    return PendingResponse(c.anchor_, c.deferredSequence_);
  }

private:
  HttpConnection &connection_;
};

void HttpConnection::answer() {
  Response response;
  RequestDeferral later(*this);
  try {
    handler_.respond(request_, response, later);
  } catch (const std::exception &error) {
    spdlog::error("handler failed on {} {}: {}", request_.method, request_.target, error.what());
    response = simpleResponse(500, reasonPhrase(500));
    awaiting_ = false;
    ++deferredSequence_; // a token it handed out before throwing answers nothing
  } catch (...) {
    spdlog::error("handler failed on {} {}: unknown exception", request_.method, request_.target);
    response = simpleResponse(500, reasonPhrase(500));
    awaiting_ = false;
    ++deferredSequence_;
  }
  if (awaiting_) {
    stopReading(); // the socket pushes back on the client until the answer is written
    armTimer();
    return;
  }
  sendAnswer(response);
}

void HttpConnection::sendAnswer(Response &response) {
  ++requestsAnswered_;
  bool lastAllowed = limits_.maxRequestsPerConnection != 0 &&
                     requestsAnswered_ >= limits_.maxRequestsPerConnection;
  // An upgrade is not taken: answer, then close, as the protocol switch never happened.
  // An HTTP/1.0 client learns a streamed body's end from the close.
  bool closeDelimited = response.stream != nullptr && request_.versionMinor == 0 &&
                        !request_.isHead() && !statusHasNoBody(response.status);
  bool keepAlive = request_.keepAlive && !response.close && !draining_ && !lastAllowed &&
                   parser_.upgrade == 0 && !closeDelimited;
  writeResponse(response, request_.isHead(), keepAlive);
  if (hooks_.requestAnswered) {
    hooks_.requestAnswered();
  }
  if (!keepAlive) {
    scheduleClose();
  }
}

bool HttpConnection::completeDeferred(uint64_t sequence, Response response) {
  if (closed_ || !awaiting_ || sequence != deferredSequence_) {
    return false;
  }
  awaiting_ = false;
  sendAnswer(response);
  if (closed_) {
    return true;
  }
  if (closeAfterWrite_ || answerPending()) {
    flush(); // closes once the answer is written; a streamed answer resumes reading itself
    return true;
  }
  // Waiting for the next request from now; take up what the client pipelined meanwhile.
  readDeadline_ = Clock::now() + idleWait();
  armTimer();
  startReading();
  processInput();
  if (peerClosed_ && !closed_ && !answerPending()) {
    scheduleClose();
  }
  return true;
}

} // namespace sockdispatch
