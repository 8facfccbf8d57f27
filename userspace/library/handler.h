#pragma once

#include "http/http_message.h"
#include "library/pending_response.h"

#include <string>

namespace sockdispatch {

// Given to a handler that may answer later: defer() takes the answer out of the current
// call. The request's connection then waits (reading nothing more, so pipelined requests
// keep their order) until the returned PendingResponse is completed.
class Deferral {
public:
  virtual ~Deferral() = default;
  virtual PendingResponse defer() = 0;
};

// Answers requests. Runs inside a worker's event loop: it must not block.
class Handler {
public:
  virtual ~Handler() = default;
  virtual void handle(const Request &request, Response &response) const = 0;
  // Answers now into `response`, or calls later.defer() and completes the token afterwards
  // (then `response` is ignored). A handler that throws is answered 500.
  virtual void respond(const Request &request, Response &response, Deferral &later) const {
    (void)later;
    handle(request, response);
  }
};

// Which process answers: stamped on every response (X-Sockdispatch-Worker) and shown by the
// built-in page, so clients and tests can see where the balancer sent them.
struct WorkerIdentity {
  std::string mode; // "ebpf" or "line"
  uint32_t slot = 0;
  pid_t pid = 0;
  // Whether responses carry X-Sockdispatch-Worker (not the master's own status port).
  bool stamped = true;
};

} // namespace sockdispatch
