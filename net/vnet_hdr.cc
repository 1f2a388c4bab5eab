#include "net/vnet_hdr.h"

#include <linux/if_tun.h>

namespace keel::net {

uint32_t TapOffloadsForGuestFeatures(uint64_t features) {
  auto has = [features](unsigned bit) { return (features & FeatureBit(bit)) != 0; };
  if (!has(kVirtioNetFGuestCsum)) return 0;
  uint32_t offloads = TUN_F_CSUM;
  if (has(kVirtioNetFGuestTso4)) offloads |= TUN_F_TSO4;
  if (has(kVirtioNetFGuestTso6)) offloads |= TUN_F_TSO6;
  if (has(kVirtioNetFGuestEcn) && (offloads & (TUN_F_TSO4 | TUN_F_TSO6)) != 0) {
    offloads |= TUN_F_TSO_ECN;
  }
  if (has(kVirtioNetFGuestUfo)) offloads |= TUN_F_UFO;
  return offloads;
}

}  // namespace keel::net
