// Physical memory for the guest's drivers: a bump allocator over the RAM that follows the
// guest image (below 4 GiB, where boot.S's identity map makes guest-physical and virtual
// addresses equal, so a pointer is also the address a device sees).
//
// Nothing is ever freed: a scenario allocates its rings and buffers once, runs, and exits.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "boot_info.h"

// Picks the RAM range that holds the guest image from the loader's memory map and starts
// allocating right after the image. Idempotent. Returns NULL, or what is wrong.
const char* mem_init(const struct boot_info* boot);

// `size` zeroed bytes aligned to `align` (a power of two), or NULL when RAM is short.
void* mem_alloc(size_t size, size_t align);

// Bytes still free (ignoring alignment waste).
uint64_t mem_free_bytes(void);

// The guest-physical address of a pointer into guest memory (identity-mapped).
static inline uint64_t mem_phys(const volatile void* p) { return (uint64_t)(uintptr_t)p; }
