// Starting application processors: INIT-SIPI-SIPI through the local APIC's ICR, a
// real-mode trampoline copied to AP_TRAMPOLINE_ADDR, then boot.S's ap_entry32 to long
// mode and CPL3, each AP with its own TSS, CPL0 stack and CPL3 stack.
#pragma once

#include <stdint.h>

typedef void (*ap_main_fn)(int index);

// Starts the CPU with local APIC ID `apic_id` as CPU `index` (1..GUEST_MAX_CPUS-1) and
// waits until it runs at CPL3, where it calls fn(index) and then idles (sti; hlt). APs
// are started one at a time: the mailbox is reused. Returns 0 once the AP has taken its
// mailbox, or -1 if it had not by `deadline` (a TSC value). BSP only.
int smp_start_ap(int index, uint32_t apic_id, ap_main_fn fn, uint64_t deadline);
