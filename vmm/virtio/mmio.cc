#include "vmm/virtio/mmio.h"

#include <cstring>

#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "base/log.h"
#include "base/status.h"

namespace keel::vmm::virtio {

namespace {

// Features the transport and Queue implement for every device.
constexpr uint64_t kTransportFeatures = kFeatureVersion1 | kFeatureEventIdx | kFeatureIndirectDesc;

}  // namespace

void ReadConfigBytes(std::span<const uint8_t> config, uint64_t offset, std::span<uint8_t> data) {
  for (size_t i = 0; i < data.size(); ++i) {
    const uint64_t at = offset + i;
    data[i] = at >= offset && at < config.size() ? config[at] : 0;
  }
}

absl::StatusOr<std::unique_ptr<MmioTransport>> MmioTransport::Create(VirtioDevice* device,
                                                                     const GuestMemory* memory,
                                                                     Interrupt* line,
                                                                     EventLoop* loop,
                                                                     std::string name) {
  auto t = std::unique_ptr<MmioTransport>(
      new MmioTransport(device, memory, line, loop, std::move(name)));
  for (size_t i = 0; i < device->num_queues(); ++i) {
    KEEL_ASSIGN_OR_RETURN(EventFd fd, EventFd::Create());
    t->notify_.push_back(std::move(fd));
  }
  for (size_t i = 0; i < t->notify_.size(); ++i) {
    MmioTransport* self = t.get();
    KEEL_RETURN_IF_ERROR(
        loop->Add(t->notify_[i].fd(), EPOLLIN, [self, i](uint32_t) { self->OnNotify(i); }));
  }
  return t;
}

MmioTransport::MmioTransport(VirtioDevice* device, const GuestMemory* memory, Interrupt* line,
                             EventLoop* loop, std::string name)
    : device_(device),
      memory_(memory),
      interrupt_(line),
      loop_(loop),
      name_(std::move(name)),
      queues_(device->num_queues(), Queue(std::min(device->max_queue_size(), kMaxQueueSize))) {}

MmioTransport::~MmioTransport() {
  for (const EventFd& fd : notify_) loop_->Remove(fd.fd());
}

std::vector<int> MmioTransport::notify_fds() const {
  std::vector<int> fds;
  for (const EventFd& fd : notify_) fds.push_back(fd.fd());
  return fds;
}

uint32_t MmioTransport::status() const {
  absl::MutexLock lock(&mu_);
  return status_;
}

uint64_t MmioTransport::driver_features() const {
  absl::MutexLock lock(&mu_);
  return driver_features_;
}

uint64_t MmioTransport::OfferedFeatures() const {
  return device_->device_features() | kTransportFeatures;
}

Queue* MmioTransport::SelectedQueue() {
  return queue_sel_ < queues_.size() ? &queues_[queue_sel_] : nullptr;
}

void MmioTransport::Read(uint64_t offset, std::span<uint8_t> data) {
  if (offset >= kMmioConfig) {
    absl::MutexLock lock(&mu_);
    device_->ReadConfig(offset - kMmioConfig, data);
    return;
  }
  // §4.2.2.2: control registers are accessed 32 bits wide and aligned; others read as 0.
  memset(data.data(), 0, data.size());
  if (data.size() != 4 || offset % 4 != 0) return;
  uint32_t value;
  if (offset == kMmioInterruptStatus) {
    value = interrupt_.status();  // hot path: no lock
  } else {
    absl::MutexLock lock(&mu_);
    value = ReadRegister(offset);
  }
  memcpy(data.data(), &value, 4);
}

uint32_t MmioTransport::ReadRegister(uint64_t offset) {
  const Queue* q = SelectedQueue();
  switch (offset) {
    case kMmioMagicValue:
      return kMmioMagic;
    case kMmioVersion:
      return 2;
    case kMmioDeviceId:
      return device_->device_id();
    case kMmioVendorId:
      return kMmioVendor;
    case kMmioDeviceFeatures: {
      const uint64_t f = OfferedFeatures();
      return device_features_sel_ == 0   ? static_cast<uint32_t>(f)
             : device_features_sel_ == 1 ? static_cast<uint32_t>(f >> 32)
                                         : 0;
    }
    case kMmioQueueNumMax:
      return q ? q->max_size() : 0;
    case kMmioQueueNum:
      return q ? q->size() : 0;
    case kMmioQueueReady:
      return q && q->ready() ? 1 : 0;
    case kMmioStatus:
      return status_;
    case kMmioQueueDescLow:
      return q ? static_cast<uint32_t>(q->desc_gpa()) : 0;
    case kMmioQueueDescHigh:
      return q ? static_cast<uint32_t>(q->desc_gpa() >> 32) : 0;
    case kMmioQueueDriverLow:
      return q ? static_cast<uint32_t>(q->avail_gpa()) : 0;
    case kMmioQueueDriverHigh:
      return q ? static_cast<uint32_t>(q->avail_gpa() >> 32) : 0;
    case kMmioQueueDeviceLow:
      return q ? static_cast<uint32_t>(q->used_gpa()) : 0;
    case kMmioQueueDeviceHigh:
      return q ? static_cast<uint32_t>(q->used_gpa() >> 32) : 0;
    case kMmioShmLenLow:
    case kMmioShmLenHigh:
      return 0xffffffff;  // no shared memory regions (§4.2.2: length -1)
    case kMmioConfigGeneration:
      return config_generation_;
    default:
      return 0;
  }
}

void MmioTransport::Write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset >= kMmioConfig) {
    absl::MutexLock lock(&mu_);
    // Config writes only make sense while the driver has not failed the device.
    if (!(status_ & kStatusFailed)) device_->WriteConfig(offset - kMmioConfig, data);
    return;
  }
  if (data.size() != 4 || offset % 4 != 0) return;
  uint32_t value;
  memcpy(&value, data.data(), 4);
  switch (offset) {
    case kMmioInterruptAck:
      interrupt_.Acknowledge(value);
      return;
    case kMmioQueueNotify:
      // Normally caught by the ioeventfd; a write that reaches us (no ioeventfd, or a
      // value outside the datamatch set) is forwarded the same way.
      if (value < notify_.size()) notify_[value].Signal();
      return;
    case kMmioStatus:
      if (value == 0) {
        ResetOnIoThread();
        return;
      }
      break;
    default:
      break;
  }
  absl::MutexLock lock(&mu_);
  WriteRegister(offset, value);
}

void MmioTransport::WriteRegister(uint64_t offset, uint32_t value) {
  Queue* q = SelectedQueue();
  // Queue registers may change only while that queue is not ready and the device is not
  // live (§4.2.2.3); a guest breaking that rule is ignored rather than raced.
  const bool queue_writable = q && !q->ready() && !(status_ & kStatusDriverOk);
  const bool features_writable =
      (status_ & kStatusDriver) && !(status_ & (kStatusFeaturesOk | kStatusDriverOk));
  auto set_low = [](uint64_t old, uint32_t v) { return (old & ~0xffffffffull) | v; };
  auto set_high = [](uint64_t old, uint32_t v) { return (old & 0xffffffffull) | uint64_t{v} << 32; };
  switch (offset) {
    case kMmioDeviceFeaturesSel:
      device_features_sel_ = value;
      break;
    case kMmioDriverFeaturesSel:
      driver_features_sel_ = value;
      break;
    case kMmioDriverFeatures:
      if (!features_writable) break;
      if (driver_features_sel_ == 0) driver_features_ = set_low(driver_features_, value);
      if (driver_features_sel_ == 1) driver_features_ = set_high(driver_features_, value);
      break;
    case kMmioQueueSel:
      queue_sel_ = value;
      break;
    case kMmioQueueNum:
      if (queue_writable) q->set_size(static_cast<uint16_t>(std::min<uint32_t>(value, 0xffff)));
      break;
    case kMmioQueueReady:
      if (q && !(status_ & kStatusDriverOk)) q->set_ready(value == 1);
      break;
    case kMmioQueueDescLow:
      if (queue_writable) q->set_desc_gpa(set_low(q->desc_gpa(), value));
      break;
    case kMmioQueueDescHigh:
      if (queue_writable) q->set_desc_gpa(set_high(q->desc_gpa(), value));
      break;
    case kMmioQueueDriverLow:
      if (queue_writable) q->set_avail_gpa(set_low(q->avail_gpa(), value));
      break;
    case kMmioQueueDriverHigh:
      if (queue_writable) q->set_avail_gpa(set_high(q->avail_gpa(), value));
      break;
    case kMmioQueueDeviceLow:
      if (queue_writable) q->set_used_gpa(set_low(q->used_gpa(), value));
      break;
    case kMmioQueueDeviceHigh:
      if (queue_writable) q->set_used_gpa(set_high(q->used_gpa(), value));
      break;
    case kMmioStatus:
      WriteStatus(value);
      break;
    default:
      break;
  }
}

void MmioTransport::WriteStatus(uint32_t value) {
  // The driver only ever adds bits (§3.1.1); clearing needs a reset (a write of 0).
  const uint32_t added = value & ~status_;
  if ((value & status_) != status_) return;
  uint32_t next = status_ | added;
  if (added & kStatusFeaturesOk) {
    const uint64_t offered = OfferedFeatures();
    const bool subset = (driver_features_ & ~offered) == 0;
    const bool modern = driver_features_ & kFeatureVersion1;
    if (!subset || !modern) {
      // Leave FEATURES_OK clear: the driver reads it back and gives up (§3.1.1 step 6).
      next &= ~kStatusFeaturesOk;
      KEEL_LOG(WARNING) << name_ << ": refusing driver features "
                        << absl::StrFormat("%#x", driver_features_)
                        << (modern ? " (not offered)" : " (legacy drivers are not supported)");
    }
  }
  if ((added & kStatusDriverOk) && !(next & kStatusFeaturesOk)) {
    next &= ~kStatusDriverOk;  // DRIVER_OK before FEATURES_OK is a driver bug
  }
  status_ = next;
  if ((added & kStatusDriverOk) && (next & kStatusDriverOk)) {
    loop_->Post([this] { ActivateOnIoThread(); });
  }
}

void MmioTransport::ActivateOnIoThread() {
  uint64_t features;
  {
    absl::MutexLock lock(&mu_);
    if (!(status_ & kStatusDriverOk) || (status_ & kStatusNeedsReset) || running_) return;
    features = driver_features_;
  }
  const bool event_idx = features & kFeatureEventIdx;
  for (size_t i = 0; i < queues_.size(); ++i) {
    Queue& q = queues_[i];
    if (!q.ready()) continue;
    if (absl::Status s = q.Activate(*memory_, event_idx); !s.ok()) {
      SetNeedsReset(absl::StrFormat("queue %u: %s", i, s.message()));
      return;
    }
  }
  ActivateContext ctx;
  ctx.memory = memory_;
  ctx.features = features;
  ctx.queues = std::span(queues_);
  ctx.interrupt = &interrupt_;
  ctx.loop = loop_;
  ctx.needs_reset = [this](absl::string_view why) { SetNeedsReset(why); };
  if (absl::Status s = device_->Activate(std::move(ctx)); !s.ok()) {
    SetNeedsReset(s.message());
    return;
  }
  running_ = true;
  // Notifications may have arrived before activation finished: look at every queue once.
  for (size_t i = 0; i < queues_.size() && running_; ++i) {
    if (queues_[i].active()) device_->ProcessQueue(i);
  }
}

void MmioTransport::SetNeedsReset(absl::string_view why) {
  KEEL_LOG(WARNING) << name_ << ": device needs reset: " << why;
  running_ = false;
  {
    absl::MutexLock lock(&mu_);
    status_ |= kStatusNeedsReset;
    ++config_generation_;
  }
  // §2.1.2: a device entering NEEDS_RESET sends a configuration change notification.
  interrupt_.SignalConfigChange();
}

void MmioTransport::ResetOnIoThread() {
  // The device must be quiet before this write returns: the driver may free the rings.
  // Shared: if the VM stops first, the task may outlive this frame without ever running.
  auto done = std::make_shared<absl::Notification>();
  loop_->Post([this, done] {
    if (device_->active() || running_) device_->Reset();
    running_ = false;
    done->Notify();
  });
  while (!done->WaitForNotificationWithTimeout(absl::Milliseconds(100))) {
    if (loop_->stopped()) return;  // the VM is going away; nothing will run the reset
  }
  absl::MutexLock lock(&mu_);
  status_ = 0;
  driver_features_ = 0;
  device_features_sel_ = driver_features_sel_ = queue_sel_ = 0;
  for (Queue& q : queues_) q.Reset();
  interrupt_.Clear();
}

void MmioTransport::OnNotify(size_t queue) {
  notify_[queue].Consume();
  if (running_ && queues_[queue].active()) device_->ProcessQueue(queue);
}

}  // namespace keel::vmm::virtio
