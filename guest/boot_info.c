// Reading the loader's boot structures (see boot_info.h).
//
// PVH: Xen public/arch-x86/hvm/start_info.h. Linux: Documentation/arch/x86/zero-page.rst
// and boot.rst (setup header at 0x1f1). Offsets are spelled out here rather than pulled
// from headers the guest cannot include.
#include "boot_info.h"

#include "defs.h"
#include "lib.h"

#define MAPPED_LIMIT 0x100000000ULL  // boot.S identity-maps the first 4 GiB

static int mapped(uint64_t addr, uint64_t len) {
  return addr != 0 && addr < MAPPED_LIMIT && len <= MAPPED_LIMIT - addr;
}

static uint32_t rd32(uint64_t addr) { return *(const volatile uint32_t*)(uintptr_t)addr; }
static uint64_t rd64(uint64_t addr) { return *(const volatile uint64_t*)(uintptr_t)addr; }
static uint8_t rd8(uint64_t addr) { return *(const volatile uint8_t*)(uintptr_t)addr; }

static void copy_cmdline(struct boot_info* bi, uint64_t addr) {
  bi->cmdline[0] = '\0';
  if (addr == 0) return;  // no command line given
  if (!mapped(addr, 1)) {
    bi->error = "command line pointer is above 4 GiB";
    return;
  }
  size_t n = 0;
  while (n + 1 < BOOT_CMDLINE_MAX && mapped(addr + n, 1)) {
    char c = (char)rd8(addr + n);
    if (!c) break;
    bi->cmdline[n++] = c;
  }
  bi->cmdline[n] = '\0';
}

// struct hvm_start_info: magic u32 @0, version u32 @4, flags @8, nr_modules @12,
// modlist_paddr u64 @16, cmdline_paddr u64 @24, rsdp_paddr u64 @32; version >= 1 adds
// memmap_paddr u64 @40, memmap_entries u32 @48. Memmap entries (struct
// hvm_memmap_table_entry): addr u64, size u64, type u32, reserved u32 (24 bytes).
#define PVH_MAGIC 0x336ec578
static void read_pvh(struct boot_info* bi, uint64_t p) {
  if (!mapped(p, 56)) {
    bi->error = "hvm_start_info pointer is not in the low 4 GiB";
    return;
  }
  if (rd32(p) != PVH_MAGIC) {
    bi->error = "hvm_start_info has a bad magic (want 0x336ec578)";
    return;
  }
  uint32_t version = rd32(p + 4);
  copy_cmdline(bi, rd64(p + 24));
  bi->rsdp = rd64(p + 32);
  if (version < 1) return;  // no memory map before version 1
  uint64_t map = rd64(p + 40);
  uint32_t n = rd32(p + 48);
  if (n > BOOT_MEMMAP_MAX) n = BOOT_MEMMAP_MAX;
  if (n && !mapped(map, (uint64_t)n * 24)) {
    bi->error = "hvm_start_info memmap is not in the low 4 GiB";
    return;
  }
  for (uint32_t i = 0; i < n; i++) {
    uint64_t e = map + 24ULL * i;
    bi->memmap[i] = (struct mem_range){rd64(e), rd64(e + 8), rd32(e + 16)};
  }
  bi->memmap_count = (int)n;
}

// struct boot_params: acpi_rsdp_addr u64 @0x070, ext_cmd_line_ptr u32 @0x0c8,
// e820_entries u8 @0x1e8, hdr @0x1f1 (cmd_line_ptr u32 @0x228), e820_table @0x2d0
// (20-byte packed entries: addr u64, size u64, type u32).
static void read_boot_params(struct boot_info* bi, uint64_t p) {
  if (!mapped(p, 4096)) {
    bi->error = "boot_params pointer is not in the low 4 GiB";
    return;
  }
  uint64_t cmdline = rd32(p + 0x228) | ((uint64_t)rd32(p + 0x0c8) << 32);
  copy_cmdline(bi, cmdline);
  bi->rsdp = rd64(p + 0x070);
  uint32_t n = rd8(p + 0x1e8);
  if (n > BOOT_MEMMAP_MAX) n = BOOT_MEMMAP_MAX;
  for (uint32_t i = 0; i < n; i++) {
    uint64_t e = p + 0x2d0 + 20ULL * i;
    bi->memmap[i] = (struct mem_range){rd64(e), rd64(e + 8), rd32(e + 16)};
  }
  bi->memmap_count = (int)n;
}

void boot_info_read(struct boot_info* bi, uint64_t ptr, int kind) {
  bi->kind = kind;
  bi->error = 0;
  bi->cmdline[0] = '\0';
  bi->memmap_count = 0;
  bi->rsdp = 0;
  if (kind == BOOT_KIND_PVH) {
    read_pvh(bi, ptr);
  } else if (kind == BOOT_KIND_LINUX64) {
    read_boot_params(bi, ptr);
  } else {
    bi->error = "unknown boot path";
  }
}

const char* boot_kind_name(int kind) {
  switch (kind) {
    case BOOT_KIND_PVH:
      return "pvh";
    case BOOT_KIND_LINUX64:
      return "linux64";
    default:
      return "unknown";
  }
}
