// NetlinkSocket against the real kernel, inside the test process's private network namespace.
#include "net/netlink.h"

#include <fcntl.h>
#include <unistd.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "net/netns.h"
#include "tests/net/net_test_util.h"

namespace keel::net {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::NetTest;
using ::testing::Not;

const MacAddress kBridgeMac{{0x52, 0x54, 0x00, 0x00, 0x00, 0x01}};

class NetlinkTest : public NetTest {};

TEST_F(NetlinkTest, BridgeIsCreatedWithItsSettingsAndDeleted) {
  ASSERT_TRUE(nl_->CreateBridge({.name = "kbr0", .mtu = 9000, .mac = kBridgeMac}).ok());

  absl::StatusOr<LinkInfo> link = nl_->GetLink("kbr0");
  ASSERT_TRUE(link.ok()) << link.status();
  EXPECT_EQ(link->name, "kbr0");
  EXPECT_EQ(link->kind, "bridge");
  EXPECT_EQ(link->mtu, 9000u);
  EXPECT_EQ(link->mac, kBridgeMac);
  EXPECT_FALSE(link->up);
  EXPECT_EQ(link->operstate, OperState::kDown);
  EXPECT_EQ(link->master_ifindex, 0);
  EXPECT_EQ(nl_->GetLinkByIndex(link->ifindex)->name, "kbr0");

  ASSERT_TRUE(nl_->DeleteLink("kbr0").ok());
  EXPECT_FALSE(*nl_->LinkExists("kbr0"));
}

TEST_F(NetlinkTest, MtuUpDownAndMacChange) {
  ASSERT_TRUE(nl_->CreateBridge({.name = "kbr0"}).ok());

  ASSERT_TRUE(nl_->SetMtu("kbr0", 1400).ok());
  ASSERT_TRUE(nl_->SetUp("kbr0", true).ok());
  ASSERT_TRUE(nl_->SetMac("kbr0", kBridgeMac).ok());
  absl::StatusOr<LinkInfo> up = nl_->GetLink("kbr0");
  ASSERT_TRUE(nl_->SetUp("kbr0", false).ok());
  absl::StatusOr<LinkInfo> down = nl_->GetLink("kbr0");

  ASSERT_TRUE(up.ok()) << up.status();
  EXPECT_EQ(up->mtu, 1400u);
  EXPECT_TRUE(up->up);
  EXPECT_EQ(up->mac, kBridgeMac);
  ASSERT_TRUE(down.ok()) << down.status();
  EXPECT_FALSE(down->up);
}

TEST_F(NetlinkTest, BadSettingsAreRejected) {
  ASSERT_TRUE(nl_->CreateBridge({.name = "kbr0"}).ok());

  absl::Status tiny = nl_->SetMtu("kbr0", 10);
  absl::Status huge = nl_->SetMtu("kbr0", 1 << 20);
  absl::Status multicast = nl_->SetMac("kbr0", MacAddress{{0x01, 0, 0, 0, 0, 1}});

  EXPECT_TRUE(absl::IsInvalidArgument(tiny)) << tiny;
  EXPECT_THAT(tiny.message(), HasSubstr("below 68"));
  EXPECT_TRUE(absl::IsInvalidArgument(huge)) << huge;
  EXPECT_THAT(huge.message(), HasSubstr("setting MTU 1048576 on kbr0 failed"));
  EXPECT_TRUE(absl::IsInvalidArgument(multicast)) << multicast;
  EXPECT_EQ(nl_->GetLink("kbr0")->mtu, 1500u);
}

TEST_F(NetlinkTest, ExistingBridgeNameIsAlreadyExists) {
  ASSERT_TRUE(nl_->CreateBridge({.name = "kbr0"}).ok());

  absl::Status status = nl_->CreateBridge({.name = "kbr0"});

  EXPECT_TRUE(absl::IsAlreadyExists(status)) << status;
  EXPECT_EQ(status.message(), "bridge kbr0 already exists; pick another name or delete it");
}

TEST_F(NetlinkTest, MissingLinkIsNotFoundByName) {
  absl::StatusOr<LinkInfo> link = nl_->GetLink("kbr9");
  absl::Status deleted = nl_->DeleteLink("kbr9");
  absl::Status mtu = nl_->SetMtu("kbr9", 1500);
  absl::Status up = nl_->SetUp("kbr9", true);

  EXPECT_TRUE(absl::IsNotFound(link.status())) << link.status();
  EXPECT_EQ(link.status().message(),
            "network interface kbr9 does not exist in this network namespace");
  EXPECT_TRUE(absl::IsNotFound(deleted)) << deleted;
  EXPECT_THAT(deleted.message(), HasSubstr("kbr9"));
  EXPECT_TRUE(absl::IsNotFound(mtu)) << mtu;
  EXPECT_TRUE(absl::IsNotFound(up)) << up;
  EXPECT_FALSE(*nl_->LinkExists("kbr9"));
  EXPECT_TRUE(absl::IsNotFound(nl_->GetLinkByIndex(99999).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(nl_->GetLinkByIndex(0).status()));
}

TEST_F(NetlinkTest, InvalidNamesNeverReachTheKernel) {
  absl::Status empty = nl_->CreateBridge({.name = ""});
  absl::Status too_long = nl_->CreateBridge({.name = "kbr-0123456789ab"});
  absl::Status slash = nl_->CreateBridge({.name = "k/br"});
  absl::Status space = nl_->CreateBridge({.name = "k br"});
  absl::Status veth = nl_->CreateVeth({.name = "kv0", .peer_name = "kv:1"});

  EXPECT_TRUE(absl::IsInvalidArgument(empty)) << empty;
  EXPECT_THAT(empty.message(), HasSubstr("empty"));
  EXPECT_TRUE(absl::IsInvalidArgument(too_long)) << too_long;
  EXPECT_THAT(too_long.message(), HasSubstr("at most 15"));
  EXPECT_TRUE(absl::IsInvalidArgument(slash)) << slash;
  EXPECT_THAT(slash.message(), HasSubstr("'/'"));
  EXPECT_TRUE(absl::IsInvalidArgument(space)) << space;
  EXPECT_THAT(space.message(), HasSubstr("whitespace"));
  EXPECT_TRUE(absl::IsInvalidArgument(veth)) << veth;
  EXPECT_THAT(LinkNames(), ElementsAre("lo"));
}

TEST_F(NetlinkTest, WithoutNetAdminCreationIsPermissionDenied) {
  absl::Status status;

  testing::RunWithoutNetAdmin([&] {
    absl::StatusOr<NetlinkSocket> nl = NetlinkSocket::Open();
    ASSERT_TRUE(nl.ok()) << nl.status();
    status = nl->CreateBridge({.name = "kbr0"});
  });

  EXPECT_TRUE(absl::IsPermissionDenied(status)) << status;
  EXPECT_EQ(status.message(), "creating bridge kbr0 needs CAP_NET_ADMIN (run keeld as root)");
  EXPECT_FALSE(*nl_->LinkExists("kbr0"));
}

TEST_F(NetlinkTest, PortIsEnslavedAndReleased) {
  ASSERT_TRUE(nl_->CreateBridge({.name = "kbr0"}).ok());
  ASSERT_TRUE(nl_->CreateVeth({.name = "kv0", .peer_name = "kv1"}).ok());

  ASSERT_TRUE(nl_->Enslave("kv0", "kbr0").ok());
  absl::StatusOr<LinkInfo> enslaved = nl_->GetLink("kv0");
  absl::StatusOr<std::vector<LinkInfo>> listed = nl_->ListLinks();
  ASSERT_TRUE(nl_->Release("kv0").ok());
  absl::StatusOr<LinkInfo> released = nl_->GetLink("kv0");

  ASSERT_TRUE(enslaved.ok()) << enslaved.status();
  EXPECT_EQ(enslaved->master_ifindex, nl_->GetLink("kbr0")->ifindex);
  EXPECT_EQ(enslaved->master_name, "kbr0");
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_THAT(*listed,
              Contains(::testing::AllOf(::testing::Field(&LinkInfo::name, "kv0"),
                                        ::testing::Field(&LinkInfo::master_name, "kbr0"))));
  ASSERT_TRUE(released.ok()) << released.status();
  EXPECT_EQ(released->master_ifindex, 0);
  EXPECT_EQ(released->master_name, "");
  EXPECT_TRUE(nl_->Release("kv0").ok());  // releasing a free port is a no-op
}

TEST_F(NetlinkTest, EnslavingToANonBridgeFails) {
  ASSERT_TRUE(nl_->CreateVeth({.name = "kv0", .peer_name = "kv1"}).ok());

  absl::Status to_veth = nl_->Enslave("kv0", "kv1");
  absl::Status to_missing = nl_->Enslave("kv0", "kbr9");

  EXPECT_TRUE(absl::IsFailedPrecondition(to_veth)) << to_veth;
  EXPECT_THAT(to_veth.message(), HasSubstr("kv1 is a veth link, not a bridge"));
  EXPECT_TRUE(absl::IsNotFound(to_missing)) << to_missing;
}

TEST_F(NetlinkTest, KernelRefusalCarriesTheKernelsReason) {
  ASSERT_TRUE(nl_->CreateBridge({.name = "kbr0"}).ok());
  ASSERT_TRUE(nl_->CreateBridge({.name = "kbr1"}).ok());

  absl::Status status = nl_->Enslave("kbr1", "kbr0");

  EXPECT_TRUE(absl::IsFailedPrecondition(status)) << status;
  EXPECT_THAT(status.message(), HasSubstr("adding kbr1 to bridge kbr0 failed"));
  EXPECT_THAT(status.message(), HasSubstr("(kernel: "));
  EXPECT_EQ(nl_->GetLink("kbr1")->master_ifindex, 0);
}

TEST_F(NetlinkTest, MissingPortIsNotFound) {
  ASSERT_TRUE(nl_->CreateBridge({.name = "kbr0"}).ok());

  absl::Status status = nl_->Enslave("kv9", "kbr0");

  EXPECT_TRUE(absl::IsNotFound(status)) << status;
  EXPECT_THAT(status.message(), HasSubstr("kv9 does not exist"));
}

TEST_F(NetlinkTest, VethPeerIsCreatedInAnotherNamespace) {
  absl::StatusOr<Netns> ns = Netns::Create();
  ASSERT_TRUE(ns.ok()) << ns.status();

  ASSERT_TRUE(
      nl_->CreateVeth(
             {.name = "kv0", .peer_name = "kv1", .mtu = 1400, .peer_netns = NetnsRef::Fd(ns->fd())})
          .ok());

  absl::StatusOr<NetlinkSocket> inside = NetlinkSocket::OpenInNetns(ns->fd());
  ASSERT_TRUE(inside.ok()) << inside.status();
  absl::StatusOr<LinkInfo> peer = inside->GetLink("kv1");
  ASSERT_TRUE(peer.ok()) << peer.status();
  EXPECT_EQ(peer->kind, "veth");
  EXPECT_EQ(peer->mtu, 1400u);
  EXPECT_EQ(nl_->GetLink("kv0")->mtu, 1400u);
  EXPECT_FALSE(*nl_->LinkExists("kv1"));
  EXPECT_FALSE(*inside->LinkExists("kv0"));
  // Deleting one end deletes the pair across namespaces.
  ASSERT_TRUE(nl_->DeleteLink("kv0").ok());
  EXPECT_FALSE(*inside->LinkExists("kv1"));
}

TEST_F(NetlinkTest, VethWhosePeerNameIsTakenThereLeavesNothingBehind) {
  absl::StatusOr<Netns> ns = Netns::Create();
  ASSERT_TRUE(ns.ok()) << ns.status();
  absl::StatusOr<NetlinkSocket> inside = NetlinkSocket::OpenInNetns(ns->fd());
  ASSERT_TRUE(inside.ok()) << inside.status();
  ASSERT_TRUE(inside->CreateBridge({.name = "kv1"}).ok());

  absl::Status status = nl_->CreateVeth(
      {.name = "kv0", .peer_name = "kv1", .peer_netns = NetnsRef::Fd(ns->fd())});

  EXPECT_TRUE(absl::IsAlreadyExists(status)) << status;
  EXPECT_FALSE(*nl_->LinkExists("kv0"));
  EXPECT_EQ(inside->GetLink("kv1")->kind, "bridge");  // untouched
}

TEST_F(NetlinkTest, WithoutNetAdminVethCreationIsPermissionDeniedAndLeavesNothing) {
  absl::Status status;
  testing::RunWithoutNetAdmin([&] {
    absl::StatusOr<NetlinkSocket> nl = NetlinkSocket::Open();
    ASSERT_TRUE(nl.ok()) << nl.status();
    status = nl->CreateVeth({.name = "kv0", .peer_name = "kv1"});
  });
  EXPECT_TRUE(absl::IsPermissionDenied(status)) << status;
  EXPECT_FALSE(*nl_->LinkExists("kv0"));
  EXPECT_FALSE(*nl_->LinkExists("kv1"));
}

TEST_F(NetlinkTest, LinkMovesToAnotherNamespaceAndBackByPid) {
  absl::StatusOr<Netns> ns = Netns::Create();
  ASSERT_TRUE(ns.ok()) << ns.status();
  ASSERT_TRUE(nl_->CreateVeth({.name = "kv0", .peer_name = "kv1"}).ok());
  absl::StatusOr<NetlinkSocket> inside = NetlinkSocket::OpenInNetns(ns->fd());
  ASSERT_TRUE(inside.ok()) << inside.status();

  ASSERT_TRUE(nl_->MoveToNetns("kv1", NetnsRef::Fd(ns->fd())).ok());
  const bool moved_out = !*nl_->LinkExists("kv1") && *inside->LinkExists("kv1");
  // This process's main thread lives in the test namespace: moving "to our pid" brings it back.
  ASSERT_TRUE(inside->MoveToNetns("kv1", NetnsRef::Pid(getpid())).ok());

  EXPECT_TRUE(moved_out);
  EXPECT_TRUE(*nl_->LinkExists("kv1"));
  EXPECT_FALSE(*inside->LinkExists("kv1"));
}

TEST_F(NetlinkTest, FdsThatAreNotNamespacesAreRejected) {
  ASSERT_TRUE(nl_->CreateVeth({.name = "kv0", .peer_name = "kv1"}).ok());
  const ScopedFd not_a_netns(open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(not_a_netns.valid());

  absl::StatusOr<NetlinkSocket> inside = NetlinkSocket::OpenInNetns(not_a_netns.get());
  absl::Status moved = nl_->MoveToNetns("kv1", NetnsRef::Fd(not_a_netns.get()));
  absl::Status created = nl_->CreateVeth(
      {.name = "kv2", .peer_name = "kv3", .peer_netns = NetnsRef::Fd(not_a_netns.get())});

  EXPECT_FALSE(inside.ok());
  EXPECT_FALSE(moved.ok());
  EXPECT_THAT(moved.message(), HasSubstr("moving kv1 to netns fd"));
  EXPECT_FALSE(created.ok());
  EXPECT_TRUE(*nl_->LinkExists("kv1"));
  EXPECT_FALSE(*nl_->LinkExists("kv2"));
}

TEST_F(NetlinkTest, MovingOntoATakenNameIsAlreadyExists) {
  absl::StatusOr<Netns> ns = Netns::Create();
  ASSERT_TRUE(ns.ok()) << ns.status();
  // kv1 lives in the other namespace; a local link then takes the same name.
  ASSERT_TRUE(
      nl_->CreateVeth({.name = "kv0", .peer_name = "kv1", .peer_netns = NetnsRef::Fd(ns->fd())})
          .ok());
  ASSERT_TRUE(nl_->CreateVeth({.name = "kv2", .peer_name = "kv3"}).ok());
  ASSERT_TRUE(nl_->Rename("kv3", "kv1").ok());

  absl::Status status = nl_->MoveToNetns("kv1", NetnsRef::Fd(ns->fd()));

  EXPECT_TRUE(absl::IsAlreadyExists(status)) << status;
  EXPECT_THAT(status.message(), HasSubstr("a link with that name already exists there"));
  EXPECT_TRUE(*nl_->LinkExists("kv1"));
}

TEST_F(NetlinkTest, RenameNeedsAFreeName) {
  ASSERT_TRUE(nl_->CreateBridge({.name = "kbr0"}).ok());
  ASSERT_TRUE(nl_->CreateBridge({.name = "kbr1"}).ok());

  ASSERT_TRUE(nl_->Rename("kbr0", "kbr2").ok());
  absl::Status taken = nl_->Rename("kbr2", "kbr1");
  absl::Status bad = nl_->Rename("kbr2", "a/b");

  EXPECT_TRUE(*nl_->LinkExists("kbr2"));
  EXPECT_FALSE(*nl_->LinkExists("kbr0"));
  EXPECT_TRUE(absl::IsAlreadyExists(taken)) << taken;
  EXPECT_THAT(taken.message(), HasSubstr("cannot rename kbr2 to kbr1"));
  EXPECT_TRUE(absl::IsInvalidArgument(bad)) << bad;
}

TEST_F(NetlinkTest, LoopbackCannotBeDeleted) {
  absl::Status status = nl_->DeleteLink("lo");

  EXPECT_FALSE(status.ok());
  EXPECT_TRUE(*nl_->LinkExists("lo"));
}

TEST_F(NetlinkTest, ListIncludesLoopbackAndNewLinksInIndexOrder) {
  ASSERT_TRUE(nl_->CreateBridge({.name = "kbr0"}).ok());
  ASSERT_TRUE(nl_->CreateBridge({.name = "kbr1"}).ok());

  absl::StatusOr<std::vector<LinkInfo>> links = nl_->ListLinks();

  ASSERT_TRUE(links.ok()) << links.status();
  ASSERT_EQ(links->size(), 3u);
  EXPECT_EQ((*links)[0].name, "lo");
  EXPECT_EQ((*links)[0].kind, "");
  EXPECT_EQ((*links)[1].name, "kbr0");
  EXPECT_EQ((*links)[2].name, "kbr1");
  EXPECT_LT((*links)[1].ifindex, (*links)[2].ifindex);
}

TEST_F(NetlinkTest, Ipv4AndIpv6AddressesAreAddedListedAndRemoved) {
  ASSERT_TRUE(nl_->CreateBridge({.name = "kbr0"}).ok());

  ASSERT_TRUE(nl_->AddAddress("kbr0", "10.0.0.1/24").ok());
  ASSERT_TRUE(nl_->AddAddress("kbr0", "fd00::1/64").ok());
  absl::StatusOr<std::vector<IpPrefix>> added = nl_->ListAddresses("kbr0");
  ASSERT_TRUE(nl_->RemoveAddress("kbr0", "10.0.0.1/24").ok());
  ASSERT_TRUE(nl_->RemoveAddress("kbr0", "fd00::1/64").ok());
  absl::StatusOr<std::vector<IpPrefix>> removed = nl_->ListAddresses("kbr0");

  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_THAT(*added, Contains(*IpPrefix::Parse("10.0.0.1/24")));
  EXPECT_THAT(*added, Contains(*IpPrefix::Parse("fd00::1/64")));
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_THAT(*removed, Not(Contains(*IpPrefix::Parse("10.0.0.1/24"))));
  EXPECT_THAT(*removed, Not(Contains(*IpPrefix::Parse("fd00::1/64"))));
}

TEST_F(NetlinkTest, AddressErrorsSayWhatIsWrong) {
  ASSERT_TRUE(nl_->CreateBridge({.name = "kbr0"}).ok());
  ASSERT_TRUE(nl_->AddAddress("kbr0", "10.0.0.1/24").ok());

  absl::Status duplicate = nl_->AddAddress("kbr0", "10.0.0.1/24");
  absl::Status absent = nl_->RemoveAddress("kbr0", "10.0.0.2/24");
  absl::Status absent6 = nl_->RemoveAddress("kbr0", "fd00::2/64");
  absl::Status malformed = nl_->AddAddress("kbr0", "10.0.0.300/24");
  absl::Status no_link = nl_->AddAddress("kbr9", "10.0.0.1/24");
  absl::Status unspecified = nl_->AddAddress("kbr0", "::/0");

  EXPECT_TRUE(absl::IsAlreadyExists(duplicate)) << duplicate;
  EXPECT_EQ(duplicate.message(), "address 10.0.0.1/24 is already on kbr0");
  EXPECT_TRUE(absl::IsNotFound(absent)) << absent;
  EXPECT_EQ(absent.message(), "address 10.0.0.2/24 is not on kbr0");
  EXPECT_TRUE(absl::IsNotFound(absent6)) << absent6;
  EXPECT_TRUE(absl::IsInvalidArgument(malformed)) << malformed;
  EXPECT_TRUE(absl::IsNotFound(no_link)) << no_link;
  EXPECT_TRUE(absl::IsInvalidArgument(unspecified)) << unspecified;
  EXPECT_THAT(unspecified.message(), HasSubstr("unspecified address"));
}

}  // namespace
}  // namespace keel::net
