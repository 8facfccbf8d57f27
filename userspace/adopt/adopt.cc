#include "adopt/adopt.h"

#include "adopt/adopted_group.h"
#include "bpf/dispatch_program.h"
#include "bpf/pin_dir.h"
#include "config/options.h"
#include "core/address.h"
#include "core/logging.h"

#include <spdlog/spdlog.h>

namespace sockdispatch {

int runAdopt(const AdoptOptions &options) {
  setupLogging("adopt", options.verbose);
  bridgeLibbpfLog();
  if (!options.bind.empty() && !parseAddress(options.bind, options.port)) {
    spdlog::error("adopt: --bind {} is not a numeric IPv4 or IPv6 address", options.bind);
    return kExitUsage;
  }
  if (auto mounted = ensureBpffs(); !mounted) {
    spdlog::error("adopt: {}", mounted.error().message());
    return kExitFailure;
  }
  auto scan = GroupScan::load(options.port);
  if (!scan) {
    spdlog::error("adopt: {}", scan.error().message());
    return kExitFailure;
  }
  AdoptedGroup group(options, std::move(scan.value()));
  try {
    group.adopt();
  } catch (const AdoptError &error) {
    spdlog::error("adopt: {}", error.what());
    return error.code;
  }
  return group.run();
}

} // namespace sockdispatch
