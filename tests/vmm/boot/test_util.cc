#include "tests/vmm/boot/test_util.h"

namespace keel::vmm::testing {

PlatformConfig WithVcpus(int vcpus) {
  PlatformConfig config;
  config.vcpus = vcpus;
  return config;
}

std::string HostileImageName(const ::testing::TestParamInfo<HostileImage>& info) {
  return info.param.name;
}

void GuestMemoryTest::UseRam(uint64_t bytes) {
  auto mem = GuestMemory::Create(bytes);
  ASSERT_TRUE(mem.ok()) << mem.status();
  mem_.emplace(std::move(*mem));
}

absl::StatusOr<BootEntry> GuestMemoryTest::Load(const std::string& kernel_name, const Image& kernel,
                                                const Image* initrd, std::string cmdline) {
  SpanImageReader kernel_reader("/images/" + kernel_name, kernel);
  SpanImageReader initrd_reader(
      "/images/initrd", initrd ? std::span<const uint8_t>(*initrd) : std::span<const uint8_t>());
  BootConfig config{&kernel_reader, initrd ? &initrd_reader : nullptr, std::move(cmdline),
                    layout::kAcpiRsdp};
  return LoadKernel(*mem_, config);
}

}  // namespace keel::vmm::testing
