// keeltest=acpi: find and validate the ACPI tables, print what they describe.
//
//   keeltest: acpi rsdp 0x<addr> revision <n> oem <id>
//   keeltest: acpi table <SIG> 0x<addr> len <n>        (root, each listed table, DSDT)
//   keeltest: acpi fadt hw_reduced=<0|1>
//   keeltest: acpi cpu apic_id=<n> enabled|disabled|online-capable
//   keeltest: acpi ioapic id=<n> addr=0x<addr> gsi_base=<n>
//   keeltest: acpi override irq=<n> gsi=<n> flags=0x<f>
//   keeltest: acpi device <name path> hid <HID or "none">
// FAIL on a missing RSDP, XSDT/RSDT, FADT, DSDT or MADT, or any bad checksum.
#include "acpi.h"
#include "printf.h"
#include "scenario.h"

static void print_device(void* ctx, const char* name, const char* hid) {
  (void)ctx;
  KT_LINE("acpi device %s hid %s", name, hid[0] ? hid : "none");
}

static int run_acpi(struct scenario_ctx* ctx) {
  static struct acpi_info a;
  char err[160];
  const char* e = acpi_read(&a, ctx->boot->rsdp, err, sizeof(err));
  if (a.rsdp) KT_LINE("acpi rsdp 0x%lx revision %u oem %s", a.rsdp, a.rsdp_revision, a.oem_id);
  for (int i = 0; i < a.table_count; i++)
    KT_LINE("acpi table %s 0x%lx len %u", a.tables[i].sig, a.tables[i].addr, a.tables[i].len);
  if (e) return scenario_fail(ctx, "%s", e);
  KT_LINE("acpi fadt hw_reduced=%d", a.hw_reduced);
  for (int i = 0; i < a.cpu_count; i++) {
    const struct acpi_cpu* c = &a.cpus[i];
    KT_LINE("acpi cpu apic_id=%u %s", c->apic_id,
            c->enabled          ? "enabled"
            : c->online_capable ? "online-capable"
                                : "disabled");
  }
  for (int i = 0; i < a.ioapic_count; i++)
    KT_LINE("acpi ioapic id=%u addr=0x%x gsi_base=%u", a.ioapics[i].id, a.ioapics[i].addr,
            a.ioapics[i].gsi_base);
  for (int i = 0; i < a.override_count; i++)
    KT_LINE("acpi override irq=%u gsi=%u flags=0x%x", a.overrides[i].irq, a.overrides[i].gsi,
            a.overrides[i].flags);
  if (a.ioapic_count == 0) return scenario_fail(ctx, "the MADT lists no IOAPIC");
  acpi_dsdt_devices(&a, print_device, NULL);
  return SCENARIO_PASS;
}
KEEL_SCENARIO(acpi, "acpi", run_acpi);
