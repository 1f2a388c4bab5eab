// Keel test guest: everything that runs before the first CPL3 instruction.
//
// Two ways in, both ending in the same five CPL0 steps (load GDT, page tables, TSS, IDT,
// iretq to CPL3):
//   - PVH (Xen PVH boot ABI, as used by QEMU -kernel and keel-vmm for ELF images): 32-bit
//     protected mode, paging off, EBX = physical address of struct hvm_start_info.
//   - Linux x86 64-bit boot protocol (Documentation/arch/x86/boot.rst "64-bit Boot
//     Protocol"): long mode at load address + 0x200, RSI = struct boot_params.
//
// Why so little here: on the PVM flavour of KVM every CPL0 instruction is emulated
// (~0.7 us each) while CPL3 runs natively. So the page tables, GDT, TSS and the CPL3
// entry frame are all built by the assembler and linker as initialised data, and the boot
// path is a straight line of ~20 instructions with no loops. The IDT is filled later,
// from CPL3 (cpu.c), which can write it because every page is user-accessible.
#include "defs.h"

#define CR0_PE (1 << 0)
#define CR0_ET (1 << 4)
#define CR0_NE (1 << 5)
#define CR0_PG (1 << 31)
#define CR4_PAE (1 << 5)
#define MSR_EFER 0xC0000080
#define EFER_LME (1 << 8)


// Page-table entry bits.
#define PTE_P 0x001
#define PTE_RW 0x002
#define PTE_US 0x004  // user-accessible: CPL3 does all the work, MMIO included
#define PTE_PWT 0x008
#define PTE_PCD 0x010
#define PTE_PS 0x080  // 2 MiB page in a page directory
#define PTE_TABLE (PTE_P | PTE_RW | PTE_US)
#define PTE_2M (PTE_P | PTE_RW | PTE_US | PTE_PS)
#define PTE_2M_UNCACHED (PTE_2M | PTE_PWT | PTE_PCD)

// From 32-bit protected mode with paging off to long mode (compatibility mode until the
// far jump that follows). Touches no memory, so it is safe with any DS (the AP trampoline
// arrives here with a real-mode DS).
.macro ENTER_LONG_MODE
    mov $pml4, %eax
    mov %eax, %cr3
    mov $CR4_PAE, %eax
    mov %eax, %cr4
    mov $MSR_EFER, %ecx
    mov $EFER_LME, %eax
    xor %edx, %edx
    wrmsr
    mov $(CR0_PG | CR0_NE | CR0_ET | CR0_PE), %eax
    mov %eax, %cr0
.endm


// ---------------------------------------------------------------------------------------
// The PVH ELF note (Xen public/elfnote.h: XEN_ELFNOTE_PHYS32_ENTRY = 18, name "Xen"):
// the physical address of the 32-bit entry point. The descriptor is 8 bytes, as Linux
// emits it: QEMU reads a full 64-bit word there. The section stays 4-byte aligned on
// purpose: QEMU pads the note name to the PT_NOTE segment's p_align, so an 8-byte aligned
// segment would make it read the descriptor 4 bytes too late.
    .section .note.xen, "a", @note
    .balign 4
    .long 4               // namesz: "Xen\0"
    .long 8               // descsz
    .long 18              // type: XEN_ELFNOTE_PHYS32_ENTRY
    .asciz "Xen"
    .quad pvh_entry32

// ---------------------------------------------------------------------------------------
// .boot is placed first, at GUEST_LOAD_ADDR (link.ld): offsets inside it are fixed.
    .section .boot, "ax"

    .code32
    .globl pvh_entry32
pvh_entry32:
    // PVH ABI: flat 32-bit CS/DS/ES/SS, paging off, interrupts off, EBX = hvm_start_info,
    // no stack. EBX survives up to guest_main's first argument.
    lgdt gdt_ptr
    ENTER_LONG_MODE
    ljmp $SEL_KCODE64, $pvh_entry64

    // Boot protocol 2.15 kernel_info (boot.rst "The kernel_info"): "LToP", fixed-part
    // size, total size, setup_type_max. mkbzimage.py points kernel_info_offset here.
    .org 0x1c0
    .globl guest_kernel_info
guest_kernel_info:
    .ascii "LToP"
    .long 16
    .long 16
    .long 0

    .code64
    .org GUEST_LINUX64_ENTRY_OFFSET
    .globl linux64_entry
linux64_entry:
    // Linux 64-bit boot protocol: long mode, the loader's identity map and GDT,
    // interrupts off, RSI = boot_params. Switch to our own GDT and page tables (ours mark
    // every page user-accessible); iretq below reloads CS and SS from our GDT.
    mov %rsi, %rdi
    mov $BOOT_KIND_LINUX64, %esi
    lgdt gdt_ptr(%rip)
    mov $pml4, %eax
    mov %rax, %cr3
    jmp enter_cpl3

pvh_entry64:
    mov %ebx, %edi
    mov $BOOT_KIND_PVH, %esi
enter_cpl3:
    // The BSP's TSS (I/O bitmap allowing every port, RSP0 for interrupts from CPL3) and
    // the IDT (its gates are written from CPL3 before anything can raise an interrupt).
    mov $SEL_TSS0, %ax
    ltr %ax
    lidt idt_ptr(%rip)
    // RDI/RSI (boot info pointer and kind) pass through iretq untouched.
    mov $boot_iret_frame, %esp
    iretq

// ---------------------------------------------------------------------------------------
// Application processors. smp.c copies ap_trampoline to AP_TRAMPOLINE_ADDR and sends
// INIT-SIPI-SIPI; each AP starts there in real mode (CS = vector << 8, IP = 0).
    .section .rodata.ap_trampoline, "a"
    .code16
    .globl ap_trampoline, ap_trampoline_end
ap_trampoline:
    cli
    mov %cs, %ax
    mov %ax, %ds
    lgdtl ap_trampoline_gdtr - ap_trampoline
    mov %cr0, %eax
    or $CR0_PE, %eax
    mov %eax, %cr0
    ljmpl $SEL_KCODE32, $ap_entry32
    .balign 8
ap_trampoline_gdtr:
    .word GDT_BYTES - 1
    .long gdt
ap_trampoline_end:

    .text
    .code32
ap_entry32:
    ENTER_LONG_MODE
    ljmp $SEL_KCODE64, $ap_entry64

    .code64
ap_entry64:
    // smp.c's ap_boot mailbox holds this AP's TSS selector and its CPL3 entry frame.
    movzwl ap_boot + AP_BOOT_TSS_SEL_OFF(%rip), %eax
    ltr %ax
    lidt idt_ptr(%rip)
    lea ap_boot + AP_BOOT_FRAME_OFF(%rip), %rsp
    iretq

// ---------------------------------------------------------------------------------------
    .data
    .balign 16
    .globl gdt
gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF  // SEL_KCODE32: flat 4 GiB, DPL0, execute/read, D=1
    .quad 0x00209A0000000000  // SEL_KCODE64: present, DPL0, execute/read, L=1
    .quad 0x00CF92000000FFFF  // SEL_KDATA: flat 4 GiB, DPL0, read/write
    .quad 0x00CFFA000000FFFF  // SEL_UCODE32: flat 4 GiB, DPL3, execute/read, D=1
    .quad 0x00CFF2000000FFFF  // SEL_UDATA: flat 4 GiB, DPL3, read/write
    .quad 0x0020FA0000000000  // SEL_UCODE64: DPL3, execute/read, L=1
    .quad 0                   // 0x38: unused
    // SEL_TSS0: the BSP's 64-bit available TSS (type 9). The base is split across
    // fields; link.ld computes the pieces from cpu_tss_area. The limit covers the slot
    // plus the shared I/O bitmap and its 0xFF terminator (cpu.h).
    .word GUEST_MAX_CPUS * TSS_SLOT_BYTES + TSS_IOMAP_BYTES
    .word guest_tss0_base_0_15
    .byte guest_tss0_base_16_23
    .byte 0x89
    .byte 0
    .byte guest_tss0_base_24_31
    .long 0
    .long 0
    // The APs' TSS descriptors are written by smp.c before each AP starts.
    .fill (GUEST_MAX_CPUS - 1) * 16, 1, 0
gdt_end:

    .balign 8
    .globl gdt_ptr
gdt_ptr:
    .word GDT_BYTES - 1
    .quad gdt

    .balign 8
    .globl idt_ptr
idt_ptr:
    .word 256 * 16 - 1
    .quad idt

// Identity map of the first 4 GiB with 2 MiB pages, all user-accessible; the top GiB
// (0xC0000000-0xFFFFFFFF, which contains the MMIO gap, IOAPIC and LAPIC) uncached.
    .section .data.pagetables, "aw"
    .balign 4096
pml4:
    .quad pdpt + PTE_TABLE
    .fill 511, 8, 0
pdpt:
    .quad pd + 0x0000 + PTE_TABLE
    .quad pd + 0x1000 + PTE_TABLE
    .quad pd + 0x2000 + PTE_TABLE
    .quad pd + 0x3000 + PTE_TABLE
    .fill 508, 8, 0
pd:
    .set addr, 0
    .rept 3 * 512
    .quad addr + PTE_2M
    .set addr, addr + 0x200000
    .endr
    .rept 512
    .quad addr + PTE_2M_UNCACHED
    .set addr, addr + 0x200000
    .endr

    .section .note.GNU-stack, "", @progbits
