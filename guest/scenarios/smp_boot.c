// keeltest=smp[,timeout_ms=N]: start every enabled CPU the MADT lists.
//
//   keeltest: smp cpu <index> apic_id=<id> online       (index 0 is the BSP)
//   keeltest: smp <n>/<m> cpus online
// FAIL if an AP does not reach CPL3 and report within timeout_ms (default 3000 in all),
// or reports a different APIC ID than the MADT gave it.
#include "acpi.h"
#include "arch.h"
#include "irq.h"
#include "printf.h"
#include "scenario.h"
#include "smp.h"
#include "timer.h"

static volatile uint32_t reported_apic_id[GUEST_MAX_CPUS];
static volatile int online[GUEST_MAX_CPUS];

static void report_online(int index) {
  uint32_t id = lapic_id();
  KT_LINE("smp cpu %d apic_id=%u online", index, id);
  reported_apic_id[index] = id;
  __atomic_store_n(&online[index], 1, __ATOMIC_RELEASE);
}

static int run_smp(struct scenario_ctx* ctx) {
  static struct acpi_info a;
  char err[160];
  const char* e = acpi_read(&a, ctx->boot->rsdp, err, sizeof(err));
  if (e) return scenario_fail(ctx, "cannot list the CPUs: %s", e);
  bool ok = true;
  uint64_t timeout_ms = scenario_arg_u64(ctx->args, "timeout_ms", 3000, &ok);
  if (!ok) return scenario_fail(ctx, "timeout_ms must be a number");

  irq_init();  // software-enables this CPU's local APIC before it sends IPIs
  uint64_t deadline = tsc_deadline_us(timeout_ms * 1000);
  uint32_t bsp = lapic_id();
  report_online(0);
  int expected = 1, index = 1;
  uint32_t want[GUEST_MAX_CPUS] = {bsp};
  for (int i = 0; i < a.cpu_count; i++) {
    const struct acpi_cpu* c = &a.cpus[i];
    if (!c->enabled || c->apic_id == bsp) continue;
    expected++;
    if (index == GUEST_MAX_CPUS)
      return scenario_fail(ctx, "more than %d CPUs; the guest supports %d", GUEST_MAX_CPUS,
                           GUEST_MAX_CPUS);
    want[index] = c->apic_id;
    if (smp_start_ap(index, c->apic_id, report_online, deadline) != 0)
      return scenario_fail(ctx,
                           "cpu %d (apic_id=%u) did not start (no sign of it after "
                           "INIT-SIPI-SIPI within %lu ms)",
                           index, c->apic_id, timeout_ms);
    index++;
  }
  int count = 0;
  for (int i = 0; i < index; i++) {
    while (!__atomic_load_n(&online[i], __ATOMIC_ACQUIRE) && !tsc_passed(deadline)) cpu_relax();
    if (!online[i]) continue;
    count++;
    if (reported_apic_id[i] != want[i])
      return scenario_fail(ctx, "cpu %d reports apic_id=%u, the MADT says %u", i,
                           reported_apic_id[i], want[i]);
  }
  KT_LINE("smp %d/%d cpus online", count, expected);
  if (count != expected)
    return scenario_fail(ctx, "only %d of %d cpus came online", count, expected);
  return SCENARIO_PASS;
}
KEEL_SCENARIO(smp, "smp", run_smp);
