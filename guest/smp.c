// AP start-up (see smp.h).
#include "smp.h"

#include <stddef.h>

#include "arch.h"
#include "cpu.h"
#include "irq.h"
#include "lib.h"
#include "timer.h"

// The mailbox boot.S's ap_entry64 reads (offsets in defs.h): the AP's CPL3 entry frame
// for iretq and its TSS selector. The rest is for ap_main.
struct ap_boot {
  uint64_t frame[5];  // RIP, CS, RFLAGS, RSP, SS
  uint16_t tss_sel;
  int index;
  ap_main_fn fn;
  int taken;  // set by the AP once it no longer needs the mailbox
};
_Static_assert(offsetof(struct ap_boot, frame) == AP_BOOT_FRAME_OFF, "boot.S frame offset");
_Static_assert(offsetof(struct ap_boot, tss_sel) == AP_BOOT_TSS_SEL_OFF, "boot.S TSS offset");

struct ap_boot ap_boot;

extern const char ap_trampoline[], ap_trampoline_end[];

// Local APIC interrupt command register (SDM vol. 3 §11.6.1).
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define ICR_INIT 0x00004500     // INIT, level assert
#define ICR_STARTUP 0x00004600  // start-up IPI; low byte: vector (trampoline page number)
#define ICR_BUSY (1u << 12)     // delivery status: send pending

static void ap_main(void) {
  int index = ap_boot.index;
  ap_main_fn fn = ap_boot.fn;
  __atomic_store_n(&ap_boot.taken, 1, __ATOMIC_RELEASE);
  fn(index);
  sys_halt();
}

static void send_ipi(uint32_t apic_id, uint32_t icr) {
  lapic_write(LAPIC_ICR_HI, apic_id << 24);
  lapic_write(LAPIC_ICR_LO, icr);
  for (int i = 0; i < 1000 && (lapic_read(LAPIC_ICR_LO) & ICR_BUSY); i++) cpu_relax();
}

static int wait_taken(uint64_t deadline) {
  while (!__atomic_load_n(&ap_boot.taken, __ATOMIC_ACQUIRE)) {
    if (tsc_passed(deadline)) return -1;
    cpu_relax();
  }
  return 0;
}

int smp_start_ap(int index, uint32_t apic_id, ap_main_fn fn, uint64_t deadline) {
  if (index <= 0 || index >= GUEST_MAX_CPUS) return -1;
  // Boot data in low memory was copied out at boot (boot_info.c), so the trampoline may
  // overwrite what is there. Copying it again per AP is cheap and keeps this stateless.
  memcpy((void*)(uintptr_t)AP_TRAMPOLINE_ADDR, ap_trampoline,
         (size_t)(ap_trampoline_end - ap_trampoline));
  ap_boot = (struct ap_boot){
      .frame = {(uint64_t)(uintptr_t)ap_main, SEL_UCODE64 | 3, 0x2, cpu_user_stack_top(index),
                SEL_UDATA | 3},
      .tss_sel = cpu_prepare_tss(index),
      .index = index,
      .fn = fn,
  };
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  // INIT, then two start-up IPIs (the second is ignored by a CPU that already left
  // wait-for-SIPI). The architectural 10 ms wait after INIT is for real hardware; KVM
  // processes INIT synchronously.
  uint32_t sipi = ICR_STARTUP | (AP_TRAMPOLINE_ADDR >> 12);
  send_ipi(apic_id, ICR_INIT);
  send_ipi(apic_id, sipi);
  uint64_t second = tsc_deadline_us(200);
  while (!tsc_passed(second) && !__atomic_load_n(&ap_boot.taken, __ATOMIC_ACQUIRE)) cpu_relax();
  if (!__atomic_load_n(&ap_boot.taken, __ATOMIC_ACQUIRE)) send_ipi(apic_id, sipi);
  return wait_taken(deadline);
}
