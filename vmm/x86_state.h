// x86 register state shared by the boot code (which computes it) and the KVM layer (which
// loads it into a vCPU).
#pragma once

#include <cstdint>

namespace keel::vmm {

// A segment register's hidden state, decoded from a GDT descriptor (Intel SDM vol. 3A
// §3.4.5). Field names follow struct kvm_segment; `limit` is in bytes (granularity applied).
struct SegmentState {
  uint64_t base = 0;
  uint32_t limit = 0;
  uint16_t selector = 0;
  uint8_t type = 0;  // 4-bit segment type
  uint8_t present = 0, dpl = 0, db = 0, s = 0, l = 0, g = 0, avl = 0;
};

}  // namespace keel::vmm
