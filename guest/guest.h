// The guest's entry and exit.
#pragma once

#include <stdint.h>

// CPL3 entry from boot.S (via iretq): `info` is the loader's boot structure (PVH
// hvm_start_info or Linux boot_params), `kind` says which (BOOT_KIND_*). BSP only.
void guest_main(uint64_t info, uint64_t kind) __attribute__((noreturn));

// Leaves the VM through the debug-exit port (I/O port 0xf4, 4 bytes): keel-vmm exits with
// `code`, QEMU's isa-debug-exit with (code << 1) | 1. If no such device is there, idles.
void guest_exit(uint32_t code) __attribute__((noreturn));

// The guest image's extent in memory (link.ld): load address through the end of BSS.
extern char guest_image_start[], guest_image_end[];
