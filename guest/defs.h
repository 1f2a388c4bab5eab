// Constants shared by the guest's assembly (boot.S, isr.S) and its C code.
//
// Keel's test guest runs almost everything at CPL3 (see guest/README.md); these are the
// few hardware-facing numbers both worlds must agree on: GDT selectors, the link address,
// the service-call numbers and the per-CPU limits.
#pragma once

// Where the guest is linked and loaded: 1 MiB, the Linux boot protocol's bzImage load
// address (pref_address) and a PVH loader's p_paddr alike.
#define GUEST_LOAD_ADDR 0x100000
// The Linux 64-bit boot protocol enters at load address + 0x200 (boot.rst "64-bit Boot
// Protocol"); boot.S pins linux64_entry there with .org.
#define GUEST_LINUX64_ENTRY_OFFSET 0x200

// GDT selectors (gdt in boot.S): Linux's layout, so the user selectors are the ones the
// PVM flavour of KVM expects of its guests (user CS 0x33, user DS 0x2b) and the kernel
// ones match the Linux boot protocol's (CS 0x10, DS 0x18).
// TSS descriptors are 16 bytes each, one per CPU.
#define SEL_KCODE32 0x08  // 32-bit code: the AP trampoline's way from real to long mode
#define SEL_KCODE64 0x10
#define SEL_KDATA 0x18
#define SEL_UCODE32 0x20  // unused (kept for the layout)
#define SEL_UDATA 0x28    // used with RPL 3
#define SEL_UCODE64 0x30  // used with RPL 3
#define SEL_TSS0 0x40     // CPU i uses SEL_TSS0 + 16 * i
#define GUEST_MAX_CPUS 32
#define GDT_BYTES (SEL_TSS0 + 16 * GUEST_MAX_CPUS)

// Each CPU's TSS sits in a 128-byte slot; all slots share one I/O permission bitmap placed
// right after the last slot (each TSS's iomap_base is its own distance to it).
#define TSS_SLOT_BYTES 128
#define TSS_IOMAP_BYTES 8192     // one bit per port, 65536 ports, all zero: every port allowed
#define FAULT_STACK_BYTES 16384  // CPL3 stack for reporting an exception (cpu.c)

// Service calls from CPL3 into CPL0 (isr.S): `int3` through a DPL3 #BP gate, RAX =
// service, RDI/RSI = arguments, RAX = result. Why int3: on the PVM flavour of KVM,
// `int $n` at CPL3 raises #UD, and `syscall` reaches LSTAR without leaving CPL3; an
// exception is the one way in that enters CPL0 on every KVM flavour and on bare metal.
#define SVC_VECTOR 3
#define SYS_HALT 0      // sti; hlt forever (idling until the VMM stops us)
#define SYS_WAIT_IRQ 1  // hlt once unless irq_count != RDI; returns with the caller's IF
#define SYS_SET_IF 2    // RDI != 0: return to CPL3 with IF=1, else IF=0
#define SYS_RDMSR 3     // RDI = MSR; returns its value
#define SYS_WRMSR 4     // RDI = MSR, RSI = value
#define SYS_COUNT 5

// Interrupt vectors: 0-31 exceptions, 32-254 device interrupts, 255 the LAPIC spurious
// vector.
#define IRQ_FIRST_VECTOR 32
#define SPURIOUS_VECTOR 255

// The LAPIC's EOI register at its architectural default base.
#define LAPIC_EOI_ADDR 0xFEE000B0

// Which boot path entered the guest (guest_main's second argument).
#define BOOT_KIND_PVH 1
#define BOOT_KIND_LINUX64 2

// smp.c's AP mailbox (struct ap_boot) as boot.S sees it, and where the real-mode
// trampoline is copied (below 1 MiB, clear of the VMM's boot data at 0x6000-0xFFFF and
// 0x20000-0x2FFFF). The SIPI vector is its page number.
#define AP_BOOT_FRAME_OFF 0
#define AP_BOOT_TSS_SEL_OFF 40
#define AP_TRAMPOLINE_ADDR 0x10000
