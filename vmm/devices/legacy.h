// Small legacy x86 devices: the i8042 controller (only what guests use to reset the machine),
// the debug-exit port tests use to end a VM with a status, and the ACPI sleep control
// register hardware-reduced guests write to power off.
#pragma once

#include <cstdint>
#include <span>

#include "absl/synchronization/mutex.h"
#include "vmm/devices/bus.h"
#include "vmm/exit.h"

namespace keel::vmm {

// i8042 at ports 0x60 (data) and 0x64 (status/command). Command 0xFE (pulse the reset line)
// ends the VM as a reset; the controller command byte and output port can be read and
// written so guests probing the controller see a sane one with no keyboard attached.
class I8042 : public BusDevice {
 public:
  static constexpr uint16_t kDataPort = 0x60;
  static constexpr uint16_t kCommandPort = 0x64;

  // `exit` is not owned and must outlive the device.
  explicit I8042(ExitSink* exit) : exit_(exit) {}
  // Register twice: offset 0 is the data port; the device is registered at 0x60 with size
  // 5 so offset 4 is the command port (0x61..0x63 belong to nobody and read as 0xff).
  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  ExitSink* exit_;
  absl::Mutex mu_;
  uint8_t command_byte_ ABSL_GUARDED_BY(mu_) = 0x45;  // translate, system flag, kbd irq
  uint8_t pending_command_ ABSL_GUARDED_BY(mu_) = 0;  // command waiting for a data byte
  int output_ ABSL_GUARDED_BY(mu_) = -1;              // byte for the guest at 0x60, or -1
};

// Debug-exit port 0xF4, 4 bytes wide (the same place as QEMU's isa-debug-exit): a write of
// v ends the VM with exit status v (values above 255 report 255).
class DebugExit : public BusDevice {
 public:
  static constexpr uint16_t kPort = 0xf4;
  static constexpr uint64_t kSize = 4;

  explicit DebugExit(ExitSink* exit) : exit_(exit) {}
  void Read(uint64_t, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  ExitSink* exit_;
};

// ACPI hardware-reduced sleep control register (ACPI 6.4 §4.8.3.7): writing SLP_EN with
// SLP_TYP equal to the DSDT's \_S5 value powers the VM off. The status register reads 0.
class AcpiSleepControl : public BusDevice {
 public:
  // `s5_type` is the SLP_TYP value the DSDT's _S5_ package announces.
  AcpiSleepControl(ExitSink* exit, uint8_t s5_type) : exit_(exit), s5_type_(s5_type) {}
  void Read(uint64_t, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  ExitSink* exit_;
  uint8_t s5_type_;
};

// Ports guests commonly touch that Keel does not emulate (POST code 0x80, CMOS 0x70/0x71,
// PCI config 0xCF8-0xCFF...): reads return all ones, writes are ignored, without the noise
// of the "no device" log line.
class NullDevice : public BusDevice {
 public:
  void Read(uint64_t, std::span<uint8_t> data) override;
  void Write(uint64_t, std::span<const uint8_t>) override {}
};

}  // namespace keel::vmm
