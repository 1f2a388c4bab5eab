// CPU tables (see cpu.h). Static initialisers here are what boot.S relies on: the BSP's
// TSS and the CPL3 entry frame need no CPL0 instruction to set up.
#include "cpu.h"

#include "arch.h"
#include "guest.h"
#include "printf.h"
#include "scenario.h"

// 64-bit TSS (Intel SDM vol. 3 §8.7, "Task Management in 64-bit Mode").
struct tss {
  uint32_t reserved0;
  uint64_t rsp[3];  // stack for entering CPL0/1/2 from an outer ring
  uint64_t reserved1;
  uint64_t ist[7];
  uint64_t reserved2;
  uint16_t reserved3;
  uint16_t iomap_base;  // offset from the TSS base to the I/O permission bitmap
} __attribute__((packed));
_Static_assert(sizeof(struct tss) == 104, "64-bit TSS is 104 bytes");

// All TSSes and the one I/O bitmap they share. CPU i's TSS is slot i; its iomap_base is the
// distance from slot i to `iomap`, so every CPU sees the same all-zero bitmap (every port
// allowed: CPL3 does port I/O with IOPL 0). The byte after the bitmap must be 0xFF
// (SDM §20.5.2), and the TSS limit includes it.
struct tss_slot {
  struct tss tss;
  uint8_t pad[TSS_SLOT_BYTES - sizeof(struct tss)];
};
struct tss_area {
  struct tss_slot slot[GUEST_MAX_CPUS];
  uint8_t iomap[TSS_IOMAP_BYTES];
  uint8_t iomap_end;
};

#define KSTACK_BYTES 4096
#define AP_USER_STACK_BYTES 16384
#define BSP_USER_STACK_BYTES 65536

// CPL0 stacks (interrupts and exceptions from CPL3); CPL3 stacks.
static uint8_t cpu_kstack[GUEST_MAX_CPUS][KSTACK_BYTES] __attribute__((aligned(16)));
static uint8_t ap_user_stack[GUEST_MAX_CPUS][AP_USER_STACK_BYTES] __attribute__((aligned(16)));
static uint8_t bsp_user_stack[BSP_USER_STACK_BYTES] __attribute__((aligned(16)));
// isr.S enters guest_fault_report on this stack (fault_stack + FAULT_STACK_BYTES).
uint8_t fault_stack[FAULT_STACK_BYTES] __attribute__((aligned(16)));

#define IOMAP_BASE(i) ((GUEST_MAX_CPUS - (i)) * TSS_SLOT_BYTES)

// boot.S's GDT points SEL_TSS0 at slot 0 (link.ld splits the address).
struct tss_area cpu_tss_area __attribute__((aligned(TSS_SLOT_BYTES))) = {
    .slot[0].tss =
        {
            .rsp[0] = (uint64_t)(uintptr_t)(cpu_kstack[0] + KSTACK_BYTES),
            .iomap_base = IOMAP_BASE(0),
        },
    .iomap_end = 0xff,
};

// The CPL3 entry frame boot.S hands to iretq: RIP, CS, RFLAGS (IF=0; scenarios turn
// interrupts on with sys_set_if), RSP, SS. RSP is 8 below a 16-byte boundary, as at the
// start of a called function.
uint64_t boot_iret_frame[5] = {
    (uint64_t)(uintptr_t)guest_main,
    SEL_UCODE64 | 3,
    0x2,
    (uint64_t)(uintptr_t)(bsp_user_stack + BSP_USER_STACK_BYTES - 8),
    SEL_UDATA | 3,
};

struct guest_fault guest_fault;

// IDT gate (SDM §7.14.1): 64-bit interrupt gate, handler split across three fields.
struct idt_gate {
  uint16_t offset_0_15;
  uint16_t selector;
  uint8_t ist;
  uint8_t type_attr;  // P | DPL << 5 | type (0xE: interrupt gate, IF cleared on entry)
  uint16_t offset_16_31;
  uint32_t offset_32_63;
  uint32_t reserved;
};
_Static_assert(sizeof(struct idt_gate) == 16, "IDT gates are 16 bytes");

struct idt_gate idt[256] __attribute__((aligned(16)));

extern const char exc_stubs[], irq_stubs[], svc_entry[];
extern uint64_t gdt[];

static void set_gate(int vector, const void* handler, int dpl) {
  uint64_t a = (uint64_t)(uintptr_t)handler;
  idt[vector] = (struct idt_gate){
      .offset_0_15 = (uint16_t)a,
      .selector = SEL_KCODE64,
      .ist = 0,
      .type_attr = (uint8_t)(0x8E | dpl << 5),  // present, 64-bit interrupt gate
      .offset_16_31 = (uint16_t)(a >> 16),
      .offset_32_63 = (uint32_t)(a >> 32),
  };
}

void cpu_init_idt(void) {
  for (int v = 0; v < IRQ_FIRST_VECTOR; v++) set_gate(v, exc_stubs + 16 * v, 0);
  for (int v = IRQ_FIRST_VECTOR; v < 256; v++)
    set_gate(v, irq_stubs + 16 * (v - IRQ_FIRST_VECTOR), 0);
  set_gate(SVC_VECTOR, svc_entry, 3);  // reachable from CPL3 with int3
}

uint16_t cpu_prepare_tss(int index) {
  struct tss* t = &cpu_tss_area.slot[index].tss;
  t->rsp[0] = (uint64_t)(uintptr_t)(cpu_kstack[index] + KSTACK_BYTES);
  t->iomap_base = IOMAP_BASE(index);
  uint64_t base = (uint64_t)(uintptr_t)t;
  uint64_t limit = IOMAP_BASE(index) + TSS_IOMAP_BYTES;  // through the 0xFF terminator
  uint16_t sel = SEL_TSS0 + 16 * index;
  // 16-byte system descriptor (SDM §8.2.3): type 9 (available 64-bit TSS), present.
  gdt[sel / 8] = (limit & 0xFFFF) | ((base & 0xFFFFFF) << 16) | (0x89ULL << 40) |
                 (((limit >> 16) & 0xF) << 48) | (((base >> 24) & 0xFF) << 56);
  gdt[sel / 8 + 1] = base >> 32;
  return sel;
}

uint64_t cpu_user_stack_top(int index) {
  return (uint64_t)(uintptr_t)(ap_user_stack[index] + AP_USER_STACK_BYTES - 8);
}

static const char* const kExceptionNames[32] = {
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS",
    "#SS", "#NP", "#GP", "#PF", "15",  "#MF", "#AC", "#MC", "#XM", "#VE", "#CP"};

void guest_fault_report(void) {
  const struct guest_fault* f = &guest_fault;
  const char* name =
      f->vector < 32 && kExceptionNames[f->vector] ? kExceptionNames[f->vector] : "?";
  scenario_fail_now(
      "exception %s (vector %lu) error=0x%lx rip=0x%lx cs=0x%lx rsp=0x%lx "
      "cr2=0x%lx",
      name, f->vector, f->error, f->rip, f->cs, f->rsp, f->cr2);
}
