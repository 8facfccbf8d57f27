// The renderings of `sockdispatch status` on a hand-made attachment: the JSON schema (parsed
// back), the table, and the Prometheus text format.
#include "bpf/names.h"
#include "control/status_report.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sstream>

namespace sockdispatch {
namespace {

AttachmentStatus sample() {
  AttachmentStatus status;
  status.port = 8080;
  status.config.abi_version = SD_ABI_VERSION;
  status.config.policy = SD_POLICY_SKIP_LOAD;
  status.config.mode = SD_MODE_EBPF;
  status.config.nr_slots = 2;
  status.config.master_pid = 4242;
  status.masterAlive = true;
  status.programId = 17;
  for (uint32_t slot = 0; slot < 2; ++slot) {
    SlotSnapshot w;
    w.slot = slot;
    w.pid = 5000 + slot;
    w.state = SD_SLOT_RUNNING;
    w.open = 3 + slot;
    w.accepted = 10 + slot;
    w.requests = 100 + slot;
    w.skipped = 7;
    w.selected = 10 + slot;
    status.workers.push_back(w);
  }
  status.workers[1].draining = 1;
  status.workers[1].queued = 2;
  status.readAtNs = 9'000'000'000ULL;
  status.workers[1].busySince = status.readAtNs - 1'500'000; // 1.5 ms into one handler call
  status.verdicts[SD_VERDICT_SELECTED] = 21;
  status.verdicts[SD_VERDICT_SELECT_FAILED] = 2;
  return status;
}

TEST(StatusReport, JsonCarriesTheDocumentedSchema) {
  auto json = nlohmann::json::parse(formatJson(sample()));
  EXPECT_EQ(json["port"], 8080);
  EXPECT_EQ(json["mode"], "ebpf");
  EXPECT_EQ(json["policy"], "skip_load");
  EXPECT_EQ(json["master_pid"], 4242);
  EXPECT_EQ(json["stale"], false);
  EXPECT_EQ(json["stopping"], false);
  EXPECT_EQ(json["program"]["id"], 17);
  ASSERT_EQ(json["workers"].size(), 2U);
  const auto &w = json["workers"][1];
  EXPECT_EQ(w["slot"], 1);
  EXPECT_EQ(w["pid"], 5001);
  EXPECT_EQ(w["state"], "running");
  EXPECT_EQ(w["draining"], true);
  EXPECT_EQ(w["open"], 4);
  EXPECT_EQ(w["accepted"], 11);
  EXPECT_EQ(w["requests"], 101);
  EXPECT_EQ(w["skipped"], 7);
  EXPECT_EQ(w["weight"], 1);
  EXPECT_EQ(w["queued"], 2);
  EXPECT_EQ(w["busy_us"], 1500);
  EXPECT_EQ(json["workers"][0]["busy_us"], 0) << "between calls";
  EXPECT_EQ(json["verdicts"]["selected"], 21);
  EXPECT_EQ(json["verdicts"]["select_failed"], 2);
  EXPECT_EQ(json["verdicts"].size(), static_cast<size_t>(SD_NR_VERDICTS));
}

TEST(StatusReport, JsonListForEveryAttachment) {
  auto json = nlohmann::json::parse(formatJson(std::vector<AttachmentStatus>{sample(), sample()}));
  ASSERT_TRUE(json.is_array());
  EXPECT_EQ(json.size(), 2U);
}

TEST(StatusReport, TableShowsEveryWorkerAndVerdict) {
  std::string table = formatTable(sample());
  EXPECT_NE(table.find("port 8080  mode ebpf  policy skip_load  master pid 4242"),
            std::string::npos)
      << table;
  EXPECT_NE(table.find("running*"), std::string::npos) << "draining is marked: " << table;
  EXPECT_NE(table.find("select_failed 2"), std::string::npos) << table;
  auto stale = sample();
  stale.masterAlive = false;
  EXPECT_NE(formatTable(stale).find("stale"), std::string::npos);
  EXPECT_EQ(table.find("stopping:"), std::string::npos) << table;
  auto stopping = sample();
  stopping.config.stopping = 1;
  EXPECT_NE(formatTable(stopping).find("(stopping: new connections refused)"), std::string::npos);
  EXPECT_EQ(nlohmann::json::parse(formatJson(stopping))["stopping"], true);
}

TEST(StatusReport, PrometheusTextFormat) {
  std::string text = formatPrometheus({sample()});
  EXPECT_NE(text.find("# TYPE sockdispatch_worker_requests_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("sockdispatch_worker_requests_total{port=\"8080\",slot=\"1\"} 101\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("sockdispatch_verdicts_total{port=\"8080\",verdict=\"selected\"} 21\n"),
            std::string::npos);
  EXPECT_NE(text.find("sockdispatch_worker_queued_connections{port=\"8080\",slot=\"1\"} 2\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("sockdispatch_worker_busy_seconds{port=\"8080\",slot=\"1\"} 0.0015\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("sockdispatch_worker_busy_seconds{port=\"8080\",slot=\"0\"} 0\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("sockdispatch_info{port=\"8080\",mode=\"ebpf\",policy=\"skip_load\"} 1\n"),
            std::string::npos);
  // Every sample line is "name{labels} value".
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') {
      continue;
    }
    EXPECT_NE(line.find("} "), std::string::npos) << line;
  }
}

// sample() with slot 1 kept by the kernel (a COMMAND worker): 9 connections from handshake to
// close, 1 chosen whose handshake is not done, and its listener (cookie 77) found with `queue`
// in its accept queue, beside another port's listener.
AttachmentStatus kernelSample(uint32_t queue, uint64_t open = 9) {
  AttachmentStatus status = sample();
  status.workers[1].loadSource = SD_LOAD_KERNEL;
  status.workers[1].open = open;
  status.workers[1].queued = 1;
  status.listenerCookies[1] = 77;
  ListenerInfo other;
  other.cookie = 78;
  other.acceptQueue = 40;
  ListenerInfo mine;
  mine.cookie = 77;
  mine.acceptQueue = queue;
  applyAcceptQueues(status, {other, mine});
  return status;
}

TEST(StatusReport, AKernelMeasuredSlotShowsItsAcceptQueueAsQueuedNotOpen) {
  AttachmentStatus status = kernelSample(6);
  EXPECT_TRUE(status.notes.empty());
  ShownLoad load = shownLoad(status, status.workers[1]);
  EXPECT_EQ(load.open, 3U) << "9 - 6";
  EXPECT_EQ(load.queued, 7U) << "1 + 6";
  EXPECT_EQ(load.acceptQueue, 6U);

  auto json = nlohmann::json::parse(formatJson(status));
  const auto &kernel = json["workers"][1];
  EXPECT_EQ(kernel["load_source"], "kernel");
  EXPECT_EQ(kernel["open"], 3);
  EXPECT_EQ(kernel["queued"], 7);
  EXPECT_EQ(kernel["accept_queue"], 6);
  EXPECT_EQ(kernel["accepted"], 11) << "the other counters as they are";
  const auto &native = json["workers"][0];
  EXPECT_EQ(native["load_source"], "worker");
  EXPECT_EQ(native["open"], 3);
  EXPECT_EQ(native["queued"], 0);
  EXPECT_FALSE(native.contains("accept_queue"));

  std::string text = formatPrometheus({status});
  EXPECT_NE(text.find("sockdispatch_worker_open_connections{port=\"8080\",slot=\"1\"} 3\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("sockdispatch_worker_queued_connections{port=\"8080\",slot=\"1\"} 7\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("sockdispatch_worker_accept_queue_connections{port=\"8080\",slot=\"1\"} 6\n"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("sockdispatch_worker_accept_queue_connections{port=\"8080\",slot=\"0\"}"),
            std::string::npos)
      << "only where the split was made";
  EXPECT_NE(text.find("# TYPE sockdispatch_worker_accept_queue_connections gauge\n"),
            std::string::npos);

  std::string table = formatTable(status);
  EXPECT_NE(table.find("    open    queued    accepted"), std::string::npos)
      << "a queued column: " << table;
  EXPECT_NE(table.find("measured by the kernel (slots 1): queued includes the listener's accept "
                       "queue"),
            std::string::npos)
      << table;
  // Slot 1's row: open 3, queued 7.
  EXPECT_NE(table.find("running*       1         3         7"), std::string::npos) << table;
}

TEST(StatusReport, AnOpenReadBeforeItsQueueGrewIsClampedAtZero) {
  AttachmentStatus status = kernelSample(/*queue=*/5, /*open=*/2);
  ShownLoad load = shownLoad(status, status.workers[1]);
  EXPECT_EQ(load.open, 0U);
  EXPECT_EQ(load.queued, 6U);
}

TEST(StatusReport, AKernelSlotWhoseListenerIsNotFoundIsShownUnsplitWithANote) {
  AttachmentStatus status = sample();
  status.workers[1].loadSource = SD_LOAD_KERNEL;
  status.workers[1].open = 9;
  status.listenerCookies[1] = 77;
  ListenerInfo other;
  other.cookie = 78;
  applyAcceptQueues(status, {other});
  ASSERT_EQ(status.notes.size(), 1U);
  EXPECT_NE(status.notes[0].find("the listener of slot 1 (socket cookie 77) is not among port "
                                 "8080's listeners"),
            std::string::npos)
      << status.notes[0];
  auto json = nlohmann::json::parse(formatJson(status));
  EXPECT_EQ(json["workers"][1]["open"], 9) << "today's number";
  EXPECT_EQ(json["workers"][1]["queued"], 2);
  EXPECT_EQ(json["workers"][1]["load_source"], "kernel");
  EXPECT_FALSE(json["workers"][1].contains("accept_queue"));
  EXPECT_NE(formatTable(status).find("measured by the kernel (slots 1): open includes the "
                                     "listener's accept queue (not read)"),
            std::string::npos)
      << formatTable(status);
  EXPECT_EQ(formatPrometheus({status}).find("accept_queue"), std::string::npos);
}

TEST(StatusReport, NativeWorkersPrintAsBefore) {
  AttachmentStatus status = sample();
  EXPECT_FALSE(hasKernelMeasuredSlots(status));
  std::string table = formatTable(status);
  EXPECT_EQ(table.find("queued"), std::string::npos) << table;
  EXPECT_EQ(table.find("kernel"), std::string::npos) << table;
  EXPECT_NE(table.find("slot       pid  state     weight      open    accepted    requests"),
            std::string::npos)
      << table;
  EXPECT_EQ(formatPrometheus({status}).find("accept_queue"), std::string::npos);
  EXPECT_TRUE(hasKernelMeasuredSlots(kernelSample(1)));
}

// Line mode: what waits in a worker's input is its `queued`, shown in a column of its own (a
// frozen worker's grows there while its `open` does not move).
TEST(StatusReport, LineModeShowsWhatWaitsInEachInput) {
  AttachmentStatus status = sample();
  status.config.mode = SD_MODE_LINE;
  status.workers[0].queued = 6;
  std::string table = formatTable(status);
  EXPECT_NE(table.find("slot       pid  state     weight      open    queued    accepted"),
            std::string::npos)
      << table;
  EXPECT_NE(table.find("   0      5000  running        1         3         6          10"),
            std::string::npos)
      << table;
  EXPECT_EQ(nlohmann::json::parse(formatJson(status))["workers"][0]["queued"], 6);
}

TEST(Names, PoliciesRoundTrip) {
  for (uint32_t p = 0; p < SD_NR_POLICIES; ++p) {
    auto parsed = policyFromName(policyName(p));
    ASSERT_TRUE(parsed.has_value()) << p;
    EXPECT_EQ(*parsed, static_cast<sd_policy>(p));
  }
  EXPECT_FALSE(policyFromName("fastest").has_value());
  EXPECT_EQ(policyName(99), "unknown");
  EXPECT_EQ(slotStateName(SD_SLOT_DEAD), "dead");
  EXPECT_EQ(verdictName(SD_VERDICT_MIGRATED), "migrated");
  EXPECT_EQ(modeName(SD_MODE_LINE), "line");
  EXPECT_EQ(loadSourceName(SD_LOAD_KERNEL), "kernel");
  EXPECT_EQ(loadSourceName(SD_LOAD_WORKER), "worker");
}

} // namespace
} // namespace sockdispatch
