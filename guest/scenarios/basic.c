// Basic scenarios: hello (boot and report), exit:N (exit status plumbing), e820 (the
// memory map the loader gave), svc (the service calls into CPL0), fault (the exception
// path).
#include "arch.h"
#include "guest.h"
#include "irq.h"
#include "lib.h"
#include "printf.h"
#include "scenario.h"

// keeltest=hello: the banner is already out; just pass.
static int run_hello(struct scenario_ctx* ctx) {
  (void)ctx;
  return SCENARIO_PASS;
}
KEEL_SCENARIO(hello, "hello", run_hello);

// keeltest=exit:N or keeltest=exit,code=N: pass and leave with status N (0-255).
static int run_exit(struct scenario_ctx* ctx) {
  const struct scenario_args* a = ctx->args;
  const char* text = a->param[0] ? a->param : scenario_arg(a, "code");
  uint64_t code;
  if (!text || !parse_u64(text, strlen(text), &code) || code > 255)
    return scenario_fail(ctx, "want keeltest=exit:N with N in 0-255, got '%s'", text ? text : "");
  KT_LINE("exit %lu", code);
  ctx->exit_code = (int)code;
  return SCENARIO_PASS;
}
KEEL_SCENARIO(exit, "exit", run_exit);

// keeltest=e820: print the memory map, check that RAM starts at 0, that no entries overlap,
// and that the guest image itself sits in RAM. Empty entries are reported and skipped
// (QEMU's PVH firmware appends one).
static int run_e820(struct scenario_ctx* ctx) {
  const struct boot_info* b = ctx->boot;
  if (b->memmap_count == 0) return scenario_fail(ctx, "the loader gave no memory map");
  for (int i = 0; i < b->memmap_count; i++) {
    const struct mem_range* m = &b->memmap[i];
    KT_LINE("e820 0x%lx 0x%lx %u", m->addr, m->size, m->type);
  }
  int ram_at_zero = 0, image_in_ram = 0;
  uint64_t img_start = (uint64_t)(uintptr_t)guest_image_start;
  uint64_t img_end = (uint64_t)(uintptr_t)guest_image_end;
  for (int i = 0; i < b->memmap_count; i++) {
    const struct mem_range* m = &b->memmap[i];
    if (m->size == 0) {
      KT_LINE("e820 entry %d is empty, ignored", i);
      continue;
    }
    if (m->addr + m->size < m->addr)
      return scenario_fail(ctx, "entry %d (0x%lx) wraps around", i, m->addr);
    if (m->type == 1 && m->addr == 0) ram_at_zero = 1;
    if (m->type == 1 && m->addr <= img_start && img_end <= m->addr + m->size) image_in_ram = 1;
    for (int j = 0; j < i; j++) {
      const struct mem_range* o = &b->memmap[j];
      if (m->addr < o->addr + o->size && o->addr < m->addr + m->size)
        return scenario_fail(ctx, "entries %d (0x%lx+0x%lx) and %d (0x%lx+0x%lx) overlap", j,
                             o->addr, o->size, i, m->addr, m->size);
    }
  }
  if (!ram_at_zero) return scenario_fail(ctx, "no RAM entry starts at address 0");
  if (!image_in_ram)
    return scenario_fail(ctx, "the guest image 0x%lx-0x%lx is not inside one RAM entry", img_start,
                         img_end);
  KT_LINE("e820 %d entries ok", b->memmap_count);
  return SCENARIO_PASS;
}
KEEL_SCENARIO(e820, "e820", run_e820);

// keeltest=svc: each service call that returns (defs.h). RDMSR of EFER must show long
// mode active; a WRMSR/RDMSR round trip through MSR_KERNEL_GS_BASE (present on every
// x86-64 CPU, unused by the guest); SYS_WAIT_IRQ with a stale count returns at once.
//   keeltest: svc efer=0x<v> kernel_gs_base=0x<v>
#define MSR_EFER 0xC0000080
#define MSR_KERNEL_GS_BASE 0xC0000102
#define EFER_LMA (1u << 10)
static int run_svc(struct scenario_ctx* ctx) {
  uint64_t efer = sys_rdmsr(MSR_EFER);
  if (!(efer & EFER_LMA)) return scenario_fail(ctx, "EFER 0x%lx does not show long mode", efer);
  const uint64_t pattern = 0x00007eedc0ffee00ULL;
  sys_wrmsr(MSR_KERNEL_GS_BASE, pattern);
  uint64_t back = sys_rdmsr(MSR_KERNEL_GS_BASE);
  if (back != pattern)
    return scenario_fail(ctx, "KERNEL_GS_BASE reads 0x%lx after writing 0x%lx", back, pattern);
  sys_set_if(1);
  sys_set_if(0);
  sys_wait_irq(irq_count + 1);  // not the current count: must not halt
  KT_LINE("svc efer=0x%lx kernel_gs_base=0x%lx", efer, back);
  return SCENARIO_PASS;
}
KEEL_SCENARIO(svc, "svc", run_svc);

// keeltest=fault: take a page fault on purpose (reads address 0xFFFFFFFF00000000, which
// the guest does not map) to exercise the exception path. Ends with
// "keeltest: FAIL fault: exception #PF ..." and exit status 1.
static int run_fault(struct scenario_ctx* ctx) {
  (void)ctx;
  volatile uint32_t* p = (volatile uint32_t*)0xFFFFFFFF00000000ULL;
  (void)*p;
  return scenario_fail(ctx, "the read of an unmapped address did not fault");
}
KEEL_SCENARIO(fault, "fault", run_fault);
