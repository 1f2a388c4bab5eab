// Tap against the real /dev/net/tun, inside the test process's private network namespace.
#include "net/tap.h"

#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/if_tun.h>
#include <unistd.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "net/vnet_hdr.h"
#include "tests/net/net_test_util.h"

namespace keel::net {
namespace {

using ::testing::HasSubstr;
using testing::NetTest;
using ::testing::StartsWith;

const MacAddress kHostMac{{0x52, 0x54, 0x00, 0x00, 0x00, 0x10}};

class TapTest : public NetTest {};

TEST_F(TapTest, CreatesTapWithVnetHeaderAndOffloads) {
  absl::StatusOr<Tap> tap =
      Tap::Create("ktap0", {.vnet_hdr_size = 12, .offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6});
  ASSERT_TRUE(tap.ok()) << tap.status();

  absl::StatusOr<TapState> state = QueryTap(tap->fd());
  absl::StatusOr<LinkInfo> link = nl_->GetLink("ktap0");

  EXPECT_EQ(tap->name(), "ktap0");
  EXPECT_EQ(tap->queue_count(), 1u);
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->name, "ktap0");
  EXPECT_TRUE(state->tap);
  EXPECT_TRUE(state->vnet_hdr);
  EXPECT_FALSE(state->multi_queue);
  EXPECT_FALSE(state->persistent);
  EXPECT_EQ(state->vnet_hdr_size, 12);
  EXPECT_TRUE(*testing::EthtoolFlag("ktap0", ETHTOOL_GTSO));
  EXPECT_TRUE(*testing::EthtoolFlag("ktap0", ETHTOOL_GTXCSUM));
  ASSERT_TRUE(link.ok()) << link.status();
  EXPECT_EQ(link->kind, "tun");
  EXPECT_TRUE(link->mac.has_value());
}

TEST_F(TapTest, FdsAreNonBlockingAndCloseOnExec) {
  absl::StatusOr<Tap> tap = Tap::Create("ktap0", {.queues = 2});
  ASSERT_TRUE(tap.ok()) << tap.status();

  EXPECT_NE(fcntl(tap->fd(0), F_GETFL) & O_NONBLOCK, 0);
  EXPECT_NE(fcntl(tap->fd(0), F_GETFD) & FD_CLOEXEC, 0);
  EXPECT_NE(fcntl(tap->fd(1), F_GETFL) & O_NONBLOCK, 0);
  EXPECT_NE(fcntl(tap->fd(1), F_GETFD) & FD_CLOEXEC, 0);
  EXPECT_EQ(tap->fd(2), -1);
}

TEST_F(TapTest, WithoutOffloadsTheKernelKeepsSegmentationToItself) {
  absl::StatusOr<Tap> tap = Tap::Create("ktap0", {.vnet_hdr_size = 10});
  ASSERT_TRUE(tap.ok()) << tap.status();

  EXPECT_EQ(QueryTap(tap->fd())->vnet_hdr_size, 10);
  EXPECT_FALSE(*testing::EthtoolFlag("ktap0", ETHTOOL_GTSO));
}

TEST_F(TapTest, GuestFeaturesDriveHeaderSizeAndOffloads) {
  const uint64_t features = FeatureBit(kVirtioFVersion1) | FeatureBit(kVirtioNetFGuestCsum) |
                            FeatureBit(kVirtioNetFGuestTso4);
  absl::StatusOr<Tap> tap = Tap::Create("ktap0", {.vnet_hdr_size = 10});
  ASSERT_TRUE(tap.ok()) << tap.status();

  ASSERT_TRUE(SetTapVnetHdrSize(tap->fd(), VnetHdrSizeForFeatures(features)).ok());
  ASSERT_TRUE(SetTapOffloads(tap->fd(), TapOffloadsForGuestFeatures(features)).ok());

  EXPECT_EQ(QueryTap(tap->fd())->vnet_hdr_size, 12);
  EXPECT_TRUE(*testing::EthtoolFlag("ktap0", ETHTOOL_GTSO));
}

TEST_F(TapTest, KernelRejectsSegmentationWithoutChecksum) {
  absl::StatusOr<Tap> tap = Tap::Create("ktap0");
  ASSERT_TRUE(tap.ok()) << tap.status();

  absl::Status status = tap->SetOffloads(TUN_F_TSO4);

  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  EXPECT_THAT(status.message(), HasSubstr("TUN_F_CSUM"));
}

TEST_F(TapTest, KernelChoosesANameWhenNoneIsGiven) {
  absl::StatusOr<Tap> tap = Tap::Create("");
  ASSERT_TRUE(tap.ok()) << tap.status();

  EXPECT_THAT(tap->name(), StartsWith("tap"));
  EXPECT_TRUE(*nl_->LinkExists(tap->name()));
}

TEST_F(TapTest, MultiQueueTapHasOneFdPerQueue) {
  absl::StatusOr<Tap> tap = Tap::Create("ktap0", {.queues = 4});
  ASSERT_TRUE(tap.ok()) << tap.status();

  ASSERT_EQ(tap->queue_count(), 4u);
  absl::StatusOr<TapState> first = QueryTap(tap->fd(0));
  absl::StatusOr<TapState> last = QueryTap(tap->fd(3));
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_TRUE(first->multi_queue);
  EXPECT_TRUE(last->multi_queue);
  EXPECT_EQ(last->name, "ktap0");
  EXPECT_EQ(last->vnet_hdr_size, 12);
}

TEST_F(TapTest, NonPersistentTapGoesAwayWithItsFds) {
  absl::StatusOr<Tap> tap = Tap::Create("ktap0");
  ASSERT_TRUE(tap.ok()) << tap.status();

  tap->ReleaseFds();

  EXPECT_FALSE(*nl_->LinkExists("ktap0"));
  EXPECT_TRUE(absl::IsFailedPrecondition(tap->SetPersistent(true)));
}

TEST_F(TapTest, PersistentTapOutlivesItsFdsAndReopensByName) {
  {
    absl::StatusOr<Tap> created =
        Tap::Create("ktap0", {.queues = 2, .persistent = true, .mac = kHostMac});
    ASSERT_TRUE(created.ok()) << created.status();
  }
  ASSERT_TRUE(*nl_->LinkExists("ktap0"));

  absl::StatusOr<Tap> opened = Tap::Open("ktap0", {.queues = 2, .vnet_hdr_size = 12});
  ASSERT_TRUE(opened.ok()) << opened.status();

  absl::StatusOr<TapState> state = QueryTap(opened->fd(1));
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_TRUE(state->persistent);
  EXPECT_TRUE(state->multi_queue);
  EXPECT_EQ(opened->queue_count(), 2u);
  EXPECT_EQ(nl_->GetLink("ktap0")->mac, kHostMac);
}

TEST_F(TapTest, OpenOfATapInUseIsFailedPrecondition) {
  absl::StatusOr<Tap> first = Tap::Create("kt0", {.persistent = true});
  ASSERT_TRUE(first.ok()) << first.status();

  absl::StatusOr<Tap> second = Tap::Open("kt0");

  EXPECT_TRUE(absl::IsFailedPrecondition(second.status())) << second.status();
  EXPECT_THAT(second.status().message(), HasSubstr("in use"));
  ASSERT_TRUE(first->SetPersistent(false).ok());
}

TEST_F(TapTest, OpenWithMismatchedQueuesFails) {
  absl::StatusOr<Tap> created = Tap::Create("ktap0", {.persistent = true});
  ASSERT_TRUE(created.ok()) << created.status();

  absl::StatusOr<Tap> opened = Tap::Open("ktap0", {.queues = 2});

  EXPECT_TRUE(absl::IsFailedPrecondition(opened.status())) << opened.status();
  EXPECT_THAT(opened.status().message(), HasSubstr("created without multi-queue"));
}

TEST_F(TapTest, OpenOfANonTapFails) {
  ASSERT_TRUE(nl_->CreateBridge({.name = "kbr0"}).ok());

  absl::StatusOr<Tap> opened = Tap::Open("kbr0");

  EXPECT_TRUE(absl::IsFailedPrecondition(opened.status())) << opened.status();
  EXPECT_THAT(opened.status().message(), HasSubstr("it is not a tap"));
}

TEST_F(TapTest, OpenOfAMissingTapIsNotFoundAndCreatesNothing) {
  absl::StatusOr<Tap> opened = Tap::Open("ktap9");

  EXPECT_TRUE(absl::IsNotFound(opened.status())) << opened.status();
  EXPECT_THAT(opened.status().message(), HasSubstr("tap ktap9 does not exist"));
  EXPECT_FALSE(*nl_->LinkExists("ktap9"));
}

TEST_F(TapTest, ExistingNameIsAlreadyExistsAndUntouched) {
  ASSERT_TRUE(nl_->CreateBridge({.name = "kbr0"}).ok());
  absl::StatusOr<Tap> first = Tap::Create("ktap0", {.persistent = true});
  ASSERT_TRUE(first.ok()) << first.status();

  absl::StatusOr<Tap> over_bridge = Tap::Create("kbr0");
  absl::StatusOr<Tap> over_tap = Tap::Create("ktap0");

  EXPECT_TRUE(absl::IsAlreadyExists(over_bridge.status())) << over_bridge.status();
  EXPECT_EQ(over_bridge.status().message(),
            "network interface kbr0 already exists; pick another tap name or delete it");
  EXPECT_TRUE(absl::IsAlreadyExists(over_tap.status())) << over_tap.status();
  EXPECT_EQ(nl_->GetLink("kbr0")->kind, "bridge");
  EXPECT_TRUE(QueryTap(first->fd())->persistent);
}

TEST_F(TapTest, InvalidOptionsAreRejectedUpFront) {
  EXPECT_THAT(Tap::Create("ktap0", {.queues = 0}).status().message(), HasSubstr("1 to 256"));
  EXPECT_THAT(Tap::Create("ktap0", {.queues = 257}).status().message(), HasSubstr("1 to 256"));
  EXPECT_THAT(Tap::Create("ktap0", {.vnet_hdr_size = 11}).status().message(),
              HasSubstr("header size 11"));
  EXPECT_THAT(Tap::Create("ktap0", {.vnet_hdr_size = 0, .offloads = TUN_F_CSUM}).status().message(),
              HasSubstr("need a virtio-net header"));
  EXPECT_THAT(Tap::Create("ktap0", {.mac = MacAddress{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}})
                  .status()
                  .message(),
              HasSubstr("multicast"));
  EXPECT_TRUE(absl::IsInvalidArgument(Tap::Create("k/tap").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(Tap::Create("tap%d").status()));
  EXPECT_FALSE(*nl_->LinkExists("ktap0"));
}

TEST_F(TapTest, WithoutNetAdminCreationIsPermissionDenied) {
  absl::Status status;

  testing::RunWithoutNetAdmin([&] { status = Tap::Create("ktap0").status(); });

  EXPECT_TRUE(absl::IsPermissionDenied(status)) << status;
  EXPECT_EQ(status.message(), "creating tap ktap0 needs CAP_NET_ADMIN (run keeld as root)");
  EXPECT_FALSE(*nl_->LinkExists("ktap0"));
}

TEST_F(TapTest, OnlyTheOwnerMayReopenWithoutNetAdmin) {
  ASSERT_TRUE(Tap::Create("ktap0", {.persistent = true, .owner = geteuid()}).ok());
  ASSERT_TRUE(Tap::Create("ktap1", {.persistent = true, .owner = geteuid() + 4242}).ok());
  absl::StatusOr<Tap> own = absl::UnknownError("not run");
  absl::StatusOr<Tap> foreign = absl::UnknownError("not run");

  testing::RunWithoutNetAdmin([&] {
    own = Tap::Open("ktap0");
    foreign = Tap::Open("ktap1");
  });

  EXPECT_TRUE(own.ok()) << own.status();
  EXPECT_TRUE(absl::IsPermissionDenied(foreign.status())) << foreign.status();
  EXPECT_THAT(foreign.status().message(), HasSubstr("owner/group"));
}

}  // namespace
}  // namespace keel::net
