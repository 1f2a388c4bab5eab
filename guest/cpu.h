// CPU structures the guest owns: the IDT, the per-CPU TSSes (with one shared I/O
// permission bitmap), the per-CPU stacks, and the exception report.
//
// boot.S loads the BSP's GDT/TSS/IDT at CPL0; everything here is then managed from CPL3,
// which may write these tables because the guest's page tables make every page
// user-accessible (a test guest has nothing to protect from itself).
#pragma once

#include <stdint.h>

#include "defs.h"

// Writes every IDT gate: exceptions, device vectors and the DPL3 service-call gate
// (int3). Must run first thing at CPL3 (before that, any exception is a triple fault). BSP only.
void cpu_init_idt(void);

// Prepares CPU `index` (1..GUEST_MAX_CPUS-1): its TSS (kernel stack, I/O bitmap offset)
// and its TSS descriptor in the shared GDT. Returns that descriptor's selector.
uint16_t cpu_prepare_tss(int index);

// Top of the CPL3 stack reserved for CPU `index` (APs only; the BSP's is static).
uint64_t cpu_user_stack_top(int index);

// What the last exception was; filled by isr.S at CPL0, read by guest_fault_report.
struct guest_fault {
  uint64_t vector, error, rip, cs, rsp, cr2;
};
extern struct guest_fault guest_fault;

// Entered at CPL3 after any exception; prints a FAIL line and exits with status 1.
void guest_fault_report(void) __attribute__((noreturn));
