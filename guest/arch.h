// x86 helpers for the guest's CPL3 code: port I/O (allowed by the TSS I/O bitmap), MMIO,
// CPUID, TSC, and the service calls into CPL0 (defs.h).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "defs.h"

static inline void outb(uint16_t port, uint8_t v) {
  __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
static inline void outw(uint16_t port, uint16_t v) {
  __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}
static inline void outl(uint16_t port, uint32_t v) {
  __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}
static inline uint8_t inb(uint16_t port) {
  uint8_t v;
  __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}
// A pointer to guest-physical address `addr` (identity-mapped). The empty asm hides the
// constant from the compiler, which would otherwise warn that e.g. 0x40E points at no
// object.
static inline const uint8_t* phys_ptr(uint64_t addr) {
  const uint8_t* p = (const uint8_t*)(uintptr_t)addr;
  __asm__("" : "+r"(p));
  return p;
}

static inline uint8_t mmio_read8(uint64_t addr) { return *(volatile uint8_t*)(uintptr_t)addr; }
static inline uint16_t mmio_read16(uint64_t addr) { return *(volatile uint16_t*)(uintptr_t)addr; }
static inline uint32_t mmio_read32(uint64_t addr) { return *(volatile uint32_t*)(uintptr_t)addr; }
static inline void mmio_write8(uint64_t addr, uint8_t v) {
  *(volatile uint8_t*)(uintptr_t)addr = v;
}
static inline void mmio_write16(uint64_t addr, uint16_t v) {
  *(volatile uint16_t*)(uintptr_t)addr = v;
}
static inline void mmio_write32(uint64_t addr, uint32_t v) {
  *(volatile uint32_t*)(uintptr_t)addr = v;
}

static inline uint64_t rdtsc(void) {
  uint32_t lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return ((uint64_t)hi << 32) | lo;
}

struct cpuid_regs {
  uint32_t eax, ebx, ecx, edx;
};
static inline struct cpuid_regs cpuid(uint32_t leaf, uint32_t subleaf) {
  struct cpuid_regs r;
  __asm__ volatile("cpuid"
                   : "=a"(r.eax), "=b"(r.ebx), "=c"(r.ecx), "=d"(r.edx)
                   : "a"(leaf), "c"(subleaf));
  return r;
}

static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }

// Memory barriers for memory shared with devices (x86: stores are ordered with stores and
// loads with loads, so only the compiler must be stopped; a store followed by a load of
// another location needs a full fence). A locked add on the stack is a full fence that is
// cheaper than mfence on most CPUs.
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }
static inline void mb_full(void) { __asm__ volatile("lock addl $0, -4(%%rsp)" ::: "memory", "cc"); }

// A service call into isr.S (`int3`, see defs.h). The handlers touch only RAX, RCX, RDX.
static inline uint64_t svc_call(uint64_t nr, uint64_t a, uint64_t b) {
  uint64_t ret = nr;
  __asm__ volatile("int3" : "+a"(ret) : "D"(a), "S"(b) : "rcx", "rdx", "memory");
  return ret;
}
// Idles at CPL0 with interrupts enabled until the VMM stops the guest.
static inline __attribute__((noreturn)) void sys_halt(void) {
  svc_call(SYS_HALT, 0, 0);
  __builtin_unreachable();
}
// Halts until an interrupt arrives, unless irq_count already differs from `seen`.
static inline void sys_wait_irq(uint64_t seen) { svc_call(SYS_WAIT_IRQ, seen, 0); }
// Sets or clears IF for the calling CPU (CPL3 cannot: IOPL is 0).
static inline void sys_set_if(int on) { svc_call(SYS_SET_IF, on != 0, 0); }
static inline uint64_t sys_rdmsr(uint32_t msr) { return svc_call(SYS_RDMSR, msr, 0); }
static inline void sys_wrmsr(uint32_t msr, uint64_t v) { svc_call(SYS_WRMSR, msr, v); }
