// Keel test guest: the CPL0 side of interrupts, exceptions and service calls.
//
// All of it is tiny on purpose (CPL0 is emulated on PVM, ~0.7 us per instruction):
//   - device interrupts (vectors 32-254) only record themselves (irq_pending bitmap,
//     irq_count), EOI the local APIC and return; drivers do the real work at CPL3
//     (irq.c). Every IOAPIC entry the guest programs is edge-triggered, so the early EOI
//     cannot cause an interrupt storm.
//   - exceptions record what happened in guest_fault and return to fault_entry at CPL3,
//     which prints a FAIL line and exits (cpu.c).
//   - service calls (`int3`, defs.h) offer the few operations CPL3 cannot do itself:
//     hlt, changing IF, MSR access.
// cpu.c writes the IDT gates pointing at these stubs (each stub is 16-byte aligned, so
// vector v's stub is at exc_stubs + 16 * v or irq_stubs + 16 * (v - 32)).
#include "defs.h"

#define RFLAGS_IF 0x200

    .text
    .code64

// Exceptions 0-31. The CPU pushes an error code for these vectors only; the others get
// a zero so exc_common sees one frame layout.
#define HAS_ERROR_CODE(v) ((v) == 8 || (v) == 10 || (v) == 11 || (v) == 12 || \
                           (v) == 13 || (v) == 14 || (v) == 17 || (v) == 21 || \
                           (v) == 29 || (v) == 30)
    .balign 16
    .globl exc_stubs
exc_stubs:
    .set vec, 0
    .rept 32
    .balign 16
    .if !HAS_ERROR_CODE(vec)
    pushq $0
    .endif
    pushq $vec
    jmp exc_common
    .set vec, vec + 1
    .endr

// Stack: vector, error code, then the CPU's frame (RIP, CS, RFLAGS, RSP, SS).
exc_common:
    push %rax
    mov 8(%rsp), %rax
    mov %rax, guest_fault + 0(%rip)     // vector
    mov 16(%rsp), %rax
    mov %rax, guest_fault + 8(%rip)     // error code
    mov 24(%rsp), %rax
    mov %rax, guest_fault + 16(%rip)    // RIP
    mov 32(%rsp), %rax
    mov %rax, guest_fault + 24(%rip)    // CS
    mov 48(%rsp), %rax
    mov %rax, guest_fault + 32(%rip)    // RSP
    mov %cr2, %rax
    mov %rax, guest_fault + 40(%rip)    // CR2 (the address, for a page fault)
    pop %rax
    add $16, %rsp
    // Leave for fault_entry at CPL3, on its own stack, interrupts off.
    movq $fault_entry, 0(%rsp)
    movq $(SEL_UCODE64 | 3), 8(%rsp)
    movq $2, 16(%rsp)
    movq $(fault_stack + FAULT_STACK_BYTES), 24(%rsp)
    movq $(SEL_UDATA | 3), 32(%rsp)
    iretq

// Device interrupts 32-254, and the LAPIC spurious vector 255 (no EOI for that one).
    .balign 16
    .globl irq_stubs
irq_stubs:
    .set vec, IRQ_FIRST_VECTOR
    .rept 256 - IRQ_FIRST_VECTOR
    .balign 16
    .if vec == SPURIOUS_VECTOR
    iretq
    .else
    push %rax
    mov $vec, %eax
    jmp irq_common
    .endif
    .set vec, vec + 1
    .endr

irq_common:
    lock btsq %rax, irq_pending(%rip)
    lock incq irq_count(%rip)
    mov $LAPIC_EOI_ADDR, %eax
    movl $0, (%rax)
    pop %rax
    iretq

// Service call: `int3` at CPL3 through the DPL3 gate of vector 3 (a trap: the saved RIP
// is already past it). RAX = service, RDI/RSI = arguments; RAX = result (-1: no such
// service). Interrupt gate, so IF=0 on entry; the frame is at (%rsp) with the caller's
// RFLAGS at 16(%rsp). Clobbers RCX and RDX.
    .globl svc_entry
svc_entry:
    cmp $SYS_COUNT, %rax
    jae 1f
    jmp *svc_table(, %rax, 8)
1:  mov $-1, %rax
    iretq

sys_halt:
    sti
2:  hlt
    jmp 2b

// Halt until the next interrupt, unless one came since the caller read irq_count (RDI):
// checking with IF=0 and then `sti; hlt` (sti's one-instruction shadow) loses no wakeup.
sys_wait_irq:
    cmp %rdi, irq_count(%rip)
    jne 3f
    sti
    hlt
    cli
3:  iretq

sys_set_if:
    test %rdi, %rdi
    jz 4f
    orq $RFLAGS_IF, 16(%rsp)
    iretq
4:  andq $~RFLAGS_IF, 16(%rsp)
    iretq

sys_rdmsr:
    mov %edi, %ecx
    rdmsr
    shl $32, %rdx
    or %rdx, %rax
    iretq

sys_wrmsr:
    mov %edi, %ecx
    mov %esi, %eax
    mov %rsi, %rdx
    shr $32, %rdx
    wrmsr
    iretq

    .section .rodata
    .balign 8
svc_table:
    .quad sys_halt      // SYS_HALT
    .quad sys_wait_irq  // SYS_WAIT_IRQ
    .quad sys_set_if    // SYS_SET_IF
    .quad sys_rdmsr     // SYS_RDMSR
    .quad sys_wrmsr     // SYS_WRMSR
    .if (. - svc_table) != SYS_COUNT * 8
    .error "svc_table does not match SYS_COUNT"
    .endif

// fault_entry: CPL3, interrupts off, RSP = the top of fault_stack (16-byte aligned).
    .text
fault_entry:
    call guest_fault_report
    ud2

    .section .note.GNU-stack, "", @progbits
