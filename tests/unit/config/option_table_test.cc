// The library's ServerOptions through the option table: each bound field reaches the same
// AttachOptions field its flag sets, is refused by the same range (the message naming the
// field and the flag's bounds), and a refusal leaves the target as it was.
#include "config/option_table.h"
#include "sockdispatch/abi.h"
#include "sockdispatch/server.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <functional>
#include <set>
#include <string>

namespace sockdispatch {
namespace {

TEST(LibraryOptions, DefaultsBecomeTheAttachDefaults) {
  AttachOptions to;
  to.workers = 99; // to see that the library's default overwrites it
  ASSERT_EQ(applyLibraryOptions(ServerOptions{}, to), std::nullopt);
  ServerLimits limits;
  EXPECT_EQ(to.port, 0);
  EXPECT_EQ(to.bind, "0.0.0.0");
  EXPECT_EQ(to.workers, 1);
  EXPECT_EQ(to.minWorkers, 0);
  EXPECT_EQ(to.maxWorkers, 0);
  EXPECT_EQ(to.backlog, 511);
  EXPECT_EQ(to.mode, DispatchModeOption::kAuto);
  EXPECT_EQ(to.policy, static_cast<uint32_t>(SD_POLICY_LEAST_CONN));
  EXPECT_EQ(to.maxConnections, 0U);
  EXPECT_EQ(to.shutdownTimeout, std::chrono::seconds(10));
  EXPECT_EQ(to.limits.maxTargetBytes, limits.maxTargetBytes);
  EXPECT_EQ(to.limits.maxHeaderBytes, limits.maxHeaderBytes);
  EXPECT_EQ(to.limits.maxHeaderFields, limits.maxHeaderFields);
  EXPECT_EQ(to.limits.maxBodyBytes, limits.maxBodyBytes);
  EXPECT_EQ(to.limits.maxRequestsPerConnection, limits.maxRequestsPerConnection);
  EXPECT_EQ(to.limits.headerTimeout, limits.headerTimeout);
  EXPECT_EQ(to.limits.bodyTimeout, limits.bodyTimeout);
  EXPECT_EQ(to.limits.idleTimeout, limits.idleTimeout);
  EXPECT_EQ(to.limits.writeTimeout, limits.writeTimeout);
  EXPECT_FALSE(to.verbose);
}

TEST(LibraryOptions, EveryBoundFieldCarriesOver) {
  ServerOptions from;
  from.port = 8080;
  from.bind = "::1";
  from.workers = 3;
  from.minWorkers = 2;
  from.maxWorkers = 5;
  from.backlog = 100;
  from.mode = DispatchMode::line;
  from.policy = Policy::hash;
  from.maxConnections = 7;
  from.shutdownTimeout = std::chrono::seconds(3);
  from.limits.maxTargetBytes = 1000;
  from.limits.maxHeaderBytes = 2000;
  from.limits.maxHeaderFields = 30;
  from.limits.maxBodyBytes = 40;
  from.limits.maxRequestsPerConnection = 50;
  from.limits.headerTimeout = std::chrono::milliseconds(1500);
  from.limits.bodyTimeout = std::chrono::milliseconds(2500);
  from.limits.idleTimeout = std::chrono::milliseconds(3500);
  from.limits.writeTimeout = std::chrono::milliseconds(4500);
  from.verbose = true;
  AttachOptions to;
  ASSERT_EQ(applyLibraryOptions(from, to), std::nullopt);
  EXPECT_EQ(to.port, 8080);
  EXPECT_EQ(to.bind, "::1");
  EXPECT_EQ(to.workers, 3);
  EXPECT_EQ(to.minWorkers, 2);
  EXPECT_EQ(to.maxWorkers, 5);
  EXPECT_EQ(to.backlog, 100);
  EXPECT_EQ(to.mode, DispatchModeOption::kLine);
  EXPECT_EQ(to.policy, static_cast<uint32_t>(SD_POLICY_HASH));
  EXPECT_EQ(to.maxConnections, 7U);
  EXPECT_EQ(to.shutdownTimeout, std::chrono::seconds(3));
  EXPECT_EQ(to.limits.maxTargetBytes, 1000U);
  EXPECT_EQ(to.limits.maxHeaderBytes, 2000U);
  EXPECT_EQ(to.limits.maxHeaderFields, 30U);
  EXPECT_EQ(to.limits.maxBodyBytes, 40U);
  EXPECT_EQ(to.limits.maxRequestsPerConnection, 50U);
  EXPECT_EQ(to.limits.headerTimeout, std::chrono::milliseconds(1500));
  EXPECT_EQ(to.limits.bodyTimeout, std::chrono::milliseconds(2500));
  EXPECT_EQ(to.limits.idleTimeout, std::chrono::milliseconds(3500));
  EXPECT_EQ(to.limits.writeTimeout, std::chrono::milliseconds(4500));
  EXPECT_TRUE(to.verbose);
}

TEST(LibraryOptions, EveryPolicyAndModeHasItsName) {
  for (auto [policy, expected] : {std::pair{Policy::skip_load, SD_POLICY_SKIP_LOAD},
                                  {Policy::least_conn, SD_POLICY_LEAST_CONN},
                                  {Policy::p2c, SD_POLICY_P2C},
                                  {Policy::round_robin, SD_POLICY_ROUND_ROBIN},
                                  {Policy::weighted, SD_POLICY_WEIGHTED},
                                  {Policy::hash, SD_POLICY_HASH}}) {
    ServerOptions from;
    from.policy = policy;
    AttachOptions to;
    ASSERT_EQ(applyLibraryOptions(from, to), std::nullopt);
    EXPECT_EQ(to.policy, static_cast<uint32_t>(expected));
  }
  for (auto [mode, expected] : {std::pair{DispatchMode::automatic, DispatchModeOption::kAuto},
                                {DispatchMode::ebpf, DispatchModeOption::kEbpf},
                                {DispatchMode::line, DispatchModeOption::kLine}}) {
    ServerOptions from;
    from.mode = mode;
    AttachOptions to;
    ASSERT_EQ(applyLibraryOptions(from, to), std::nullopt);
    EXPECT_EQ(to.mode, expected);
  }
}

struct OutOfRange {
  const char *key; // the row whose range refuses it
  std::function<void(ServerOptions &, int64_t)> set;
};

// Each bound integer field just past both ends of its row's range is refused with the row's
// bounds; exactly at them it is taken.
TEST(LibraryOptions, EveryIntegerFieldHasItsFlagsRange) {
  std::vector<OutOfRange> cases{
      {"workers", [](ServerOptions &o, int64_t v) { o.workers = static_cast<int>(v); }},
      {"max-workers",
       [](ServerOptions &o, int64_t v) {
         o.maxWorkers = static_cast<int>(v);
         o.minWorkers = 1;
       }},
      {"backlog", [](ServerOptions &o, int64_t v) { o.backlog = static_cast<int>(v); }},
      {"shutdown-timeout",
       [](ServerOptions &o, int64_t v) { o.shutdownTimeout = std::chrono::seconds(v); }},
      {"max-target-bytes",
       [](ServerOptions &o, int64_t v) { o.limits.maxTargetBytes = static_cast<size_t>(v); }},
      {"max-header-bytes",
       [](ServerOptions &o, int64_t v) { o.limits.maxHeaderBytes = static_cast<size_t>(v); }},
      {"max-header-fields",
       [](ServerOptions &o, int64_t v) { o.limits.maxHeaderFields = static_cast<size_t>(v); }},
      {"max-body-bytes",
       [](ServerOptions &o, int64_t v) { o.limits.maxBodyBytes = static_cast<size_t>(v); }},
  };
  for (const auto &c : cases) {
    const OptionSpec *spec = findOption(c.key);
    ASSERT_NE(spec, nullptr) << c.key;
    ASSERT_FALSE(spec->serverOptionsField.empty()) << c.key;
    IntRange range = spec->integers;
    for (int64_t inside : {range.min, range.max}) {
      ServerOptions from;
      c.set(from, inside);
      AttachOptions to;
      EXPECT_EQ(applyLibraryOptions(from, to), std::nullopt) << c.key << " " << inside;
    }
    for (int64_t outside : {range.min - 1, range.max + 1}) {
      if (outside < 0 || (spec->key == "max-workers" && outside == 0)) {
        continue; // an unsigned field cannot hold it; the pool's 0 means "no dynamic pool"
      }
      ServerOptions from;
      c.set(from, outside);
      AttachOptions to;
      auto before = to.limits.maxBodyBytes;
      auto problem = applyLibraryOptions(from, to);
      ASSERT_TRUE(problem.has_value()) << c.key << " " << outside;
      EXPECT_EQ(*problem, fmt::format("{} {} is outside {}..{}", spec->serverOptionsField, outside,
                                      range.min, range.max));
      EXPECT_EQ(to.limits.maxBodyBytes, before) << "nothing half-applied";
    }
  }
}

TEST(LibraryOptions, TextAndTimeoutFieldsAreCheckedAsTheirFlags) {
  ServerOptions badBind;
  badBind.bind = "localhost";
  AttachOptions to;
  to.workers = 42;
  auto problem = applyLibraryOptions(badBind, to);
  ASSERT_TRUE(problem.has_value());
  EXPECT_EQ(*problem, "bind: 'localhost' is not a numeric IPv4 or IPv6 address");
  EXPECT_EQ(to.workers, 42) << "a refusal sets nothing, not even the fields before it";

  ServerOptions zeroTimeout;
  zeroTimeout.limits.idleTimeout = std::chrono::milliseconds(0);
  problem = applyLibraryOptions(zeroTimeout, to);
  ASSERT_TRUE(problem.has_value());
  EXPECT_EQ(*problem, "limits.idleTimeout 0 ms is outside 0.001..86400 s");
}

TEST(LibraryOptions, TheDynamicPoolsZeroMeansNotGiven) {
  ServerOptions fixed; // minWorkers = maxWorkers = 0: a fixed pool, not a refused 0
  AttachOptions to;
  EXPECT_EQ(applyLibraryOptions(fixed, to), std::nullopt);
  EXPECT_EQ(to.maxWorkers, 0);
}

TEST(LibraryOptions, EachLibraryFieldIsBoundOnce) {
  std::set<std::string> fields;
  for (const OptionSpec &spec : optionTable()) {
    if (spec.serverOptionsField.empty()) {
      EXPECT_FALSE(spec.fromLibrary) << spec.key;
      continue;
    }
    EXPECT_TRUE(spec.fromLibrary) << spec.key;
    EXPECT_TRUE(fields.insert(std::string(spec.serverOptionsField)).second)
        << spec.serverOptionsField;
  }
  EXPECT_EQ(fields.size(), 21U) << "every ServerOptions setting but the offload pool's";
}

} // namespace
} // namespace sockdispatch
