#include "library/pending_response.h"

namespace sockdispatch {

PendingResponse::~PendingResponse() {
  if (!sink_.expired()) {
    complete(simpleResponse(500, "the response was abandoned"));
  }
}

PendingResponse::PendingResponse(PendingResponse &&other) noexcept
    : sink_(std::move(other.sink_)), sequence_(other.sequence_) {
  other.sink_.reset();
}

PendingResponse &PendingResponse::operator=(PendingResponse &&other) noexcept {
  if (this != &other) {
    if (!sink_.expired()) {
      complete(simpleResponse(500, "the response was abandoned"));
    }
    sink_ = std::move(other.sink_);
    sequence_ = other.sequence_;
    other.sink_.reset();
  }
  return *this;
}

bool PendingResponse::complete(Response response) {
  std::shared_ptr<DeferredSink *> sink = sink_.lock();
  sink_.reset();
  if (!sink) {
    return false;
  }
  return (*sink)->completeDeferred(sequence_, std::move(response));
}

} // namespace sockdispatch
