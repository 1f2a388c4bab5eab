// keeltest=acpi: find and validate the ACPI tables, print what they describe.
//
//   keeltest: acpi rsdp 0x<addr> revision <n> oem <id>
//   keeltest: acpi table <SIG> 0x<addr> len <n>        (root, each listed table, DSDT)
//   keeltest: acpi fadt hw_reduced=<0|1>
//   keeltest: acpi cpu apic_id=<n> enabled|disabled|online-capable
//   keeltest: acpi ioapic id=<n> addr=0x<addr> gsi_base=<n>
//   keeltest: acpi override irq=<n> gsi=<n> flags=0x<f>
//   keeltest: acpi fadt sleep_control space=<n> width=<n> addr=0x<addr>   (when present)
//   keeltest: acpi s5 slp_typ=<n>                                        (when \_S5_ is)
//   keeltest: acpi device <name path> hid <HID or "none">
//   keeltest: acpi resources <name> mem=0x<base>+0x<len> irq=<a,b|none> edge|level high|low
//                                                  (devices whose _CRS has memory or IRQs)
// FAIL on a missing RSDP, XSDT/RSDT, FADT, DSDT or MADT, or any bad checksum.
#include "acpi.h"
#include "printf.h"
#include "scenario.h"

static void print_device(void* ctx, const struct aml_device* d) {
  (void)ctx;
  KT_LINE("acpi device %s hid %s", d->name, d->hid[0] ? d->hid : "none");
  struct aml_resources r;
  if (!aml_device_resources(d->body, d->body_len, &r) || (!r.has_mem && !r.irq_count)) return;
  char irqs[64] = "";
  for (int i = 0, n = 0; i < r.irq_count; i++)
    n += fmt_snprintf(irqs + n, sizeof(irqs) - (size_t)n, "%s%u", i ? "," : "", r.irqs[i]);
  KT_LINE("acpi resources %s mem=0x%lx+0x%lx irq=%s %s %s", d->name, r.mem_base, r.mem_len,
          r.irq_count ? irqs : "none", r.irq_level ? "level" : "edge",
          r.irq_active_low ? "low" : "high");
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
  if (a.sleep_control.address)
    KT_LINE("acpi fadt sleep_control space=%u width=%u addr=0x%lx", a.sleep_control.space,
            a.sleep_control.bit_width, a.sleep_control.address);
  if (a.has_s5) KT_LINE("acpi s5 slp_typ=%u", a.s5_slp_typ);
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
