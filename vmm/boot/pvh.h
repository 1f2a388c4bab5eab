// PVH ELF loading (Xen's PVH boot ABI, as Linux, QEMU -M microvm and Keel's test guest use
// it): the kernel is an ELF64 x86-64 executable whose PT_NOTE segment (or SHT_NOTE section)
// holds the note ("Xen", XEN_ELFNOTE_PHYS32_ENTRY = 18) giving its 32-bit physical entry
// point. Every PT_LOAD segment is loaded at its p_paddr; the kernel is entered in 32-bit
// protected mode, paging off, with EBX = the GPA of a struct hvm_start_info.
//
// The structures below follow Xen's public header arch-x86/hvm/start_info.h (version 1,
// which adds the memory map); offsets are pinned by static_asserts.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"
#include "vmm/boot/image_reader.h"
#include "vmm/boot/loader.h"
#include "vmm/memory/guest_memory.h"

namespace keel::vmm::pvh {

inline constexpr uint32_t kStartInfoMagic = 0x336ec578;  // "xEn3" with bit 7 of 'E' set
inline constexpr uint32_t kStartInfoVersion = 1;
inline constexpr uint32_t kXenElfNotePhys32Entry = 18;

struct StartInfo {
  uint32_t magic;
  uint32_t version;
  uint32_t flags;  // SIF_* (none used)
  uint32_t nr_modules;
  uint64_t modlist_paddr;
  uint64_t cmdline_paddr;
  uint64_t rsdp_paddr;
  uint64_t memmap_paddr;  // version 1+
  uint32_t memmap_entries;
  uint32_t reserved;
};
static_assert(offsetof(StartInfo, nr_modules) == 12);
static_assert(offsetof(StartInfo, modlist_paddr) == 16);
static_assert(offsetof(StartInfo, cmdline_paddr) == 24);
static_assert(offsetof(StartInfo, rsdp_paddr) == 32);
static_assert(offsetof(StartInfo, memmap_paddr) == 40);
static_assert(offsetof(StartInfo, memmap_entries) == 48);
static_assert(sizeof(StartInfo) == 56);

// hvm_memmap_table_entry: types are the e820 types (vmm/boot/e820.h).
struct MemmapEntry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;
  uint32_t reserved;
};
static_assert(sizeof(MemmapEntry) == 24);

// hvm_modlist_entry: Keel passes the initrd as module 0.
struct ModlistEntry {
  uint64_t paddr;
  uint64_t size;
  uint64_t cmdline_paddr;
  uint64_t reserved;
};
static_assert(sizeof(ModlistEntry) == 32);

// True if the image starts with the ELF magic (it may still be rejected by LoadPvhElf).
bool LooksLikeElf(const ImageReader& image);

// Loads `config.kernel` as a PVH ELF, its initrd and command line, and writes the
// hvm_start_info (+ memmap + module list) at layout::kPvhStartInfo and the boot GDT.
absl::StatusOr<BootEntry> LoadPvhElf(const GuestMemory& mem, const BootConfig& config);

}  // namespace keel::vmm::pvh
