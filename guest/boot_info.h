// What the loader told the guest: boot path, command line, memory map, RSDP address.
//
// Read once at boot from either struct hvm_start_info (PVH) or struct boot_params (Linux
// 64-bit boot protocol) into guest-owned storage, so the loader's low-memory structures
// can be reused afterwards (the AP trampoline overwrites low memory).
#pragma once

#include <stdint.h>

#define BOOT_CMDLINE_MAX 4096  // bytes, including the NUL; mkbzimage.py's cmdline_size
#define BOOT_MEMMAP_MAX 128    // boot_params.e820_table has 128 entries

// Memory map entry types (e820 and PVH alike).
#define MEM_RAM 1
#define MEM_RESERVED 2
#define MEM_ACPI 3
#define MEM_NVS 4
#define MEM_UNUSABLE 5

struct mem_range {
  uint64_t addr;
  uint64_t size;
  uint32_t type;
};

struct boot_info {
  int kind;           // BOOT_KIND_PVH or BOOT_KIND_LINUX64 (defs.h)
  const char* error;  // why the loader's structure could not be used, or NULL
  char cmdline[BOOT_CMDLINE_MAX];
  struct mem_range memmap[BOOT_MEMMAP_MAX];
  int memmap_count;
  uint64_t rsdp;  // RSDP address the loader passed (0: not given, scan for it)
};

// Fills *bi from the loader's structure at physical address `ptr`. Never faults on bad
// input: pointers outside the identity-mapped 4 GiB or a wrong magic set bi->error.
void boot_info_read(struct boot_info* bi, uint64_t ptr, int kind);

// "pvh", "linux64" or "unknown".
const char* boot_kind_name(int kind);
