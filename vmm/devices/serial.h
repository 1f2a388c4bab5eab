// Serial8250: a 16550A-compatible UART, as COM1 (port 0x3F8, IRQ 4) carries the guest console.
//
// Transmission is instantaneous: every byte the guest writes to THR goes straight to the
// console sinks, and the transmitter is always empty. Received bytes (QueueInput) wait in a
// bounded FIFO. Interrupts are edges: raised when a source becomes pending (THR empty with
// ETBEI, data ready with ERBFI), matching an ISA line routed edge-triggered through the
// IOAPIC.
//
// Threading: Read/Write run on vCPU threads, QueueInput on the I/O thread; one mutex guards
// the registers. Sinks are not owned and must outlive the device.
#pragma once

#include <cstdint>
#include <deque>
#include <span>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "vmm/devices/bus.h"
#include "vmm/devices/console.h"
#include "vmm/devices/interrupt.h"

namespace keel::vmm {

class Serial8250 : public BusDevice {
 public:
  static constexpr uint16_t kCom1Port = 0x3f8;
  static constexpr uint64_t kPortCount = 8;
  static constexpr size_t kInputFifoMax = 4096;

  // `irq` is not owned and must outlive the device.
  Serial8250(Interrupt* irq, std::vector<ConsoleSink*> sinks)
      : irq_(irq), sinks_(std::move(sinks)) {}

  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;

  // Feeds bytes to the guest (console input). Bytes beyond the FIFO bound are dropped.
  void QueueInput(std::span<const uint8_t> bytes);

  // Bytes the guest has written to the console so far.
  uint64_t bytes_written() const;

 private:
  uint8_t ReadRegister(uint64_t offset) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Returns true if an interrupt edge must be raised.
  bool WriteRegister(uint64_t offset, uint8_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Transmit(uint8_t byte) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint8_t InterruptId() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Interrupt* irq_;
  std::vector<ConsoleSink*> sinks_;

  mutable absl::Mutex mu_;
  uint8_t ier_ ABSL_GUARDED_BY(mu_) = 0;
  uint8_t lcr_ ABSL_GUARDED_BY(mu_) = 0x03;  // 8N1
  uint8_t mcr_ ABSL_GUARDED_BY(mu_) = 0x08;  // OUT2
  uint8_t scr_ ABSL_GUARDED_BY(mu_) = 0;
  uint8_t dll_ ABSL_GUARDED_BY(mu_) = 0x0c;  // 9600 baud
  uint8_t dlm_ ABSL_GUARDED_BY(mu_) = 0;
  uint8_t fcr_ ABSL_GUARDED_BY(mu_) = 0;
  bool thr_interrupt_pending_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<uint8_t> input_ ABSL_GUARDED_BY(mu_);
  uint64_t bytes_written_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace keel::vmm
