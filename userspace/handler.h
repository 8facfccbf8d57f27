#pragma once

#include "http_message.h"

#include <string>

namespace sockdispatch {

// Answers requests. Runs inside a worker's event loop: it must not block.
class Handler {
public:
  virtual ~Handler() = default;
  virtual void handle(const Request &request, Response &response) const = 0;
};

// Which process answers: stamped on every response (X-Sockdispatch-Worker) and shown by the
// built-in page, so clients and tests can see where the balancer sent them.
struct WorkerIdentity {
  std::string mode; // "ebpf" or "line"
  uint32_t slot = 0;
  pid_t pid = 0;
};

} // namespace sockdispatch
