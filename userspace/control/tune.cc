#include "control/tune.h"

#include "bpf/names.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <charconv>

namespace sockdispatch {

namespace {

// A whole decimal number: no sign, no spaces, no trailing bytes.
std::optional<uint64_t> parseNumber(std::string_view text) {
  if (text.empty() || text.size() > 10 ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  uint64_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) {
    return std::nullopt;
  }
  return value;
}

std::variant<uint32_t, Refusal> parseSlot(std::string_view flag, std::string_view text) {
  auto slot = parseNumber(text);
  if (!slot || *slot >= SD_MAX_WORKERS) {
    return Refusal{
        fmt::format("{} '{}' is not a worker slot (0 to {})", flag, text, SD_MAX_WORKERS - 1)};
  }
  return static_cast<uint32_t>(*slot);
}

std::variant<std::pair<uint32_t, uint32_t>, Refusal> parseWeight(std::string_view text) {
  auto equals = text.find('=');
  if (equals == std::string_view::npos) {
    return Refusal{fmt::format("--weight '{}' is not SLOT=WEIGHT (e.g. 3=2)", text)};
  }
  auto slot = parseSlot("--weight", text.substr(0, equals));
  if (auto *refused = std::get_if<Refusal>(&slot)) {
    refused->reason += fmt::format(" in '{}'", text);
    return *refused;
  }
  std::string_view weightText = text.substr(equals + 1);
  auto weight = parseNumber(weightText);
  if (!weight || *weight > kMaxWeight) {
    return Refusal{fmt::format("--weight '{}': weight '{}' is not a whole number from 0 to {}",
                               text, weightText, kMaxWeight)};
  }
  return std::pair{std::get<uint32_t>(slot), static_cast<uint32_t>(*weight)};
}

bool contains(const std::vector<uint32_t> &slots, uint32_t slot) {
  return std::find(slots.begin(), slots.end(), slot) != slots.end();
}

} // namespace

std::variant<TuneRequest, Refusal> parseTuneFlags(const TuneFlags &flags) {
  TuneRequest request;
  if (!flags.policy.empty()) {
    request.policy = policyFromName(flags.policy);
    if (!request.policy) {
      return Refusal{
          fmt::format("--policy '{}' is not a policy (one of: {})", flags.policy, policyNames())};
    }
  }
  for (const auto &text : flags.weights) {
    auto weight = parseWeight(text);
    if (auto *refused = std::get_if<Refusal>(&weight)) {
      return *refused;
    }
    request.weights.push_back(std::get<std::pair<uint32_t, uint32_t>>(weight));
  }
  struct SlotList {
    const char *flag;
    const std::vector<std::string> &texts;
    std::vector<uint32_t> &slots;
  };
  for (const SlotList &list : {SlotList{"--drain", flags.drain, request.drain},
                               SlotList{"--undrain", flags.undrain, request.undrain}}) {
    for (const auto &text : list.texts) {
      auto slot = parseSlot(list.flag, text);
      if (auto *refused = std::get_if<Refusal>(&slot)) {
        return *refused;
      }
      list.slots.push_back(std::get<uint32_t>(slot));
    }
  }
  return request;
}

std::optional<Refusal> checkTuneRequest(const TuneRequest &request, const sd_config &config) {
  uint32_t count = std::min<uint32_t>(loadRelaxed(config.nr_slots), SD_MAX_WORKERS);
  auto outOfRange = [&](std::string_view flag, uint32_t slot) -> std::optional<Refusal> {
    if (slot < count) {
      return std::nullopt;
    }
    return Refusal{fmt::format("{} slot {} is out of range: port {} has slots 0 to {}", flag, slot,
                               loadRelaxed(config.port), count == 0 ? 0 : count - 1)};
  };
  for (const auto &[slot, weight] : request.weights) {
    if (auto refused = outOfRange("--weight", slot)) {
      return refused;
    }
  }
  for (uint32_t slot : request.drain) {
    if (auto refused = outOfRange("--drain", slot)) {
      return refused;
    }
    if (contains(request.undrain, slot)) {
      return Refusal{fmt::format("slot {} is given to both --drain and --undrain", slot)};
    }
  }
  for (uint32_t slot : request.undrain) {
    if (auto refused = outOfRange("--undrain", slot)) {
      return refused;
    }
  }
  return std::nullopt;
}

std::vector<std::string> applyTune(const TuneRequest &request, Scoreboard &board) {
  std::vector<std::string> changes;
  sd_config *config = board.config();
  for (const auto &[slot, weight] : request.weights) {
    uint32_t before = board.snapshot(slot).weight;
    board.setWeight(slot, weight);
    changes.push_back(before == weight
                          ? fmt::format("slot {}: weight {} (unchanged)", slot, weight)
                          : fmt::format("slot {}: weight {} -> {}", slot, before, weight));
  }
  for (uint32_t slot : request.drain) {
    bool was = board.snapshot(slot).draining != 0;
    board.setDraining(slot, true);
    changes.push_back(fmt::format("slot {}: draining{}", slot, was ? " (unchanged)" : ""));
  }
  for (uint32_t slot : request.undrain) {
    bool was = board.snapshot(slot).draining != 0;
    board.setDraining(slot, false);
    changes.push_back(fmt::format("slot {}: serving{}", slot, was ? "" : " (unchanged)"));
  }
  // The policy last: a new policy never runs on the old weights or drains.
  if (request.policy) {
    uint32_t before = loadRelaxed(config->policy);
    storeRelease<__u32>(config->policy, *request.policy);
    changes.push_back(
        before == *request.policy
            ? fmt::format("policy: {} (unchanged)", policyName(before))
            : fmt::format("policy: {} -> {}", policyName(before), policyName(*request.policy)));
  }
  std::atomic_ref<__u64>(config->generation).fetch_add(1, std::memory_order_acq_rel);
  return changes;
}

} // namespace sockdispatch
