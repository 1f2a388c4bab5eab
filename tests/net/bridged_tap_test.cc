// CreateBridgedTap / DeleteBridgedTap, their rollback, and real frames through tap and bridge.
#include "net/bridged_tap.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "net/vnet_hdr.h"
#include "tests/net/net_test_util.h"

namespace keel::net {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using testing::NetTest;

const MacAddress kHostMac{{0x52, 0x54, 0x00, 0x00, 0x00, 0x20}};
const MacAddress kGuestMac{{0x52, 0x54, 0x00, 0x00, 0x00, 0x21}};
const MacAddress kPeerMac{{0x52, 0x54, 0x00, 0x00, 0x00, 0x22}};
const MacAddress kBroadcast{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};

class BridgedTapTest : public NetTest {
 protected:
  void SetUp() override {
    NetTest::SetUp();
    ASSERT_TRUE(nl_->CreateBridge({.name = "kbr0"}).ok());
  }
};

TEST_F(BridgedTapTest, TapIsPersistentAttachedAndUp) {
  {
    absl::StatusOr<Tap> tap = CreateBridgedTap(
        *nl_, {.name = "ktap0", .bridge = "kbr0", .mtu = 1400, .tap = {.mac = kHostMac}});
    ASSERT_TRUE(tap.ok()) << tap.status();
    EXPECT_TRUE(QueryTap(tap->fd())->persistent);
    EXPECT_EQ(QueryTap(tap->fd())->vnet_hdr_size, 12);
  }

  absl::StatusOr<LinkInfo> link = nl_->GetLink("ktap0");  // the agent's fds are closed

  ASSERT_TRUE(link.ok()) << link.status();
  EXPECT_EQ(link->kind, "tun");
  EXPECT_EQ(link->master_name, "kbr0");
  EXPECT_TRUE(link->up);
  EXPECT_EQ(link->mtu, 1400u);
  EXPECT_EQ(link->mac, kHostMac);
}

TEST_F(BridgedTapTest, DeleteDetachesAndDeletesAndIsIdempotent) {
  ASSERT_TRUE(CreateBridgedTap(*nl_, {.name = "ktap0", .bridge = "kbr0"}).ok());

  absl::Status first = DeleteBridgedTap(*nl_, "ktap0");
  absl::Status second = DeleteBridgedTap(*nl_, "ktap0");

  EXPECT_TRUE(first.ok()) << first;
  EXPECT_TRUE(second.ok()) << second;
  EXPECT_THAT(LinkNames(), ElementsAre("kbr0", "lo"));
}

TEST_F(BridgedTapTest, DeleteWorksWhileAVmmStillHoldsTheFd) {
  absl::StatusOr<Tap> tap = CreateBridgedTap(*nl_, {.name = "ktap0", .bridge = "kbr0"});
  ASSERT_TRUE(tap.ok()) << tap.status();

  absl::Status status = DeleteBridgedTap(*nl_, "ktap0");

  EXPECT_TRUE(status.ok()) << status;
  EXPECT_FALSE(*nl_->LinkExists("ktap0"));
}

TEST_F(BridgedTapTest, DeleteRefusesToTouchANonTap) {
  absl::Status status = DeleteBridgedTap(*nl_, "kbr0");

  EXPECT_TRUE(absl::IsFailedPrecondition(status)) << status;
  EXPECT_THAT(status.message(), HasSubstr("kbr0: it is a bridge link, not a tap"));
  EXPECT_TRUE(*nl_->LinkExists("kbr0"));
}

TEST_F(BridgedTapTest, MissingBridgeLeavesNothingBehind) {
  const std::vector<std::string> before = LinkNames();

  absl::StatusOr<Tap> tap = CreateBridgedTap(*nl_, {.name = "ktap0", .bridge = "kbr9"});

  EXPECT_TRUE(absl::IsNotFound(tap.status())) << tap.status();
  EXPECT_THAT(tap.status().message(), HasSubstr("bridge kbr9 does not exist"));
  EXPECT_EQ(LinkNames(), before);
}

TEST_F(BridgedTapTest, BridgeThatIsNotABridgeLeavesNothingBehind) {
  ASSERT_TRUE(nl_->CreateVeth({.name = "kv0", .peer_name = "kv1"}).ok());
  const std::vector<std::string> before = LinkNames();

  absl::StatusOr<Tap> tap = CreateBridgedTap(*nl_, {.name = "ktap0", .bridge = "kv0"});

  EXPECT_TRUE(absl::IsFailedPrecondition(tap.status())) << tap.status();
  EXPECT_EQ(LinkNames(), before);
}

TEST_F(BridgedTapTest, ExistingNameIsAlreadyExistsAndLeftAlone) {
  ASSERT_TRUE(nl_->CreateVeth({.name = "ktap0", .peer_name = "kv1"}).ok());
  const std::vector<std::string> before = LinkNames();

  absl::StatusOr<Tap> tap = CreateBridgedTap(*nl_, {.name = "ktap0", .bridge = "kbr0"});

  EXPECT_TRUE(absl::IsAlreadyExists(tap.status())) << tap.status();
  EXPECT_EQ(LinkNames(), before);
  EXPECT_EQ(nl_->GetLink("ktap0")->kind, "veth");
  EXPECT_EQ(nl_->GetLink("ktap0")->master_ifindex, 0);
}

TEST_F(BridgedTapTest, KernelFailureAfterCreationRollsBack) {
  const std::vector<std::string> before = LinkNames();

  // The tap exists by the time the kernel refuses the MTU; it must be removed again.
  absl::StatusOr<Tap> tap =
      CreateBridgedTap(*nl_, {.name = "ktap0", .bridge = "kbr0", .mtu = 1 << 20});

  EXPECT_TRUE(absl::IsInvalidArgument(tap.status())) << tap.status();
  EXPECT_THAT(tap.status().message(), HasSubstr("setting MTU 1048576 on ktap0"));
  EXPECT_EQ(LinkNames(), before);
}

TEST_F(BridgedTapTest, WithoutNetAdminLeavesNothingBehind) {
  const std::vector<std::string> before = LinkNames();
  absl::Status status;

  testing::RunWithoutNetAdmin([&] {
    absl::StatusOr<NetlinkSocket> nl = NetlinkSocket::Open();
    ASSERT_TRUE(nl.ok()) << nl.status();
    status = CreateBridgedTap(*nl, {.name = "ktap0", .bridge = "kbr0"}).status();
  });

  EXPECT_TRUE(absl::IsPermissionDenied(status)) << status;
  EXPECT_THAT(status.message(), HasSubstr("needs CAP_NET_ADMIN"));
  EXPECT_EQ(LinkNames(), before);
}

// The fixture for frames: kbr0 (up) with the tap and veth kv0 as ports; kv1, kv0's peer, is
// where the test sends and captures frames with a packet socket.
class BridgedTapTrafficTest : public BridgedTapTest {
 protected:
  void SetUp() override {
    BridgedTapTest::SetUp();
    ASSERT_TRUE(nl_->SetUp("kbr0", true).ok());
    ASSERT_TRUE(nl_->CreateVeth({.name = "kv0", .peer_name = "kv1"}).ok());
    ASSERT_TRUE(nl_->Enslave("kv0", "kbr0").ok());
    ASSERT_TRUE(nl_->SetUp("kv0", true).ok());
    ASSERT_TRUE(nl_->SetUp("kv1", true).ok());
    absl::StatusOr<Tap> tap = CreateBridgedTap(
        *nl_, {.name = "ktap0", .bridge = "kbr0", .tap = {.vnet_hdr_size = kVnetHdrSize}});
    ASSERT_TRUE(tap.ok()) << tap.status();
    tap_.emplace(std::move(*tap));
    absl::StatusOr<ScopedFd> peer = testing::OpenPacketSocket("kv1");
    ASSERT_TRUE(peer.ok()) << peer.status();
    peer_ = std::move(*peer);
  }

  std::optional<Tap> tap_;
  ScopedFd peer_;
};

TEST_F(BridgedTapTrafficTest, FrameFromTheGuestReachesTheBridge) {
  const std::vector<uint8_t> frame = testing::MakeFrame(kBroadcast, kGuestMac, "keel guest->host");
  std::vector<uint8_t> packet(sizeof(VirtioNetHdr));
  const VirtioNetHdr hdr{};  // no checksum offload, no GSO
  std::memcpy(packet.data(), &hdr, sizeof(hdr));
  packet.insert(packet.end(), frame.begin(), frame.end());

  ASSERT_EQ(write(tap_->fd(), packet.data(), packet.size()), static_cast<ssize_t>(packet.size()));
  absl::StatusOr<std::vector<uint8_t>> received = testing::ReadTestFrame(peer_.get(), 0);

  ASSERT_TRUE(received.ok()) << received.status();
  EXPECT_THAT(*received, ElementsAreArray(frame));
}

TEST_F(BridgedTapTrafficTest, FrameFromTheBridgeReachesTheGuest) {
  const std::vector<uint8_t> frame = testing::MakeFrame(kGuestMac, kPeerMac, "keel host->guest");

  ASSERT_EQ(send(peer_.get(), frame.data(), frame.size(), 0), static_cast<ssize_t>(frame.size()));
  absl::StatusOr<std::vector<uint8_t>> received =
      testing::ReadTestFrame(tap_->fd(), sizeof(VirtioNetHdr));

  ASSERT_TRUE(received.ok()) << received.status();
  ASSERT_GE(received->size(), sizeof(VirtioNetHdr));
  VirtioNetHdr hdr;
  std::memcpy(&hdr, received->data(), sizeof(hdr));
  EXPECT_EQ(hdr.gso_type, VirtioNetHdr::kGsoNone);
  EXPECT_EQ(hdr.flags & VirtioNetHdr::kFlagNeedsCsum, 0);
  const std::vector<uint8_t> payload(received->begin() + sizeof(VirtioNetHdr), received->end());
  EXPECT_THAT(payload, ElementsAreArray(frame));
}

}  // namespace
}  // namespace keel::net
