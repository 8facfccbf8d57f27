#pragma once

#include "control/status_report.h"
#include "core/result.h"
#include "library/handler.h"

#include <functional>

namespace sockdispatch {

// What the status port answers (`attach --status-port`), all read-only:
//   /             the page: the scoreboard as a table and live charts, from /status.json
//   /status.js    the page's script, /status.css its style (no script or style from elsewhere)
//   /status.json  the document `status PORT --json` prints
//   /metrics      the text `status --prometheus` prints
// GET and HEAD only (405 with Allow otherwise); 404 for any other path; 503 with
// Retry-After when the attachment cannot be read right now (another command holds its lock).
class StatusPageHandler : public Handler {
public:
  // Reads the attachment as `status` does; it must not block.
  using Source = std::function<Result<AttachmentStatus>()>;

  explicit StatusPageHandler(Source source) : source_(std::move(source)) {}
  void handle(const Request &request, Response &response) const override;

private:
  Source source_;
};

// The master's source for its own port: readStatus without waiting for the pins' lock, the
// kernel-measured load split as `status` splits it.
StatusPageHandler::Source ownAttachmentSource(uint16_t port);

} // namespace sockdispatch
