// Synthetic kernel images for the loader tests, fuzz seeds and corpus generation: small but
// structurally complete PVH ELF and bzImage files, plus byte-patching helpers for building
// hostile variants.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

namespace keel::vmm::testing {

using Image = std::vector<uint8_t>;

struct ElfSegment {
  uint64_t paddr = 0;
  Image data;          // file bytes
  uint64_t memsz = 0;  // >= data.size(); the rest is bss
};

enum class NotePlacement {
  kProgramHeader,  // a PT_NOTE segment (and a matching SHT_NOTE section)
  kSectionOnly,    // only an SHT_NOTE section
  kNone,
};

struct PvhElfSpec {
  std::vector<ElfSegment> segments;
  uint64_t entry = 0x100000;
  uint32_t entry_note_size = 8;  // 8 (.quad, older Linux) or 4 (.long)
  NotePlacement note = NotePlacement::kProgramHeader;
};

// A PVH ELF with one 8 KiB text segment at 1 MiB (4 KiB of file data, 4 KiB bss) and one
// 4 KiB data segment at 2 MiB (all file data), entry at 1 MiB.
PvhElfSpec DefaultPvhElfSpec();
Image BuildPvhElf(const PvhElfSpec& spec);

// File offsets inside BuildPvhElf output, for patching.
inline constexpr uint64_t kElfPhdrOffset = 64;
inline constexpr uint64_t kElfPhdrSize = 56;
// The Xen entry note's offset inside the note area (after a 24-byte GNU build-id note);
// its descriptor (the entry) is 16 bytes further.
inline constexpr uint64_t kXenNoteOffset = 24;
// Program header order: PT_NOTE (if kProgramHeader) first, then the PT_LOADs in spec order.

struct BzImageSpec {
  uint8_t setup_sects = 4;
  uint16_t version = 0x020f;
  uint8_t loadflags = 0x01;    // LOADED_HIGH
  uint16_t xloadflags = 0x03;  // XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G
  uint8_t relocatable = 1;
  uint32_t kernel_alignment = 0x200000;
  uint64_t pref_address = 0x1000000;
  uint32_t init_size = 0x800000;
  uint32_t cmdline_size = 2047;
  uint32_t initrd_addr_max = 0x7fffffff;
  uint64_t pm_size = 0x4000;  // protected-mode kernel bytes (multiple of 16)
};
Image BuildBzImage(const BzImageSpec& spec);
// The byte at offset i of the protected-mode kernel BuildBzImage writes.
uint8_t BzPayloadByte(uint64_t i);

// Byte patching of images (unaligned-safe).
template <typename T>
void Patch(Image& image, uint64_t offset, T value) {
  memcpy(image.data() + offset, &value, sizeof(T));
}
template <typename T>
T Peek(const Image& image, uint64_t offset) {
  T value;
  memcpy(&value, image.data() + offset, sizeof(T));
  return value;
}

// A pattern buffer of `size` bytes starting at `seed`.
Image Pattern(size_t size, uint8_t seed);

}  // namespace keel::vmm::testing
