#pragma once

#include "control/pinned_attachment.h"
#include "support/process.h"

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sockdispatch::test {

// A running `attach 0` with four workers on loopback and its pinned state opened writable
// (as `bpftool` or `tune` would), for tests that check the kernel program's decisions.
// Subclasses may add flags (`--mode line`: the same checks against the line's decisions).
class LiveAttachmentTest : public BpfTest {
public:
  [[nodiscard]] virtual std::vector<std::string> extraArgs() const { return {}; }

protected:
  void SetUp() override {
    BpfTest::SetUp();
    if (IsSkipped()) {
      return;
    }
    std::vector<std::string> args{"0", "--bind", "127.0.0.1", "--workers", "4"};
    for (const std::string &arg : extraArgs()) {
      args.push_back(arg);
    }
    attachment_ = Attachment::start(args);
    ASSERT_NE(attachment_, nullptr);
    auto pinned = PinnedAttachment::open(attachment_->port(), true);
    ASSERT_TRUE(pinned) << pinned.error().message();
    pinned_.emplace(std::move(pinned.value()));
  }

  std::unique_ptr<Attachment> attachment_;
  std::optional<PinnedAttachment> pinned_;
};

} // namespace sockdispatch::test
