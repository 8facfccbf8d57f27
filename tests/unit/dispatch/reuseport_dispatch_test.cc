// A map update refused after start-up (userspace/dispatch/reuseport_dispatch.cc): a slot that a
// reload or the pool opens cannot be put into the sockarray (ENOMEM injected through the
// SystemCalls seam into the real program's map update). The slot's opening fails with the
// reason; its listener does not stay in the group (where no worker would accept from it);
// the slots that serve keep serving. Loads the real program: needs root (skipped otherwise).
#include "core/listener_diag.h"
#include "dispatch/reuseport_dispatch.h"
#include "support/fake_system_calls.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <memory>

namespace sockdispatch {
namespace {

TEST(ReuseportDispatchFaults, ASlotWhoseSocketTheMapRefusesIsNotOpenedAndTheOthersServe) {
  test::FakeSystemCalls calls;
  auto program = DispatchProgram::load(calls);
  if (!program) {
    GTEST_SKIP() << program.error().message();
  }
  Scoreboard board = (*program)->scoreboard();
  board.config()->abi_version = SD_ABI_VERSION;
  board.config()->policy = SD_POLICY_LEAST_CONN;
  board.config()->nr_slots = 2;

  auto group = bindReuseportGroup(*parseAddress("127.0.0.1", 0), 1);
  ASSERT_TRUE(group) << group.error().message();
  ASSERT_TRUE((*program)->attachTo(group->sockets[0].get())) << "attach";
  ASSERT_TRUE(listenAll(group.value(), 64)) << "listen";
  ASSERT_TRUE((*program)->setSocket(0, group->sockets[0].get())) << "slot 0 into the sockarray";
  board.setState(0, SD_SLOT_RUNNING);
  const SocketAddress address = group->address;
  const int slot0 = group->sockets[0].get();
  ReuseportDispatch dispatch(std::move(group.value()), **program);

  calls.mapUpdateFaults = {ENOMEM};
  AttachOptions options;
  auto opened = dispatch.openSlot(1, options);
  ASSERT_FALSE(opened.ok()) << "the map refused the update";
  EXPECT_EQ(opened.error().code, ENOMEM);
  EXPECT_EQ(opened.error().message(),
            "Failed to put the listener of slot 1 into the sockarray: Cannot allocate memory");
  EXPECT_EQ(calls.mapUpdates, 2) << "slot 0 at start-up, slot 1 refused";

  auto listeners = dumpTcpListeners(address.port());
  ASSERT_TRUE(listeners) << listeners.error().message();
  EXPECT_EQ(listeners->size(), 1U) << "slot 1's listener left the group with its failure";

  // Slot 0 still takes every new connection.
  constexpr int kClients = 8;
  std::vector<UniqueFd> clients;
  for (int i = 0; i < kClients; ++i) {
    UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(client) << "socket";
    ASSERT_EQ(::connect(client.get(), reinterpret_cast<const sockaddr *>(&address.storage),
                        address.length),
              0)
        << "connect " << i;
    clients.push_back(std::move(client));
  }
  for (int i = 0; i < kClients; ++i) {
    UniqueFd accepted(::accept4(slot0, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    EXPECT_TRUE(accepted) << "connection " << i << " queued on slot 0's listener";
  }

  calls.mapUpdateFaults.clear();
  EXPECT_TRUE(dispatch.openSlot(1, options)) << "with memory again, the slot opens";
}

} // namespace
} // namespace sockdispatch
