// Tests of the KVM wrappers and the vCPU thread state machine on the real /dev/kvm, with
// tiny real-mode programs as guests.
#include "vmm/kvm/kvm.h"

#include <poll.h>

#include <thread>

#include "absl/synchronization/notification.h"
#include "base/eventfd.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "vmm/devices/bus.h"
#include "vmm/kvm/x86_setup.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/vcpu_thread.h"

namespace keel::vmm {
namespace {

constexpr uint64_t kCodeAddr = 0x1000;
constexpr uint64_t kHoleStart = 0x8000;  // unbacked: accesses become MMIO exits
constexpr uint64_t kHoleEnd = 0x10000;

class KvmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto kvm = Kvm::Open();
    if (!kvm.ok()) GTEST_SKIP() << kvm.status();
    kvm_ = std::move(*kvm);
    auto vm = kvm_->CreateVm();
    ASSERT_TRUE(vm.ok()) << vm.status();
    vm_ = std::move(*vm);
    auto mem = GuestMemory::CreateForTest({{0, kHoleStart}, {kHoleEnd, 0x100000 - kHoleEnd}});
    ASSERT_TRUE(mem.ok()) << mem.status();
    mem_ = std::make_unique<GuestMemory>(std::move(*mem));
    uint32_t slot = 0;
    for (const MemoryRegion& r : mem_->regions()) {
      ASSERT_TRUE(vm_->SetUserMemoryRegion(slot++, r.gpa, r.size, r.host).ok());
    }
    ASSERT_TRUE(vm_->SetTssAddr(0xfffbd000).ok());
    ASSERT_TRUE(vm_->CreateIrqchip().ok());
    auto vcpu = vm_->CreateVcpu(0);
    ASSERT_TRUE(vcpu.ok()) << vcpu.status();
    vcpu_ = std::move(*vcpu);
  }

  // Loads 16-bit code at kCodeAddr and points the vCPU at it in real mode.
  void LoadRealModeCode(std::vector<uint8_t> code) {
    ASSERT_TRUE(mem_->Write(kCodeAddr, code).ok());
    auto sregs = vcpu_->GetSpecialRegisters();
    ASSERT_TRUE(sregs.ok());
    sregs->cs.base = 0;
    sregs->cs.selector = 0;
    ASSERT_TRUE(vcpu_->SetSpecialRegisters(*sregs).ok());
    Registers regs{};
    regs.rip = kCodeAddr;
    regs.rflags = 2;
    ASSERT_TRUE(vcpu_->SetRegisters(regs).ok());
  }

  std::unique_ptr<Kvm> kvm_;
  std::unique_ptr<Vm> vm_;
  std::unique_ptr<GuestMemory> mem_;
  std::unique_ptr<Vcpu> vcpu_;
};

TEST_F(KvmTest, PortWriteExitCarriesPortAndData) {
  // mov dx, 0x3f8; mov al, 'K'; out dx, al
  LoadRealModeCode({0xba, 0xf8, 0x03, 0xb0, 'K', 0xee});

  auto exit = vcpu_->Run();

  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->kind, VcpuExit::Kind::kIo);
  EXPECT_TRUE(exit->is_write);
  EXPECT_EQ(exit->addr, 0x3f8u);
  EXPECT_EQ(exit->size, 1u);
  EXPECT_EQ(exit->data[0], 'K');
}

TEST_F(KvmTest, PortReadReturnsWhatTheVmmWrote) {
  // mov dx, 0x60; in al, dx; mov dx, 0xf4; out dx, al
  LoadRealModeCode({0xba, 0x60, 0x00, 0xec, 0xba, 0xf4, 0x00, 0xee});

  auto in = vcpu_->Run();
  ASSERT_TRUE(in.ok());
  ASSERT_EQ(in->kind, VcpuExit::Kind::kIo);
  ASSERT_FALSE(in->is_write);
  in->data[0] = 0x5a;
  auto out = vcpu_->Run();

  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->addr, 0xf4u);
  EXPECT_EQ(out->data[0], 0x5a);
}

TEST_F(KvmTest, AccessOutsideRamIsAnMmioExit) {
  // mov byte [0x9000], 0x42
  LoadRealModeCode({0xc6, 0x06, 0x00, 0x90, 0x42});

  auto exit = vcpu_->Run();

  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(exit->kind, VcpuExit::Kind::kMmio);
  EXPECT_TRUE(exit->is_write);
  EXPECT_EQ(exit->addr, 0x9000u);
  EXPECT_EQ(exit->size, 1u);
  EXPECT_EQ(exit->data[0], 0x42);
}

TEST_F(KvmTest, ImmediateExitReturnsInterrupted) {
  LoadRealModeCode({0xeb, 0xfe});  // jmp $
  vcpu_->SetImmediateExit(true);

  auto exit = vcpu_->Run();

  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(exit->kind, VcpuExit::Kind::kInterrupted);
}

TEST_F(KvmTest, IoeventfdSignalsWithoutAnExit) {
  auto efd = EventFd::Create();
  ASSERT_TRUE(efd.ok());
  ASSERT_TRUE(vm_->RegisterIoeventfd(efd->fd(), IoSpace::kPio, 0x500, 2).ok());
  // mov dx, 0x500; mov ax, 7; out dx, ax; mov dx, 0xf4; out dx, al
  LoadRealModeCode({0xba, 0x00, 0x05, 0xb8, 0x07, 0x00, 0xef, 0xba, 0xf4, 0x00, 0xee});

  auto exit = vcpu_->Run();

  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(exit->addr, 0xf4u);  // the write to 0x500 never reached userspace
  EXPECT_EQ(efd->Consume(), 1u);
  EXPECT_TRUE(vm_->UnregisterIoeventfd(efd->fd(), IoSpace::kPio, 0x500, 2).ok());
}

TEST_F(KvmTest, RegistersRoundTrip) {
  Registers regs{};
  regs.rax = 0x1234;
  regs.r15 = 0xfeedface;
  regs.rip = 0x2000;
  regs.rflags = 2;

  ASSERT_TRUE(vcpu_->SetRegisters(regs).ok());
  auto back = vcpu_->GetRegisters();

  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->rax, 0x1234u);
  EXPECT_EQ(back->r15, 0xfeedfaceu);
  EXPECT_EQ(back->rip, 0x2000u);
}

TEST_F(KvmTest, SupportedCpuidIsCachedAndAcceptedByTheVcpu) {
  auto first = kvm_->SupportedCpuid();
  auto second = kvm_->SupportedCpuid();
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE(first->empty());
  EXPECT_EQ(first->size(), second->size());

  auto filtered = FilterCpuid(*first, 0, 1, vcpu_->TscKhz());
  EXPECT_TRUE(vcpu_->SetCpuid(filtered).ok());
}

TEST_F(KvmTest, Linux64BootStateIsLongMode) {
  ASSERT_TRUE(SetBootRegisters(*vcpu_, InitialCpuState(BootMode::kLinux64, 0x100200, 0x7000)).ok());

  auto sregs = vcpu_->GetSpecialRegisters();
  auto regs = vcpu_->GetRegisters();
  ASSERT_TRUE(sregs.ok());
  ASSERT_TRUE(regs.ok());
  EXPECT_TRUE(sregs->efer & (1u << 10));  // LMA
  EXPECT_EQ(sregs->cs.l, 1);
  EXPECT_EQ(sregs->cs.selector, 0x10);
  EXPECT_EQ(regs->rsi, 0x7000u);
  EXPECT_EQ(regs->rip, 0x100200u);
}

TEST_F(KvmTest, Pvh32BootStateIsFlatProtectedMode) {
  ASSERT_TRUE(SetBootRegisters(*vcpu_, InitialCpuState(BootMode::kPvh32, 0x100000, 0x6000)).ok());

  auto sregs = vcpu_->GetSpecialRegisters();
  auto regs = vcpu_->GetRegisters();
  ASSERT_TRUE(sregs.ok());
  EXPECT_EQ(sregs->cr0 & 0x80000001u, 1u);  // PE without PG
  EXPECT_EQ(sregs->cs.db, 1);
  EXPECT_EQ(sregs->cs.limit, 0xffffffffu);
  EXPECT_EQ(regs->rbx, 0x6000u);
}

class NullExitSink : public ExitSink {
 public:
  void RequestExit(VmExit exit) override {
    if (!notified.HasBeenNotified()) {
      last = exit;
      notified.Notify();
    }
  }
  VmExit last;
  absl::Notification notified;
};

TEST_F(KvmTest, VcpuThreadPausesResumesAndStops) {
  ASSERT_TRUE(InstallVcpuKickHandler().ok());
  LoadRealModeCode({0xeb, 0xfe});  // jmp $: never exits on its own
  Bus pio("pio"), mmio("mmio");
  NullExitSink sink;
  VcpuControl control;
  VcpuThread thread({vcpu_.get(), &pio, &mmio, &sink, &control});
  thread.Start();

  ASSERT_TRUE(control.Pause().ok());
  EXPECT_EQ(control.state(), VcpuControl::State::kPaused);
  control.Resume();
  EXPECT_EQ(control.state(), VcpuControl::State::kRunning);
  control.Stop();
  thread.Join();

  EXPECT_EQ(control.state(), VcpuControl::State::kStopping);
  EXPECT_FALSE(sink.notified.HasBeenNotified());
}

TEST_F(KvmTest, VcpuThreadReportsTripleFault) {
  ASSERT_TRUE(InstallVcpuKickHandler().ok());
  // 32-bit protected mode, `ud2` with an empty IDT: #UD cannot be delivered, nor the #DF
  // after it, so the CPU shuts down. (Real mode is not used: some nested KVM flavours do not
  // report a real-mode triple fault promptly.)
  ASSERT_TRUE(mem_->Write(kCodeAddr, std::vector<uint8_t>{0x0f, 0x0b}).ok());
  ASSERT_TRUE(SetBootRegisters(*vcpu_, InitialCpuState(BootMode::kPvh32, kCodeAddr, 0)).ok());
  auto sregs = vcpu_->GetSpecialRegisters();
  ASSERT_TRUE(sregs.ok());
  sregs->idt = {0, 0};
  ASSERT_TRUE(vcpu_->SetSpecialRegisters(*sregs).ok());
  Bus pio("pio"), mmio("mmio");
  NullExitSink sink;
  VcpuControl control;
  VcpuThread thread({vcpu_.get(), &pio, &mmio, &sink, &control});

  thread.Start();
  thread.Join();

  ASSERT_TRUE(sink.notified.HasBeenNotified());
  EXPECT_EQ(sink.last.kind, VmExit::Kind::kGuestFault);
  EXPECT_EQ(sink.last.status, kExitVmmFailure);
  EXPECT_NE(sink.last.message.find("RIP="), std::string::npos);
}

}  // namespace
}  // namespace keel::vmm
