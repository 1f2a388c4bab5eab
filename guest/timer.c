// TSC frequency and delays (see timer.h).
#include "timer.h"

#include "arch.h"
#include "printf.h"

#define PIT_HZ 1193182
#define PIT_CH2_PORT 0x42
#define PIT_CMD_PORT 0x43
#define PORT_B 0x61  // bit 0: channel 2 gate, bit 1: speaker, bit 5: channel 2 output

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

// PIT channel 2 in mode 0 counts down once; its output (port 0x61 bit 5) rises at zero.
static uint64_t from_pit(void) {
  const uint32_t count = PIT_HZ / 200;  // 5 ms
  uint8_t port_b = inb(PORT_B);
  outb(PORT_B, (uint8_t)((port_b & ~0x02) | 0x01));  // gate on, speaker off
  outb(PIT_CMD_PORT, 0xB0);                           // channel 2, lo/hi byte, mode 0
  outb(PIT_CH2_PORT, count & 0xFF);
  outb(PIT_CH2_PORT, (uint8_t)(count >> 8));
  uint64_t start = rdtsc();
  // Bounded in case there is no PIT: ~1 s at 10 GHz worth of TSC ticks.
  while (!(inb(PORT_B) & 0x20) && rdtsc() - start < 10000000000ULL) cpu_relax();
  uint64_t ticks = rdtsc() - start;
  outb(PORT_B, port_b);
  return ticks * PIT_HZ / count;
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
