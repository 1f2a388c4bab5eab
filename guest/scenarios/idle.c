// keeltest=idle[,button=ignore]: print "keeltest: idle", then halt with interrupts enabled
// until the VMM stops the guest, or until the power button is pressed. With button=ignore the
// guest never looks at the power button (like an OS that hangs or ignores it), so a graceful
// shutdown has to end in a hard stop.
//
// Power button: when the DSDT has an ACPI Generic Event Device (_HID "ACPI0013") with an
// interrupt in its _CRS, that GSI is routed through the IOAPIC (only it: the PICs, LINT0
// and the APIC timer stay masked) and the guest halts in sys_wait_irq until it fires; then
//   keeltest: idle power button
// and soft-off through the FADT's SLEEP_CONTROL_REG: (SLP_TYP << 2) | SLP_EN (bit 5),
// SLP_TYP the first element of the DSDT's \_S5_ package (ACPI 6.5 §4.8.3.7, §7.4.2).
// Without a sleep control register or \_S5_ (or if the write does not stop the guest
// within a second) it leaves through the debug-exit port with 0 instead:
//   keeltest: idle no sleep control register, exiting through port 0xf4
// Without a GED it halts at CPL0 for good (~0 CPU), as it always did.
#include "acpi.h"
#include "arch.h"
#include "guest.h"
#include "irq.h"
#include "lib.h"
#include "printf.h"
#include "scenario.h"
#include "timer.h"

#define SLP_EN 0x20

struct ged_find {
  bool found;
  struct aml_resources r;
};

static void find_ged(void* ctx, const struct aml_device* d) {
  struct ged_find* g = ctx;
  if (g->found || strcmp(d->hid, "ACPI0013") != 0) return;
  g->found = aml_device_resources(d->body, d->body_len, &g->r) && g->r.irq_count > 0;
}

// Writes `value` to a Generic Address Structure register (system memory or I/O space).
static bool gas_write(const struct acpi_gas* g, uint32_t value) {
  value <<= g->bit_offset;
  unsigned width = g->access_size ? 8u << (g->access_size - 1) : (g->bit_width ? g->bit_width : 8);
  if (g->space == ACPI_GAS_MEMORY && g->address && g->address < 0x100000000ULL) {
    if (width == 8) mmio_write8(g->address, (uint8_t)value);
    if (width == 16) mmio_write16(g->address, (uint16_t)value);
    if (width >= 32) mmio_write32(g->address, value);
    return true;
  }
  if (g->space == ACPI_GAS_IO && g->address && g->address <= 0xFFFF) {
    uint16_t port = (uint16_t)g->address;
    if (width == 8) outb(port, (uint8_t)value);
    if (width == 16) outw(port, (uint16_t)value);
    if (width >= 32) outl(port, value);
    return true;
  }
  return false;
}

static __attribute__((noreturn)) void power_off(const struct acpi_info* a) {
  if (a->has_s5 && gas_write(&a->sleep_control, (uint32_t)(a->s5_slp_typ << 2) | SLP_EN)) {
    udelay(1000000);  // a VMM stops the guest on the write; this only runs if it did not
    KT_LINE("idle sleep control did not power off, exiting through port 0xf4");
  } else {
    KT_LINE("idle no sleep control register, exiting through port 0xf4");
  }
  guest_exit(0);
}

static int run_idle(struct scenario_ctx* ctx) {
  irq_init();
  static struct acpi_info a;
  char err[160];
  struct ged_find g = {0};
  struct gsi_route route;
  bool acpi_ok = acpi_read(&a, ctx->boot->rsdp, err, sizeof(err)) == NULL;
  if (acpi_ok) acpi_dsdt_devices(&a, find_ged, &g);
  const char* button = scenario_arg(ctx->args, "button");
  const bool ignore_button = button != NULL && strcmp(button, "ignore") == 0;
  bool routed = !ignore_button && g.found &&
                irq_find_gsi(a.ioapics, a.ioapic_count, g.r.irqs[0], &route);
  if (routed) irq_route_gsi(&route, g.r.irq_active_low);
  if (ignore_button) {
    KT_LINE("idle ignoring the power button");
  } else {
    KT_LINE("idle");
  }
  if (!routed) sys_halt();
  for (;;) {
    uint64_t seen = irq_count;
    if (irq_take(route.vector)) break;
    sys_wait_irq(seen);
  }
  KT_LINE("idle power button");
  power_off(&a);
}
KEEL_SCENARIO(idle, "idle", run_idle);

// keeltest=poweroff: soft-off at once through the FADT's sleep control register, as an OS
// does at the end of `poweroff` (the VMM exits 0). Falls back like `idle` does.
static int run_poweroff(struct scenario_ctx* ctx) {
  static struct acpi_info a;
  char err[160];
  if (acpi_read(&a, ctx->boot->rsdp, err, sizeof(err)) != NULL)
    return scenario_fail(ctx, "no usable ACPI tables: %s", err);
  KT_LINE("poweroff");
  power_off(&a);
}
KEEL_SCENARIO(poweroff, "poweroff", run_poweroff);

// keeltest=reset: pulse the reset line through the i8042 (command 0xFE to port 0x64), the
// FADT's RESET_REG on a PC (the VMM exits 0). FAILs if the guest is still running a second
// later.
static int run_reset(struct scenario_ctx* ctx) {
  KT_LINE("reset");
  outb(0x64, 0xFE);
  udelay(1000000);
  return scenario_fail(ctx, "still running a second after the i8042 reset command");
}
KEEL_SCENARIO(reset, "reset", run_reset);
