// Bump allocator (see mem.h).
#include "mem.h"

#include "guest.h"
#include "lib.h"

#define MAPPED_LIMIT 0x100000000ULL  // boot.S identity-maps the first 4 GiB

static uint64_t next, limit;

const char* mem_init(const struct boot_info* boot) {
  if (limit) return NULL;
  uint64_t img_end = (uint64_t)(uintptr_t)guest_image_end;
  for (int i = 0; i < boot->memmap_count; i++) {
    const struct mem_range* m = &boot->memmap[i];
    if (m->type != MEM_RAM || m->addr > img_end || m->addr + m->size <= img_end) continue;
    next = img_end;
    limit = m->addr + m->size < MAPPED_LIMIT ? m->addr + m->size : MAPPED_LIMIT;
    return NULL;
  }
  return "no RAM range in the memory map holds the guest image";
}

void* mem_alloc(size_t size, size_t align) {
  uint64_t start = (next + align - 1) & ~(uint64_t)(align - 1);
  if (start < next || start > limit || size > limit - start) return NULL;
  next = start + size;
  void* p = (void*)(uintptr_t)start;
  memset(p, 0, size);
  return p;
}

uint64_t mem_free_bytes(void) { return limit - next; }
