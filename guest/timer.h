// Time for the guest: the TSC, with its frequency from CPUID when the VMM says it
// (leaf 0x40000010, the hypervisor timing leaf; or leaf 0x15), else calibrated once
// against PIT channel 0 (5 ms). Used for bounded waits, not for precise measurements.
#pragma once

#include <stdbool.h>
#include <stdint.h>

// TSC ticks per second. The first call may take 5 ms (PIT calibration) and prints
// "keel-guest: tsc <kHz> kHz from <source>".
uint64_t tsc_hz(void);

// The TSC value `us` microseconds from now, and whether it has passed.
uint64_t tsc_deadline_us(uint64_t us);
bool tsc_passed(uint64_t deadline);

void udelay(uint64_t us);
