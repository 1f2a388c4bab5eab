#include "vmm/devices/serial.h"

namespace keel::vmm {

namespace {

// Register offsets and bits (National Semiconductor PC16550D datasheet).
constexpr uint64_t kData = 0;  // RBR/THR, or DLL when DLAB
constexpr uint64_t kIer = 1;   // or DLM when DLAB
constexpr uint64_t kIir = 2;   // read: IIR; write: FCR
constexpr uint64_t kLcr = 3;
constexpr uint64_t kMcr = 4;
constexpr uint64_t kLsr = 5;
constexpr uint64_t kMsr = 6;
constexpr uint64_t kScr = 7;

constexpr uint8_t kIerRxData = 0x01;
constexpr uint8_t kIerThrEmpty = 0x02;
constexpr uint8_t kIerMask = 0x0f;

constexpr uint8_t kIirNoInterrupt = 0x01;
constexpr uint8_t kIirThrEmpty = 0x02;
constexpr uint8_t kIirRxData = 0x04;
constexpr uint8_t kIirFifoEnabled = 0xc0;

constexpr uint8_t kFcrEnable = 0x01;
constexpr uint8_t kFcrClearRx = 0x02;

constexpr uint8_t kLcrDlab = 0x80;

constexpr uint8_t kMcrLoop = 0x10;
constexpr uint8_t kMcrMask = 0x1f;

constexpr uint8_t kLsrDataReady = 0x01;
constexpr uint8_t kLsrThrEmpty = 0x20;
constexpr uint8_t kLsrIdle = 0x40;

// Modem status with the line up: DCD, DSR, CTS.
constexpr uint8_t kMsrConnected = 0xb0;

}  // namespace

void Serial8250::Read(uint64_t offset, std::span<uint8_t> data) {
  if (data.empty()) return;
  absl::MutexLock lock(&mu_);
  data[0] = offset < kPortCount ? ReadRegister(offset) : 0xff;
  for (size_t i = 1; i < data.size(); ++i) data[i] = 0;
}

void Serial8250::Write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty() || offset >= kPortCount) return;
  bool raise;
  {
    absl::MutexLock lock(&mu_);
    raise = WriteRegister(offset, data[0]);
  }
  if (raise) irq_->Trigger();
}

void Serial8250::QueueInput(std::span<const uint8_t> bytes) {
  bool raise = false;
  {
    absl::MutexLock lock(&mu_);
    const bool was_empty = input_.empty();
    for (uint8_t b : bytes) {
      if (input_.size() >= kInputFifoMax) break;
      input_.push_back(b);
    }
    raise = was_empty && !input_.empty() && (ier_ & kIerRxData);
  }
  if (raise) irq_->Trigger();
}

uint64_t Serial8250::bytes_written() const {
  absl::MutexLock lock(&mu_);
  return bytes_written_;
}

uint8_t Serial8250::InterruptId() const {
  uint8_t fifo = (fcr_ & kFcrEnable) ? kIirFifoEnabled : 0;
  if ((ier_ & kIerRxData) && !input_.empty()) return kIirRxData | fifo;
  if ((ier_ & kIerThrEmpty) && thr_interrupt_pending_) return kIirThrEmpty | fifo;
  return kIirNoInterrupt | fifo;
}

uint8_t Serial8250::ReadRegister(uint64_t offset) {
  const bool dlab = lcr_ & kLcrDlab;
  switch (offset) {
    case kData: {
      if (dlab) return dll_;
      if (input_.empty()) return 0;
      const uint8_t b = input_.front();
      input_.pop_front();
      return b;
    }
    case kIer:
      return dlab ? dlm_ : ier_;
    case kIir: {
      const uint8_t iir = InterruptId();
      // Reading IIR while it reports THR empty acknowledges that interrupt (16550 §8.6.4).
      if ((iir & 0x0f) == kIirThrEmpty) thr_interrupt_pending_ = false;
      return iir;
    }
    case kLcr:
      return lcr_;
    case kMcr:
      return mcr_;
    case kLsr:
      return kLsrThrEmpty | kLsrIdle | (input_.empty() ? 0 : kLsrDataReady);
    case kMsr:
      if (mcr_ & kMcrLoop) {
        // Loopback wires DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD; Linux probes this.
        return static_cast<uint8_t>(((mcr_ & 0x01) << 5) | ((mcr_ & 0x02) << 3) |
                                    ((mcr_ & 0x04) << 4) | ((mcr_ & 0x08) << 4));
      }
      return kMsrConnected;
    case kScr:
      return scr_;
    default:
      return 0xff;
  }
}

bool Serial8250::WriteRegister(uint64_t offset, uint8_t value) {
  const bool dlab = lcr_ & kLcrDlab;
  switch (offset) {
    case kData:
      if (dlab) {
        dll_ = value;
        return false;
      }
      if (mcr_ & kMcrLoop) {
        if (input_.size() < kInputFifoMax) input_.push_back(value);
        return (ier_ & kIerRxData) != 0;
      }
      Transmit(value);
      // The byte left at once, so THR is empty again: a new THRE interrupt is pending.
      thr_interrupt_pending_ = true;
      return (ier_ & kIerThrEmpty) != 0;
    case kIer: {
      if (dlab) {
        dlm_ = value;
        return false;
      }
      const uint8_t old = ier_;
      ier_ = value & kIerMask;
      bool raise = false;
      if (!(old & kIerThrEmpty) && (ier_ & kIerThrEmpty)) {
        // Enabling ETBEI with THR empty raises THRE immediately (16550 §8.6.3).
        thr_interrupt_pending_ = true;
        raise = true;
      }
      if (!(old & kIerRxData) && (ier_ & kIerRxData) && !input_.empty()) raise = true;
      return raise;
    }
    case kIir:
      fcr_ = value;
      if (value & kFcrClearRx) input_.clear();
      return false;
    case kLcr:
      lcr_ = value;
      return false;
    case kMcr:
      mcr_ = value & kMcrMask;
      return false;
    case kScr:
      scr_ = value;
      return false;
    default:  // LSR and MSR are read-only
      return false;
  }
}

void Serial8250::Transmit(uint8_t byte) {
  ++bytes_written_;
  for (ConsoleSink* sink : sinks_) sink->Write(std::span(&byte, 1));
}

}  // namespace keel::vmm
