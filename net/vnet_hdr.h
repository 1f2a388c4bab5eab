// The virtio-net header exchanged with a tap opened with IFF_VNET_HDR, and the mapping from
// negotiated virtio-net features to tap settings.
//
// Every frame read from or written to such a tap is preceded by a virtio-net header of the
// size set with TUNSETVNETHDRSZ. Keel's virtio-net device passes the guest's header through
// unchanged, so the tap must use exactly the layout the guest negotiated (virtio 1.2 §5.1.6):
// 12 bytes (with num_buffers) for VIRTIO_F_VERSION_1 or VIRTIO_NET_F_MRG_RXBUF, else 10.
//
//   uint64_t features = ...;  // negotiated with the guest driver
//   KEEL_RETURN_IF_ERROR(SetTapVnetHdrSize(fd, VnetHdrSizeForFeatures(features)));
//   KEEL_RETURN_IF_ERROR(SetTapOffloads(fd, TapOffloadsForGuestFeatures(features)));
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>

namespace keel::net {

// virtio-net feature bit numbers (virtio 1.2 §5.1.3).
enum VirtioNetFeature : unsigned {
  kVirtioNetFCsum = 0,       // device handles packets with partial checksum
  kVirtioNetFGuestCsum = 1,  // driver handles packets with partial checksum
  kVirtioNetFCtrlGuestOffloads = 2,
  kVirtioNetFMtu = 3,
  kVirtioNetFMac = 5,
  kVirtioNetFGuestTso4 = 7,  // driver can receive TSOv4
  kVirtioNetFGuestTso6 = 8,  // driver can receive TSOv6
  kVirtioNetFGuestEcn = 9,   // driver can receive TSO with ECN
  kVirtioNetFGuestUfo = 10,  // driver can receive UFO
  kVirtioNetFHostTso4 = 11,
  kVirtioNetFHostTso6 = 12,
  kVirtioNetFHostEcn = 13,
  kVirtioNetFHostUfo = 14,
  kVirtioNetFMrgRxbuf = 15,  // driver merges receive buffers: header has num_buffers
  kVirtioNetFStatus = 16,
  kVirtioNetFCtrlVq = 17,
  kVirtioNetFMq = 22,
  kVirtioFVersion1 = 32,  // virtio 1.x (§6): header always has num_buffers
};

constexpr uint64_t FeatureBit(unsigned bit) { return uint64_t{1} << bit; }

// struct virtio_net_hdr (virtio 1.2 §5.1.6), "v1" layout with num_buffers. Multi-byte fields are
// little-endian on the wire; Keel runs on little-endian hosts only (asserted below), so they
// are plain integers here.
struct VirtioNetHdr {
  // flags
  static constexpr uint8_t kFlagNeedsCsum = 1;  // csum_start/csum_offset are valid
  static constexpr uint8_t kFlagDataValid = 2;  // checksum already validated
  static constexpr uint8_t kFlagRscInfo = 4;
  // gso_type
  static constexpr uint8_t kGsoNone = 0;
  static constexpr uint8_t kGsoTcpV4 = 1;
  static constexpr uint8_t kGsoUdp = 3;
  static constexpr uint8_t kGsoTcpV6 = 4;
  static constexpr uint8_t kGsoUdpL4 = 5;
  static constexpr uint8_t kGsoEcn = 0x80;

  uint8_t flags = 0;
  uint8_t gso_type = kGsoNone;
  uint16_t hdr_len = 0;
  uint16_t gso_size = 0;
  uint16_t csum_start = 0;
  uint16_t csum_offset = 0;
  // Present only in the 12-byte layout; the 10-byte legacy header ends before it.
  uint16_t num_buffers = 0;
};

static_assert(std::endian::native == std::endian::little,
              "VirtioNetHdr stores the little-endian wire fields as native integers");
static_assert(sizeof(VirtioNetHdr) == 12);
static_assert(offsetof(VirtioNetHdr, flags) == 0);
static_assert(offsetof(VirtioNetHdr, gso_type) == 1);
static_assert(offsetof(VirtioNetHdr, hdr_len) == 2);
static_assert(offsetof(VirtioNetHdr, gso_size) == 4);
static_assert(offsetof(VirtioNetHdr, csum_start) == 6);
static_assert(offsetof(VirtioNetHdr, csum_offset) == 8);
static_assert(offsetof(VirtioNetHdr, num_buffers) == 10);

inline constexpr uint32_t kVnetHdrSizeLegacy = 10;  // without num_buffers
inline constexpr uint32_t kVnetHdrSize = 12;        // with num_buffers

// The header size the tap must use for these negotiated features (virtio 1.2 §5.1.6): 12 when
// VIRTIO_F_VERSION_1 or VIRTIO_NET_F_MRG_RXBUF is negotiated, else 10.
constexpr uint32_t VnetHdrSizeForFeatures(uint64_t features) {
  return (features & (FeatureBit(kVirtioFVersion1) | FeatureBit(kVirtioNetFMrgRxbuf))) != 0
             ? kVnetHdrSize
             : kVnetHdrSizeLegacy;
}

// TUN_F_* flags for TUNSETOFFLOAD from the guest's negotiated receive offloads. TUNSETOFFLOAD
// tells the kernel what the reader of the tap (the device, on the guest's behalf) accepts, so
// the GUEST_* bits are the ones that count:
//   GUEST_CSUM -> TUN_F_CSUM; with it GUEST_TSO4 -> TUN_F_TSO4, GUEST_TSO6 -> TUN_F_TSO6,
//   GUEST_ECN -> TUN_F_TSO_ECN (only with TSO4 or TSO6), GUEST_UFO -> TUN_F_UFO.
// Every segmentation offload depends on GUEST_CSUM (virtio 1.2 §5.1.3.1), so without it the
// result is 0.
uint32_t TapOffloadsForGuestFeatures(uint64_t features);

}  // namespace keel::net
