#include "bpf/names.h"

#include <array>

namespace sockdispatch {

namespace {

constexpr std::array<std::string_view, SD_NR_POLICIES> kPolicies{
    "skip_load", "least_conn", "p2c", "round_robin", "weighted", "hash"};
constexpr std::array<std::string_view, SD_NR_SLOT_STATES> kStates{"empty",    "starting", "running",
                                                                  "stopping", "dead",     "full"};
constexpr std::array<std::string_view, SD_NR_VERDICTS> kVerdicts{
    "selected",      "migrated",  "hash",           "no_live_worker",
    "select_failed", "no_config", "migrate_failed", "stopping"};

template <size_t N>
std::string_view lookup(const std::array<std::string_view, N> &names, uint32_t value) {
  return value < N ? names[value] : std::string_view("unknown");
}

} // namespace

std::string_view policyName(uint32_t policy) {
  return lookup(kPolicies, policy);
}
std::string_view slotStateName(uint32_t state) {
  return lookup(kStates, state);
}
std::string_view verdictName(uint32_t verdict) {
  return lookup(kVerdicts, verdict);
}

std::string_view modeName(uint32_t mode) {
  switch (mode) {
  case SD_MODE_EBPF: return "ebpf";
  case SD_MODE_LINE: return "line";
  case SD_MODE_ADOPT: return "adopt";
  default: return "unknown";
  }
}

std::string_view loadSourceName(uint32_t source) {
  switch (source) {
  case SD_LOAD_WORKER: return "worker";
  case SD_LOAD_KERNEL: return "kernel";
  default: return "unknown";
  }
}

std::optional<sd_policy> policyFromName(std::string_view name) {
  for (uint32_t i = 0; i < kPolicies.size(); ++i) {
    if (kPolicies[i] == name) {
      return static_cast<sd_policy>(i);
    }
  }
  return std::nullopt;
}

std::string policyNames() {
  std::string names;
  for (uint32_t policy = 0; policy < SD_NR_POLICIES; ++policy) {
    names += policy == 0 ? "" : ", ";
    names += policyName(policy);
  }
  return names;
}

} // namespace sockdispatch
