// The guest's CPL3 entry: tables, console, boot information, banner, then the scenario.
#include "arch.h"
#include "boot_info.h"
#include "cpu.h"
#include "guest.h"
#include "printf.h"
#include "scenario.h"
#include "uart.h"

#define DEBUG_EXIT_PORT 0xf4

static struct boot_info boot;

void guest_main(uint64_t info, uint64_t kind) {
  cpu_init_idt();
  uart_init();
  boot_info_read(&boot, info, (int)kind);
  kprintf("keel-guest: booted %s, cmdline: %s\n", boot_kind_name(boot.kind), boot.cmdline);
  scenario_main(&boot);
}

void guest_exit(uint32_t code) {
  outl(DEBUG_EXIT_PORT, code);
  sys_halt();
}
