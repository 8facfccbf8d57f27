#pragma once

#include "http/http_message.h"

#include <cstdint>
#include <memory>

namespace sockdispatch {

// The connection side of a deferred answer (HttpConnection implements it).
class DeferredSink {
public:
  virtual ~DeferredSink() = default;
  // Writes the answer to request `sequence`; false when that request no longer waits.
  virtual bool completeDeferred(uint64_t sequence, Response response) = 0;
};

// A deferred answer to one request. Move-only; used on the worker's loop thread only. It
// holds the connection weakly: once the connection has closed or been freed, complete() is
// a no-op returning false, so work that outlives its client is harmless. Dropped without
// being completed, it answers 500, so a lost token never leaves a client waiting forever.
class PendingResponse {
public:
  PendingResponse() = default;
  PendingResponse(std::weak_ptr<DeferredSink *> sink, uint64_t sequence)
      : sink_(std::move(sink)), sequence_(sequence) {}
  ~PendingResponse();
  PendingResponse(PendingResponse &&other) noexcept;
  PendingResponse &operator=(PendingResponse &&other) noexcept;
  PendingResponse(const PendingResponse &) = delete;
  PendingResponse &operator=(const PendingResponse &) = delete;

  // Sends `response`. Returns false when the request is no longer waiting (its connection
  // closed) or this token was completed already.
  bool complete(Response response);
  [[nodiscard]] bool pending() const { return !sink_.expired(); }

private:
  std::weak_ptr<DeferredSink *> sink_;
  uint64_t sequence_ = 0;
};

} // namespace sockdispatch
