// Pure parsing and mapping helpers: interface names, MAC addresses, IP prefixes, and the
// virtio-net feature -> tap setting mapping. No kernel objects involved.
#include <linux/if_tun.h>
#include <sys/socket.h>

#include <cstddef>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "net/ip_prefix.h"
#include "net/mac_address.h"
#include "net/names.h"
#include "net/vnet_hdr.h"

namespace keel::net {
namespace {

using ::testing::HasSubstr;

TEST(LinkNameTest, AcceptsKernelValidNames) {
  EXPECT_TRUE(ValidateLinkName("kbr0").ok());
  EXPECT_TRUE(ValidateLinkName("k").ok());
  EXPECT_TRUE(ValidateLinkName("ktap-web1_0.a").ok());
  EXPECT_TRUE(ValidateLinkName("abcdefghijklmno").ok());  // 15: the maximum
}

TEST(LinkNameTest, RejectsEmpty) {
  absl::Status status = ValidateLinkName("");
  EXPECT_TRUE(absl::IsInvalidArgument(status));
  EXPECT_THAT(status.message(), HasSubstr("empty"));
}

TEST(LinkNameTest, RejectsSixteenCharacters) {
  absl::Status status = ValidateLinkName("abcdefghijklmnop");
  EXPECT_TRUE(absl::IsInvalidArgument(status));
  EXPECT_THAT(status.message(), HasSubstr("is 16 characters long; Linux allows at most 15"));
}

TEST(LinkNameTest, RejectsSlashColonWhitespaceAndTemplates) {
  EXPECT_THAT(ValidateLinkName("a/b").message(), HasSubstr("contains '/'"));
  EXPECT_THAT(ValidateLinkName("a:b").message(), HasSubstr("contains ':'"));
  EXPECT_THAT(ValidateLinkName("a b").message(), HasSubstr("whitespace"));
  EXPECT_THAT(ValidateLinkName("a\tb").message(), HasSubstr("whitespace"));
  EXPECT_THAT(ValidateLinkName("tap%d").message(), HasSubstr("template"));
  EXPECT_THAT(ValidateLinkName(".").message(), HasSubstr("reserved"));
  EXPECT_THAT(ValidateLinkName("..").message(), HasSubstr("reserved"));
  EXPECT_THAT(ValidateLinkName(absl::string_view("a\0b", 3)).message(),
              HasSubstr("control character"));
  EXPECT_THAT(ValidateLinkName("a\x7f").message(), HasSubstr("control character"));
}

TEST(MacAddressTest, ParsesAndFormats) {
  absl::StatusOr<MacAddress> mac = MacAddress::Parse("52:54:00:AB:cd:0F");
  ASSERT_TRUE(mac.ok()) << mac.status();
  EXPECT_EQ(mac->ToString(), "52:54:00:ab:cd:0f");
  EXPECT_TRUE(mac->IsValidUnicast());
  absl::StatusOr<MacAddress> dashed = MacAddress::Parse("52-54-00-ab-cd-0f");
  ASSERT_TRUE(dashed.ok()) << dashed.status();
  EXPECT_EQ(*dashed, *mac);
}

TEST(MacAddressTest, RejectsMalformed) {
  EXPECT_TRUE(absl::IsInvalidArgument(MacAddress::Parse("").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(MacAddress::Parse("52:54:00:12:34").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(MacAddress::Parse("52:54:00:12:34:5g").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(MacAddress::Parse("52:54-00:12:34:56").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(MacAddress::Parse("52:54:00:12:34:567").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(MacAddress::Parse("5254.0012.3456.").status()));
  EXPECT_THAT(MacAddress::Parse("nope").status().message(), HasSubstr("52:54:00:12:34:56"));
}

TEST(MacAddressTest, ClassifiesAddresses) {
  EXPECT_FALSE(MacAddress{}.IsValidUnicast());  // all zeros
  EXPECT_THAT(MacAddress{}.CheckValidUnicast().message(), HasSubstr("all zeros"));
  const MacAddress multicast{{0x01, 0x00, 0x5e, 0, 0, 1}};
  EXPECT_TRUE(multicast.IsMulticast());
  EXPECT_THAT(multicast.CheckValidUnicast().message(), HasSubstr("multicast"));
  const MacAddress random = MacAddress::RandomLocal();
  EXPECT_TRUE(random.IsValidUnicast());
  EXPECT_TRUE(random.IsLocallyAdministered());
}

TEST(IpPrefixTest, ParsesIpv4AndIpv6) {
  absl::StatusOr<IpPrefix> v4 = IpPrefix::Parse("10.0.0.1/24");
  ASSERT_TRUE(v4.ok()) << v4.status();
  EXPECT_EQ(v4->family, AF_INET);
  EXPECT_EQ(v4->prefix_len, 24);
  EXPECT_EQ(v4->ToString(), "10.0.0.1/24");
  absl::StatusOr<IpPrefix> v6 = IpPrefix::Parse("fd00:0::1/64");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->family, AF_INET6);
  EXPECT_EQ(v6->ToString(), "fd00::1/64");
}

TEST(IpPrefixTest, BareAddressIsAHostPrefix) {
  EXPECT_EQ(IpPrefix::Parse("192.0.2.7")->ToString(), "192.0.2.7/32");
  EXPECT_EQ(IpPrefix::Parse("2001:db8::7")->ToString(), "2001:db8::7/128");
}

TEST(IpPrefixTest, RejectsMalformed) {
  EXPECT_THAT(IpPrefix::Parse("10.0.0.1/33").status().message(), HasSubstr("above the maximum 32"));
  EXPECT_THAT(IpPrefix::Parse("fd00::1/129").status().message(),
              HasSubstr("above the maximum 128"));
  EXPECT_TRUE(absl::IsInvalidArgument(IpPrefix::Parse("10.0.0/24").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(IpPrefix::Parse("10.0.0.1/").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(IpPrefix::Parse("10.0.0.1/2x").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(IpPrefix::Parse("10.0.0.1/-1").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(IpPrefix::Parse("10.0.0.1/0024").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(IpPrefix::Parse("/24").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(IpPrefix::Parse("").status()));
  EXPECT_THAT(IpPrefix::Parse("web1").status().message(), HasSubstr("10.0.0.1/24"));
}

TEST(VnetHdrTest, SizeFollowsVersion1AndMergeableBuffers) {
  EXPECT_EQ(VnetHdrSizeForFeatures(0), 10u);
  EXPECT_EQ(VnetHdrSizeForFeatures(FeatureBit(kVirtioNetFMrgRxbuf)), 12u);
  EXPECT_EQ(VnetHdrSizeForFeatures(FeatureBit(kVirtioFVersion1)), 12u);
  EXPECT_EQ(VnetHdrSizeForFeatures(FeatureBit(kVirtioNetFGuestCsum)), 10u);
}

TEST(VnetHdrTest, LegacyHeaderIsV1WithoutNumBuffers) {
  // virtio 1.2 §5.1.6: the legacy header is the v1 header without num_buffers.
  EXPECT_EQ(sizeof(VirtioNetHdr), kVnetHdrSize);
  EXPECT_EQ(offsetof(VirtioNetHdr, num_buffers), kVnetHdrSizeLegacy);
}

TEST(VnetHdrTest, OffloadsNeedGuestChecksum) {
  EXPECT_EQ(TapOffloadsForGuestFeatures(0), 0u);
  EXPECT_EQ(TapOffloadsForGuestFeatures(FeatureBit(kVirtioNetFGuestTso4) |
                                        FeatureBit(kVirtioNetFGuestTso6)),
            0u);
  EXPECT_EQ(TapOffloadsForGuestFeatures(FeatureBit(kVirtioNetFGuestCsum)),
            static_cast<uint32_t>(TUN_F_CSUM));
}

TEST(VnetHdrTest, MapsEveryGuestOffload) {
  const uint64_t all = FeatureBit(kVirtioNetFGuestCsum) | FeatureBit(kVirtioNetFGuestTso4) |
                       FeatureBit(kVirtioNetFGuestTso6) | FeatureBit(kVirtioNetFGuestEcn) |
                       FeatureBit(kVirtioNetFGuestUfo) | FeatureBit(kVirtioFVersion1);
  EXPECT_EQ(
      TapOffloadsForGuestFeatures(all),
      static_cast<uint32_t>(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN | TUN_F_UFO));
}

TEST(VnetHdrTest, EcnNeedsTso) {
  EXPECT_EQ(TapOffloadsForGuestFeatures(FeatureBit(kVirtioNetFGuestCsum) |
                                        FeatureBit(kVirtioNetFGuestEcn)),
            static_cast<uint32_t>(TUN_F_CSUM));
}

TEST(VnetHdrTest, HostOffloadsDoNotAffectTheTap) {
  // HOST_* bits describe what the device accepts from the guest, not what the tap delivers.
  EXPECT_EQ(
      TapOffloadsForGuestFeatures(FeatureBit(kVirtioNetFCsum) | FeatureBit(kVirtioNetFHostTso4)),
      0u);
}

}  // namespace
}  // namespace keel::net
