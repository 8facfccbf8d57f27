// tune's flag parsing and its check against an attachment's config, without a kernel.
#include "control/tune.h"

#include <gtest/gtest.h>

#include <variant>

namespace sockdispatch {
namespace {

TEST(TuneFlags, ParsesEveryFlag) {
  TuneFlags flags{"weighted", {"0=3", "127=1000", "2=0"}, {"1"}, {"3"}};
  auto parsed = parseTuneFlags(flags);
  ASSERT_TRUE(std::holds_alternative<TuneRequest>(parsed));
  const auto &request = std::get<TuneRequest>(parsed);
  EXPECT_EQ(request.policy, SD_POLICY_WEIGHTED);
  EXPECT_EQ(request.weights,
            (std::vector<std::pair<uint32_t, uint32_t>>{{0, 3}, {127, kMaxWeight}, {2, 0}}));
  EXPECT_EQ(request.drain, std::vector<uint32_t>{1});
  EXPECT_EQ(request.undrain, std::vector<uint32_t>{3});
}

TEST(TuneFlags, RefusesNamingTheValue) {
  for (const auto &[weight, named] :
       std::vector<std::pair<std::string, std::string>>{{"3", "'3'"},
                                                        {"a=1", "'a'"},
                                                        {"3=", "'3='"},
                                                        {"3=-1", "'-1'"},
                                                        {"3=+1", "'+1'"},
                                                        {"3=1001", "'1001'"},
                                                        {"128=1", "'128'"},
                                                        {"=1", "''"},
                                                        {"3=99999999999", "'99999999999'"}}) {
    auto parsed = parseTuneFlags(TuneFlags{"", {weight}, {}, {}});
    ASSERT_TRUE(std::holds_alternative<Refusal>(parsed)) << weight;
    EXPECT_NE(std::get<Refusal>(parsed).reason.find(named), std::string::npos)
        << std::get<Refusal>(parsed).reason;
  }
  auto policy = parseTuneFlags(TuneFlags{"Least_Conn", {}, {}, {}});
  ASSERT_TRUE(std::holds_alternative<Refusal>(policy));
  EXPECT_NE(std::get<Refusal>(policy).reason.find("'Least_Conn'"), std::string::npos);
  auto drain = parseTuneFlags(TuneFlags{"", {}, {" 1"}, {}});
  ASSERT_TRUE(std::holds_alternative<Refusal>(drain));
  EXPECT_NE(std::get<Refusal>(drain).reason.find("--drain ' 1'"), std::string::npos);
}

TEST(TuneFlags, SlotsAreCheckedAgainstTheAttachment) {
  sd_config config{};
  config.nr_slots = 4;
  config.port = 8080;
  TuneRequest ok;
  ok.drain = {3};
  ok.weights = {{0, 2}};
  EXPECT_FALSE(checkTuneRequest(ok, config).has_value());
  TuneRequest high;
  high.undrain = {4};
  auto refused = checkTuneRequest(high, config);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->reason, "--undrain slot 4 is out of range: port 8080 has slots 0 to 3");
  TuneRequest both;
  both.drain = {2};
  both.undrain = {2};
  EXPECT_TRUE(checkTuneRequest(both, config).has_value());
}

TEST(TuneApply, WritesAndBumpsTheGenerationOnce) {
  std::vector<sd_slot> slots(4);
  for (auto &slot : slots) {
    slot.weight = 1;
  }
  sd_config config{};
  config.nr_slots = 4;
  config.generation = 7;
  Scoreboard board(slots.data(), &config);
  TuneRequest request;
  request.policy = SD_POLICY_LEAST_CONN;
  request.weights = {{1, 5}};
  request.drain = {2};
  auto changes = applyTune(request, board);
  EXPECT_EQ(changes, (std::vector<std::string>{"slot 1: weight 1 -> 5", "slot 2: draining",
                                               "policy: skip_load -> least_conn"}));
  EXPECT_EQ(config.policy, SD_POLICY_LEAST_CONN);
  EXPECT_EQ(slots[1].weight, 5U);
  EXPECT_EQ(slots[2].draining, 1U);
  EXPECT_EQ(config.generation, 8U);
  TuneRequest undo;
  undo.undrain = {2, 3};
  EXPECT_EQ(applyTune(undo, board),
            (std::vector<std::string>{"slot 2: serving", "slot 3: serving (unchanged)"}));
  EXPECT_EQ(slots[2].draining, 0U);
}

} // namespace
} // namespace sockdispatch
