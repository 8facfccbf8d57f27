#include "control/status_report.h"

#include "bpf/names.h"
#include "bpf/pin_dir.h"
#include "control/pinned_attachment.h"
#include "core/monotonic_clock.h"

#include <bpf/bpf.h>
#include <dirent.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>

namespace sockdispatch {

namespace {

// How long the worker had been inside its current handler call when the status was read, in
// microseconds; 0 between calls.
uint64_t busyMicros(const AttachmentStatus &status, const SlotSnapshot &worker) {
  if (worker.busySince == 0 || status.readAtNs <= worker.busySince) {
    return 0;
  }
  return (status.readAtNs - worker.busySince) / 1000;
}

void readProgramStats(const std::string &dir, AttachmentStatus &status) {
  UniqueFd prog(bpf_obj_get((dir + "/" + kPinProgram).c_str()));
  if (!prog) {
    return;
  }
  bpf_prog_info info{};
  uint32_t length = sizeof(info);
  if (bpf_obj_get_info_by_fd(prog.get(), &info, &length) == 0) {
    status.programId = info.id;
    status.programRunTimeNs = info.run_time_ns;
    status.programRunCount = info.run_cnt;
  }
}

void readListenerCookies(PinnedAttachment &attachment, AttachmentStatus &status) {
  for (const SlotSnapshot &worker : status.workers) {
    if (worker.loadSource != SD_LOAD_KERNEL) {
      continue;
    }
    auto cookie = attachment.socketCookie(worker.slot);
    if (cookie) {
      status.listenerCookies[worker.slot] = cookie.value();
    } else if (cookie.error().code != ENOENT) { // ENOENT: no listener, nothing queued
      status.notes.push_back(cookie.error().message());
    }
  }
}

nlohmann::json toJson(const AttachmentStatus &status) {
  nlohmann::json workers = nlohmann::json::array();
  for (const auto &w : status.workers) {
    ShownLoad load = shownLoad(status, w);
    nlohmann::json worker = {{"slot", w.slot},
                             {"pid", w.pid},
                             {"state", slotStateName(w.state)},
                             {"draining", w.draining != 0},
                             {"weight", w.weight},
                             {"open", load.open},
                             {"accepted", w.accepted},
                             {"requests", w.requests},
                             {"skipped", w.skipped},
                             {"selected", w.selected},
                             {"queued", load.queued},
                             {"busy_us", busyMicros(status, w)},
                             {"respawns", w.respawns},
                             {"generation", w.generation},
                             {"load_source", loadSourceName(w.loadSource)}};
    if (load.acceptQueue) {
      worker["accept_queue"] = *load.acceptQueue;
    }
    workers.push_back(std::move(worker));
  }
  nlohmann::json verdicts = nlohmann::json::object();
  for (uint32_t v = 0; v < SD_NR_VERDICTS; ++v) {
    verdicts[std::string(verdictName(v))] = status.verdicts[v];
  }
  nlohmann::json program = {{"id", status.programId},
                            {"run_time_ns", status.programRunTimeNs},
                            {"run_count", status.programRunCount}};
  return {{"port", status.port},
          {"mode", modeName(status.config.mode)},
          {"policy", policyName(status.config.policy)},
          {"abi_version", status.config.abi_version},
          {"master_pid", status.config.master_pid},
          {"stale", !status.masterAlive},
          {"stopping", status.config.stopping != 0},
          {"generation", status.config.generation},
          {"program", program},
          {"workers", workers},
          {"verdicts", verdicts}};
}

} // namespace

bool hasKernelMeasuredSlots(const AttachmentStatus &status) {
  return std::any_of(status.workers.begin(), status.workers.end(),
                     [](const SlotSnapshot &w) { return w.loadSource == SD_LOAD_KERNEL; });
}

void applyAcceptQueues(AttachmentStatus &status, const std::vector<ListenerInfo> &listeners) {
  for (const auto &[slot, cookie] : status.listenerCookies) {
    auto listener =
        std::find_if(listeners.begin(), listeners.end(),
                     [cookie = cookie](const ListenerInfo &l) { return l.cookie == cookie; });
    if (listener != listeners.end()) {
      status.acceptQueues[slot] = listener->acceptQueue;
    } else {
      status.notes.push_back(fmt::format("the listener of slot {} (socket cookie {}) is not "
                                         "among port {}'s listeners in this network namespace",
                                         slot, cookie, status.port));
    }
  }
}

ShownLoad shownLoad(const AttachmentStatus &status, const SlotSnapshot &worker) {
  ShownLoad shown{worker.open, worker.queued, std::nullopt};
  auto queue = status.acceptQueues.find(worker.slot);
  if (worker.loadSource != SD_LOAD_KERNEL || queue == status.acceptQueues.end()) {
    return shown;
  }
  // The two are read microseconds apart, and a child reset while queued has left `open` but
  // not the queue: clamp rather than wrap.
  shown.open = worker.open > queue->second ? worker.open - queue->second : 0;
  shown.queued = worker.queued + queue->second;
  shown.acceptQueue = queue->second;
  return shown;
}

std::vector<uint16_t> attachedPorts() {
  std::vector<uint16_t> ports;
  // eBPF attachments are pin directories, line ones run directories: both named by port.
  for (const std::string &base : {pinBaseDir(), runBaseDir()}) {
    DIR *stream = ::opendir(base.c_str());
    if (stream == nullptr) {
      continue;
    }
    while (dirent *entry = ::readdir(stream)) {
      std::string name = entry->d_name;
      bool digits =
          !name.empty() && name.size() <= 5 &&
          std::all_of(name.begin(), name.end(), [](unsigned char c) { return std::isdigit(c); });
      if (digits && std::stoul(name) <= 65535) {
        ports.push_back(static_cast<uint16_t>(std::stoul(name)));
      }
    }
    ::closedir(stream);
  }
  std::sort(ports.begin(), ports.end());
  ports.erase(std::unique(ports.begin(), ports.end()), ports.end());
  return ports;
}

Result<AttachmentStatus> readStatus(uint16_t port, std::chrono::milliseconds lockTimeout) {
  auto locked = openLocked(port, false, false, lockTimeout);
  if (!locked) {
    return locked.error();
  }
  PinnedAttachment *attachment = &locked->pins;
  AttachmentStatus status;
  status.port = port;
  Scoreboard board = attachment->scoreboard();
  status.config = *board.config();
  status.workers = board.snapshotAll();
  status.readAtNs = monotonicNs();
  status.masterAlive = attachment->lineMode()
                           ? attachment->heldBy(status.config.master_pid).value_or(true)
                           : processAlive(status.config.master_pid);
  auto verdicts = attachment->verdicts();
  if (!verdicts) {
    return verdicts.error();
  }
  status.verdicts = verdicts.value();
  if (!attachment->lineMode()) {
    readProgramStats(pinDirFor(port), status);
    readListenerCookies(*attachment, status);
  }
  return status;
}

std::string formatTable(const AttachmentStatus &status) {
  std::string program = status.config.mode == SD_MODE_LINE
                            ? std::string("no program (the workers pass connections)")
                            : fmt::format("program id {}", status.programId);
  std::string out =
      fmt::format("port {}  mode {}  policy {}  master pid {}{}{}  {}  map ABI {}\n", status.port,
                  modeName(status.config.mode), policyName(status.config.policy),
                  status.config.master_pid, status.masterAlive ? "" : " (not running: stale state)",
                  status.config.stopping != 0 ? " (stopping: new connections refused)" : "",
                  program, status.config.abi_version);
  if (status.programRunCount > 0) {
    out += fmt::format("program: {} decisions, {:.0f} ns each on average\n", status.programRunCount,
                       static_cast<double>(status.programRunTimeNs) /
                           static_cast<double>(status.programRunCount));
  }
  // A `queued` column where some slot's open would hide it (kernel-measured slots), and in
  // line mode: what waits in a worker's input (a frozen worker's grows).
  bool showQueued = hasKernelMeasuredSlots(status) || status.config.mode == SD_MODE_LINE;
  auto row = [&](const auto &slot, const auto &pid, const auto &state, const auto &weight,
                 const auto &open, const auto &queued, const auto &accepted, const auto &requests,
                 const auto &skipped, const auto &selected) {
    out += fmt::format("{:>4}  {:>8}  {:<9} {:>6}  {:>8}  ", slot, pid, state, weight, open);
    if (showQueued) {
      out += fmt::format("{:>8}  ", queued);
    }
    out += fmt::format("{:>10}  {:>10}  {:>10}  {:>10}\n", accepted, requests, skipped, selected);
  };
  row("slot", "pid", "state", "weight", "open", "queued", "accepted", "requests", "skipped",
      "selected");
  std::string measured;
  std::string unsplit;
  for (const auto &w : status.workers) {
    std::string state(slotStateName(w.state));
    if (w.draining != 0) {
      state += "*";
    }
    ShownLoad load = shownLoad(status, w);
    row(w.slot, w.pid, state, w.weight, load.open, load.queued, w.accepted, w.requests, w.skipped,
        w.selected);
    if (w.loadSource == SD_LOAD_KERNEL) {
      std::string &list = load.acceptQueue ? measured : unsplit;
      list += fmt::format("{}{}", list.empty() ? "" : " ", w.slot);
    }
  }
  if (!measured.empty()) {
    out += fmt::format("measured by the kernel (slots {}): queued includes the listener's accept "
                       "queue\n",
                       measured);
  }
  if (!unsplit.empty()) {
    out += fmt::format("measured by the kernel (slots {}): open includes the listener's accept "
                       "queue (not read)\n",
                       unsplit);
  }
  out += "verdicts:";
  for (uint32_t v = 0; v < SD_NR_VERDICTS; ++v) {
    out += fmt::format(" {} {}{}", verdictName(v), status.verdicts[v],
                       v + 1 < SD_NR_VERDICTS ? "," : "\n");
  }
  return out;
}

std::string formatJson(const AttachmentStatus &status) {
  return toJson(status).dump(2) + "\n";
}

std::string formatJson(const std::vector<AttachmentStatus> &all) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto &status : all) {
    list.push_back(toJson(status));
  }
  return list.dump(2) + "\n";
}

std::string formatPrometheus(const std::vector<AttachmentStatus> &all) {
  struct Metric {
    const char *name;
    const char *type;
    const char *help;
    uint64_t (*value)(const SlotSnapshot &);
  };
  static const Metric kWorkerMetrics[] = {

      {"sockdispatch_worker_accepted_total", "counter", "Connections the worker accepted.",
       [](const SlotSnapshot &w) { return w.accepted; }},
      {"sockdispatch_worker_requests_total", "counter", "Requests the worker answered.",
       [](const SlotSnapshot &w) { return w.requests; }},
      {"sockdispatch_worker_skipped_total", "counter", "skip_load passes over the worker.",
       [](const SlotSnapshot &w) { return w.skipped; }},
      {"sockdispatch_worker_selected_total", "counter", "Times the policy chose the worker.",
       [](const SlotSnapshot &w) { return w.selected; }},
      {"sockdispatch_worker_respawns_total", "counter", "Times the worker slot was respawned.",
       [](const SlotSnapshot &w) { return w.respawns; }},
      {"sockdispatch_worker_up", "gauge", "1 when the worker serves, 0 otherwise.",
       [](const SlotSnapshot &w) { return static_cast<uint64_t>(w.state == SD_SLOT_RUNNING); }},
      {"sockdispatch_worker_weight", "gauge", "The worker's weight for the weighted policy.",
       [](const SlotSnapshot &w) { return static_cast<uint64_t>(w.weight); }},

  };
  std::string out = "# HELP sockdispatch_info Attachment of a port: mode and policy in labels.\n"
                    "# TYPE sockdispatch_info gauge\n";
  for (const auto &s : all) {
    out += fmt::format("sockdispatch_info{{port=\"{}\",mode=\"{}\",policy=\"{}\"}} {}\n", s.port,
                       modeName(s.config.mode), policyName(s.config.policy), s.masterAlive ? 1 : 0);
  }
  // One metric: its HELP and TYPE lines, then a sample per worker of every attachment.
  auto addWorkerMetric = [&](const char *name, const char *type, const char *help,
                             const auto &sample) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    for (const auto &s : all) {
      for (const auto &w : s.workers) {
        out +=
            fmt::format("{}{{port=\"{}\",slot=\"{}\"}} {}\n", name, s.port, w.slot, sample(s, w));
      }
    }
  };
  addWorkerMetric(
      "sockdispatch_worker_open_connections", "gauge", "Connections open in the worker now.",
      [](const AttachmentStatus &s, const SlotSnapshot &w) { return shownLoad(s, w).open; });
  for (const auto &metric : kWorkerMetrics) {
    addWorkerMetric(
        metric.name, metric.type, metric.help,
        [&](const AttachmentStatus &, const SlotSnapshot &w) { return metric.value(w); });
  }
  addWorkerMetric(
      "sockdispatch_worker_queued_connections", "gauge",
      "Connections chosen for the worker still in its listen queue.",
      [](const AttachmentStatus &s, const SlotSnapshot &w) { return shownLoad(s, w).queued; });
  // Only where the split was made (kernel-measured slots): so native attachments print as before.
  std::string acceptQueues;
  for (const auto &s : all) {
    for (const auto &w : s.workers) {
      if (auto queue = shownLoad(s, w).acceptQueue) {
        acceptQueues += fmt::format(
            "sockdispatch_worker_accept_queue_connections{{port=\"{}\",slot=\"{}\"}} {}\n", s.port,
            w.slot, *queue);
      }
    }
  }
  if (!acceptQueues.empty()) {
    out += "# HELP sockdispatch_worker_accept_queue_connections Connections in the listener's "
           "accept queue of a worker whose load the kernel measures (counted in queued).\n"
           "# TYPE sockdispatch_worker_accept_queue_connections gauge\n" +
           acceptQueues;
  }
  addWorkerMetric("sockdispatch_worker_busy_seconds", "gauge",
                  "How long the worker has been inside its current handler call (0 between calls).",
                  [](const AttachmentStatus &s, const SlotSnapshot &w) {
                    return static_cast<double>(busyMicros(s, w)) / 1e6;
                  });
  out += "# HELP sockdispatch_verdicts_total Dispatch decisions by reason.\n"
         "# TYPE sockdispatch_verdicts_total counter\n";
  for (const auto &s : all) {
    for (uint32_t v = 0; v < SD_NR_VERDICTS; ++v) {
      out += fmt::format("sockdispatch_verdicts_total{{port=\"{}\",verdict=\"{}\"}} {}\n", s.port,
                         verdictName(v), s.verdicts[v]);
    }
  }
  return out;
}

namespace {

Result<std::vector<ListenerInfo>> listenersOf(const AttachmentStatus &status) {
  auto listeners = dumpTcpListeners(status.port, AF_INET);
  if (!listeners) {
    return listeners;
  }
  for (const auto &[slot, cookie] : status.listenerCookies) {
    auto found =
        std::find_if(listeners->begin(), listeners->end(),
                     [cookie = cookie](const ListenerInfo &l) { return l.cookie == cookie; });
    if (found == listeners->end()) {
      auto v6 = dumpTcpListeners(status.port, AF_INET6);
      if (!v6) {
        return v6;
      }
      listeners->insert(listeners->end(), v6->begin(), v6->end());
      break;
    }
  }
  return listeners;
}

} // namespace

void splitKernelLoad(AttachmentStatus &status) {
  if (status.listenerCookies.empty()) {
    return;
  }
  auto listeners = listenersOf(status);
  if (listeners) {
    applyAcceptQueues(status, listeners.value());
  } else {
    status.notes.push_back(listeners.error().message());
  }
}

} // namespace sockdispatch
