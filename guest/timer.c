// TSC frequency and delays (see timer.h).
#include "timer.h"

#include "arch.h"
#include "irq.h"
#include "printf.h"

#define PIT_HZ 1193182
#define PIT_CH0_PORT 0x40
#define PIT_CMD_PORT 0x43

static uint64_t from_cpuid(const char** source) {
  uint32_t hv_max = cpuid(0x40000000, 0).eax;
  if (hv_max >= 0x40000010 && hv_max < 0x40010000) {
    uint32_t khz = cpuid(0x40000010, 0).eax;
    if (khz) {
      *source = "cpuid 0x40000010";
      return (uint64_t)khz * 1000;
    }
  }
  if (cpuid(0, 0).eax >= 0x15) {
    struct cpuid_regs r = cpuid(0x15, 0);  // EAX/EBX: TSC/crystal ratio, ECX: crystal Hz
    if (r.eax && r.ebx && r.ecx) {
      *source = "cpuid 0x15";
      return (uint64_t)r.ecx * r.ebx / r.eax;
    }
  }
  return 0;
}

// Latches and reads PIT channel 0's current count (8254 counter latch command).
static uint16_t pit_read_ch0(void) {
  outb(PIT_CMD_PORT, 0x00);
  uint8_t lo = inb(PIT_CH0_PORT);
  uint8_t hi = inb(PIT_CH0_PORT);
  return (uint16_t)(lo | hi << 8);
}

// Runs PIT channel 0 as a rate generator (mode 2, period 65535) and counts TSC ticks
// while it counts down 5 ms. Channel 0 rather than the usual channel 2: channel 2's
// gate and output live in port 0x61, which QEMU's microvm does not have.
// Channel 0's output is IRQ0. Its IOAPIC pin stays masked until a scenario routes it,
// but the 8259A is never initialised: unmasked (its reset state) it would deliver IRQ0
// through LINT0 as vector 0, a #DE the first time the guest enables interrupts (the
// halt loop, sys_wait_irq). So both PICs are masked before the PIT ticks, and channel 0
// is left in mode 0 without a count afterwards (an 8254 then stops counting).
static uint64_t from_pit(void) {
  const uint32_t period = 0xFFFF, target = PIT_HZ / 200;  // 5 ms
  pic_mask_all();
  outb(PIT_CMD_PORT, 0x34);  // channel 0, lo/hi byte, mode 2, binary
  outb(PIT_CH0_PORT, period & 0xFF);
  outb(PIT_CH0_PORT, period >> 8);
  uint16_t start_count = pit_read_ch0();
  uint64_t start = rdtsc(), now = start;
  uint32_t elapsed = 0;
  // Bounded in case there is no PIT (reads return 0xFFFF forever): 10^10 TSC ticks.
  while (elapsed < target && now - start < 10000000000ULL) {
    uint16_t c = pit_read_ch0();
    now = rdtsc();
    elapsed = c <= start_count ? (uint32_t)(start_count - c) : start_count + (period - c);
  }
  outb(PIT_CMD_PORT, 0x30);  // channel 0, lo/hi byte, mode 0, no count: stop
  if (elapsed < target) return 0;
  return (now - start) * PIT_HZ / elapsed;
}

uint64_t tsc_hz(void) {
  static uint64_t hz;
  if (hz) return hz;
  const char* source = "pit";
  uint64_t v = from_cpuid(&source);
  if (!v) v = from_pit();
  if (v < 100000000ULL || v > 10000000000ULL) {  // no PIT, or nonsense: assume 3 GHz
    source = "a guess (no usable PIT or CPUID leaf)";
    v = 3000000000ULL;
  }
  kprintf("keel-guest: tsc %lu kHz from %s\n", v / 1000, source);
  hz = v;
  return hz;
}

uint64_t tsc_deadline_us(uint64_t us) { return rdtsc() + tsc_hz() / 1000000 * us; }

bool tsc_passed(uint64_t deadline) { return (int64_t)(rdtsc() - deadline) >= 0; }

void udelay(uint64_t us) {
  uint64_t d = tsc_deadline_us(us);
  while (!tsc_passed(d)) cpu_relax();
}
