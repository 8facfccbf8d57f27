// The master's generations: the first one's start, and reload/restart, which start a new
// generation beside the serving one and retire the old one only once the new one serves.
#include "core/address.h"
#include "process/master.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>

namespace sockdispatch {

namespace {

constexpr auto kGenerationPoll = std::chrono::milliseconds(10);
constexpr auto kGenerationStartLimit = std::chrono::seconds(15);

std::string normalizedBind(const std::string &bind) {
  auto address = parseAddress(bind, 0);
  return address ? address->toString() : bind;
}

} // namespace

void Master::watchGeneration() {
  generationTimer_.reset(event_new(
      base_.get(), -1, EV_PERSIST,
      [](evutil_socket_t, short, void *ctx) { static_cast<Master *>(ctx)->checkGeneration(); },
      this));
  timeval poll{0, static_cast<suseconds_t>(std::chrono::microseconds(kGenerationPoll).count())};
  event_add(generationTimer_.get(), &poll);
}

void Master::checkGeneration() {
  uint64_t watching = nextGeneration_ != 0 ? nextGeneration_ : (ready_ ? 0 : generation_);
  if (stopping_ || watching == 0) {
    generationTimer_.reset();
    return;
  }
  auto slots = slotsOf(watching);
  bool serving = !slots.empty() && std::all_of(slots.begin(), slots.end(), [this](uint32_t s) {
    return scoreboard_.state(s) == SD_SLOT_RUNNING;
  });
  if (!serving) {
    if (nextGeneration_ != 0 && std::chrono::steady_clock::now() > generationDeadline_) {
      finishReload(false, "the new workers did not start within " +
                              std::to_string(kGenerationStartLimit.count()) + " s");
    }
    return;
  }
  if (nextGeneration_ == 0) {
    ready_ = true;
    generationTimer_.reset();
    if (readyCallback_) {
      readyCallback_();
    }
    return;
  }
  finishReload(true, {});
}

void Master::beginReload(bool rereadOptions) {
  const char *what = rereadOptions ? "reload" : "restart";
  if (stopping_) {
    return;
  }
  if (leaving_) {
    spdlog::warn("{}: the attachment is leaving (graceful stop); not starting a new generation",
                 what);
    return;
  }
  if (nextGeneration_ != 0 || !ready_) {
    spdlog::warn("{}: a generation of workers is still starting; try again once it serves", what);
    return;
  }
  Result<AttachOptions> loaded = rereadOptions ? reloadOptions_() : Result(*options_);
  if (!loaded) {
    spdlog::error("{}: {}; keeping the running configuration", what, loaded.error().message());
    return;
  }
  const AttachOptions &next = loaded.value();
  if (next.port != options_->port || normalizedBind(next.bind) != normalizedBind(options_->bind)) {
    spdlog::error("{}: the address cannot change in place (serving {}, configured {} port {}); "
                  "keeping the running configuration; detach and attach again to move",
                  what, mode_->address().toString(), next.bind, next.port);
    return;
  }
  if (next.command.empty() != options_->command.empty()) {
    spdlog::error("{}: workers cannot change from {} in place; keeping the running "
                  "configuration; detach and attach again",
                  what,
                  options_->command.empty() ? "built-in to a COMMAND" : "a COMMAND to built-in");
    return;
  }
  std::vector<uint32_t> free;
  for (const auto &worker : workers_) {
    if (worker.generation == 0 && worker.pid == 0) {
      free.push_back(worker.slot);
    }
  }
  const auto count = static_cast<size_t>(initialWorkers(next));
  if (free.size() < count) {
    spdlog::error("{}: {} workers need as many free slots beside the serving generation, and "
                  "{} of {} are free; keeping the running configuration",
                  what, count, free.size(), SD_MAX_WORKERS);
    return;
  }

  spdlog::info("{}: starting generation {} with {} workers", what, lastGeneration_ + 1, count);
  if (reloadingCallback_) {
    reloadingCallback_();
  }
  nextGeneration_ = ++lastGeneration_;
  pendingOptions_ = std::make_shared<const AttachOptions>(next);
  free.resize(count);
  for (uint32_t slot : free) {
    if (auto taken = takeSlot(slot, nextGeneration_, pendingOptions_); !taken) {
      finishReload(false, taken.error().message());
      return;
    }
  }
  for (uint32_t slot : free) {
    if (!spawn(slot, false)) {
      finishReload(false, "could not start the worker for slot " + std::to_string(slot));
      return;
    }
  }
  generationDeadline_ = std::chrono::steady_clock::now() + kGenerationStartLimit;
  watchGeneration();
}

Result<void> Master::takeSlot(uint32_t slot, uint64_t generation,
                              std::shared_ptr<const AttachOptions> options) {
  if (auto opened = mode_->openSlot(slot, *options); !opened) {
    return opened;
  }
  WorkerProcess &worker = workers_[slot];
  worker.generation = generation;
  worker.options = std::move(options);
  worker.backoff.reset();
  scoreboard_.resetCounters(slot);
  publishSlotCount();
  return {};
}

void Master::finishReload(bool committed, const std::string &why) {
  uint64_t starting = nextGeneration_;
  nextGeneration_ = 0;
  generationTimer_.reset();
  if (committed) {
    auto old = slotsOf(generation_);
    generation_ = starting;
    if (pendingOptions_->policy != options_->policy) {
      // The configuration's policy changed: it applies now (a policy set by `tune` is kept
      // across reloads that leave the configured one alone).
      storeRelease<__u32>(scoreboard_.config()->policy, pendingOptions_->policy);
    }
    options_ = pendingOptions_;
    for (uint32_t slot : old) {
      retire(slot);
    }
    std::atomic_ref<__u64>(scoreboard_.config()->generation).fetch_add(1);
    spdlog::info("generation {} serves with {} workers; {} retiring", generation_,
                 slotsOf(generation_).size(), old.size());
  } else {
    for (uint32_t slot : slotsOf(starting)) {
      retire(slot);
    }
    spdlog::error("reload abandoned: {}; generation {} keeps serving", why, generation_);
  }
  pendingOptions_.reset();
  if (reloadedCallback_) {
    reloadedCallback_(committed);
  }
}

} // namespace sockdispatch
