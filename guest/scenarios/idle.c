// keeltest=idle: print "keeltest: idle", then halt with interrupts enabled (sti; hlt at
// CPL0) until the VMM is stopped. Every interrupt source is masked first, so the vCPU
// stays halted: ~0 CPU. Never exits on its own.
#include "arch.h"
#include "irq.h"
#include "printf.h"
#include "scenario.h"

static int run_idle(struct scenario_ctx* ctx) {
  (void)ctx;
  irq_init();
  KT_LINE("idle");
  sys_halt();
}
KEEL_SCENARIO(idle, "idle", run_idle);
