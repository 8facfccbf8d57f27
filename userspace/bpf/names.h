#pragma once

#include "sockdispatch/abi.h"

#include <optional>
#include <string>
#include <string_view>

namespace sockdispatch {

// The names operators type and read for the ABI's enums ("skip_load", "running", ...).
// Unknown values read "unknown".
std::string_view policyName(uint32_t policy);
std::string_view slotStateName(uint32_t state);
std::string_view modeName(uint32_t mode);
std::string_view verdictName(uint32_t verdict);
// Who keeps a slot's load: "worker" or "kernel".
std::string_view loadSourceName(uint32_t source);

// Every policy's name, comma-separated ("skip_load, least_conn, ...").
std::string policyNames();

// The policy a name stands for, or nullopt.
std::optional<sd_policy> policyFromName(std::string_view name);

} // namespace sockdispatch
