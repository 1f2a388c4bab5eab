// The Linux x86 boot protocol structures: the setup header (Documentation/arch/x86/boot.rst,
// "The Real-Mode Kernel Header") and struct boot_params, the "zero page"
// (Documentation/arch/x86/zero-page.rst). Keel defines them itself; every documented offset
// is pinned by a static_assert below, and tests/vmm/boot/linux_boot_params_test.cc compares
// them with the tables in those documents.
//
// All fields are little-endian (x86). The structures are packed: the setup header starts at
// the odd offset 0x1F1. Copy a field into a local before binding a reference to it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "vmm/boot/e820.h"

namespace keel::vmm::linux_boot {

inline constexpr uint64_t kSetupHeaderOffset = 0x1f1;
inline constexpr uint16_t kBootFlagMagic = 0xaa55;
inline constexpr uint32_t kHdrSMagic = 0x53726448;  // "HdrS"
inline constexpr uint64_t kSectorSize = 512;
inline constexpr uint8_t kDefaultSetupSects = 4;   // setup_sects == 0 means 4
inline constexpr uint64_t kEntry64Offset = 0x200;  // 64-bit entry: load address + 0x200

// loadflags (boot.rst "loadflags").
inline constexpr uint8_t kLoadedHigh = 1 << 0;
inline constexpr uint8_t kCanUseHeap = 1 << 7;
// xloadflags (boot.rst "xloadflags", protocol 2.12+).
inline constexpr uint16_t kXlfKernel64 = 1 << 0;
inline constexpr uint16_t kXlfCanBeLoadedAbove4g = 1 << 1;

inline constexpr uint8_t kLoaderTypeUndefined = 0xff;  // type_of_loader: no assigned id
inline constexpr uint16_t kVidModeNormal = 0xffff;     // vid_mode "normal"
inline constexpr int kE820MaxEntriesZeroPage = 128;

struct __attribute__((packed)) SetupHeader {
  uint8_t setup_sects;
  uint16_t root_flags;
  uint32_t syssize;
  uint16_t ram_size;
  uint16_t vid_mode;
  uint16_t root_dev;
  uint16_t boot_flag;
  uint16_t jump;
  uint32_t header;
  uint16_t version;
  uint32_t realmode_swtch;
  uint16_t start_sys_seg;
  uint16_t kernel_version;
  uint8_t type_of_loader;
  uint8_t loadflags;
  uint16_t setup_move_size;
  uint32_t code32_start;
  uint32_t ramdisk_image;
  uint32_t ramdisk_size;
  uint32_t bootsect_kludge;
  uint16_t heap_end_ptr;
  uint8_t ext_loader_ver;
  uint8_t ext_loader_type;
  uint32_t cmd_line_ptr;
  uint32_t initrd_addr_max;
  uint32_t kernel_alignment;
  uint8_t relocatable_kernel;
  uint8_t min_alignment;
  uint16_t xloadflags;
  uint32_t cmdline_size;
  uint32_t hardware_subarch;
  uint64_t hardware_subarch_data;
  uint32_t payload_offset;
  uint32_t payload_length;
  uint64_t setup_data;
  uint64_t pref_address;
  uint32_t init_size;
  uint32_t handover_offset;
  uint32_t kernel_info_offset;
};

struct __attribute__((packed)) BootParams {
  uint8_t screen_info[0x40];
  uint8_t apm_bios_info[0x14];
  uint8_t pad_054[4];
  uint64_t tboot_addr;
  uint8_t ist_info[0x10];
  uint64_t acpi_rsdp_addr;
  uint8_t pad_078[8];
  uint8_t hd0_info[0x10];
  uint8_t hd1_info[0x10];
  uint8_t sys_desc_table[0x10];
  uint8_t olpc_ofw_header[0x10];
  uint32_t ext_ramdisk_image;
  uint32_t ext_ramdisk_size;
  uint32_t ext_cmd_line_ptr;
  uint8_t pad_0cc[0x70];
  uint32_t cc_blob_address;
  uint8_t edid_info[0x80];
  uint8_t efi_info[0x20];
  uint32_t alt_mem_k;
  uint32_t scratch;
  uint8_t e820_entries;
  uint8_t eddbuf_entries;
  uint8_t edd_mbr_sig_buf_entries;
  uint8_t kbd_status;
  uint8_t secure_boot;
  uint8_t pad_1ed[2];
  uint8_t sentinel;
  uint8_t pad_1f0;
  SetupHeader hdr;
  uint8_t pad_26c[0x290 - 0x26c];
  uint32_t edd_mbr_sig_buffer[16];
  E820Entry e820_table[kE820MaxEntriesZeroPage];
  uint8_t pad_cd0[0x30];
  uint8_t eddbuf[0x1ec];
  uint8_t pad_eec[0x114];
};

// Offsets from boot.rst, relative to the start of the kernel image / boot_params.
#define KEEL_HDR_AT(field, offset) \
  static_assert(kSetupHeaderOffset + offsetof(SetupHeader, field) == (offset), #field)
KEEL_HDR_AT(setup_sects, 0x1f1);
KEEL_HDR_AT(root_flags, 0x1f2);
KEEL_HDR_AT(syssize, 0x1f4);
KEEL_HDR_AT(ram_size, 0x1f8);
KEEL_HDR_AT(vid_mode, 0x1fa);
KEEL_HDR_AT(root_dev, 0x1fc);
KEEL_HDR_AT(boot_flag, 0x1fe);
KEEL_HDR_AT(jump, 0x200);
KEEL_HDR_AT(header, 0x202);
KEEL_HDR_AT(version, 0x206);
KEEL_HDR_AT(realmode_swtch, 0x208);
KEEL_HDR_AT(start_sys_seg, 0x20c);
KEEL_HDR_AT(kernel_version, 0x20e);
KEEL_HDR_AT(type_of_loader, 0x210);
KEEL_HDR_AT(loadflags, 0x211);
KEEL_HDR_AT(setup_move_size, 0x212);
KEEL_HDR_AT(code32_start, 0x214);
KEEL_HDR_AT(ramdisk_image, 0x218);
KEEL_HDR_AT(ramdisk_size, 0x21c);
KEEL_HDR_AT(bootsect_kludge, 0x220);
KEEL_HDR_AT(heap_end_ptr, 0x224);
KEEL_HDR_AT(ext_loader_ver, 0x226);
KEEL_HDR_AT(ext_loader_type, 0x227);
KEEL_HDR_AT(cmd_line_ptr, 0x228);
KEEL_HDR_AT(initrd_addr_max, 0x22c);
KEEL_HDR_AT(kernel_alignment, 0x230);
KEEL_HDR_AT(relocatable_kernel, 0x234);
KEEL_HDR_AT(min_alignment, 0x235);
KEEL_HDR_AT(xloadflags, 0x236);
KEEL_HDR_AT(cmdline_size, 0x238);
KEEL_HDR_AT(hardware_subarch, 0x23c);
KEEL_HDR_AT(hardware_subarch_data, 0x240);
KEEL_HDR_AT(payload_offset, 0x248);
KEEL_HDR_AT(payload_length, 0x24c);
KEEL_HDR_AT(setup_data, 0x250);
KEEL_HDR_AT(pref_address, 0x258);
KEEL_HDR_AT(init_size, 0x260);
KEEL_HDR_AT(handover_offset, 0x264);
KEEL_HDR_AT(kernel_info_offset, 0x268);
#undef KEEL_HDR_AT
static_assert(kSetupHeaderOffset + sizeof(SetupHeader) == 0x26c);

// Offsets from zero-page.rst.
#define KEEL_ZP_AT(field, offset) static_assert(offsetof(BootParams, field) == (offset), #field)
KEEL_ZP_AT(screen_info, 0x000);
KEEL_ZP_AT(apm_bios_info, 0x040);
KEEL_ZP_AT(tboot_addr, 0x058);
KEEL_ZP_AT(ist_info, 0x060);
KEEL_ZP_AT(acpi_rsdp_addr, 0x070);
KEEL_ZP_AT(hd0_info, 0x080);
KEEL_ZP_AT(hd1_info, 0x090);
KEEL_ZP_AT(sys_desc_table, 0x0a0);
KEEL_ZP_AT(olpc_ofw_header, 0x0b0);
KEEL_ZP_AT(ext_ramdisk_image, 0x0c0);
KEEL_ZP_AT(ext_ramdisk_size, 0x0c4);
KEEL_ZP_AT(ext_cmd_line_ptr, 0x0c8);
KEEL_ZP_AT(cc_blob_address, 0x13c);
KEEL_ZP_AT(edid_info, 0x140);
KEEL_ZP_AT(efi_info, 0x1c0);
KEEL_ZP_AT(alt_mem_k, 0x1e0);
KEEL_ZP_AT(scratch, 0x1e4);
KEEL_ZP_AT(e820_entries, 0x1e8);
KEEL_ZP_AT(eddbuf_entries, 0x1e9);
KEEL_ZP_AT(edd_mbr_sig_buf_entries, 0x1ea);
KEEL_ZP_AT(kbd_status, 0x1eb);
KEEL_ZP_AT(secure_boot, 0x1ec);
KEEL_ZP_AT(sentinel, 0x1ef);
KEEL_ZP_AT(hdr, 0x1f1);
KEEL_ZP_AT(edd_mbr_sig_buffer, 0x290);
KEEL_ZP_AT(e820_table, 0x2d0);
KEEL_ZP_AT(eddbuf, 0xd00);
#undef KEEL_ZP_AT
static_assert(sizeof(BootParams) == 4096);
static_assert(sizeof(BootParams::e820_table) == 0xa00);
static_assert(sizeof(BootParams::edd_mbr_sig_buffer) == 0x040);
static_assert(sizeof(BootParams::eddbuf) == 0x1ec);

}  // namespace keel::vmm::linux_boot
