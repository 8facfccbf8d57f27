#pragma once

#include "library/handler.h"

namespace sockdispatch {

// The page served when no --root is given: says which mode and which worker served it.
// GET/HEAD/POST on "/" (a POST's body is read and its size reported); 404 elsewhere.
class BuiltinPageHandler : public Handler {
public:
  explicit BuiltinPageHandler(const WorkerIdentity &who) : who_(who) {}
  void handle(const Request &request, Response &response) const override;

private:
  const WorkerIdentity &who_;
};

} // namespace sockdispatch
