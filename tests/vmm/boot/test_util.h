// Shared fixtures and helpers for the vmm/boot tests.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "tests/vmm/boot/test_images.h"
#include "vmm/boot/loader.h"
#include "vmm/boot/platform.h"
#include "vmm/layout.h"
#include "vmm/memory/guest_memory.h"

namespace keel::vmm::testing {

PlatformConfig WithVcpus(int vcpus);

// Copies a field of a packed structure: gtest binds its arguments to references, and a
// reference to a misaligned packed field is undefined behaviour.
template <typename T>
T Val(T value) {
  return value;
}

// A hostile variant of a valid image: `patch` damages it, and loading it must fail with a
// message containing `error`.
struct HostileImage {
  std::string name;
  std::function<void(Image&)> patch;
  std::string error;
};
std::string HostileImageName(const ::testing::TestParamInfo<HostileImage>& info);

// A test with real guest memory (anonymous, lazily touched) of `ram` bytes.
class GuestMemoryTest : public ::testing::Test {
 protected:
  explicit GuestMemoryTest(uint64_t ram = 64 * layout::kMiB) : ram_(ram) {}
  void SetUp() override { UseRam(ram_); }
  // Replaces the guest memory with `bytes` of fresh RAM.
  void UseRam(uint64_t bytes);

  // Reads a T at `gpa`, failing the test (and returning T{}) if it is out of range.
  template <typename T>
  T Read(uint64_t gpa) {
    auto v = mem_->ReadObj<T>(gpa);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *v : T{};
  }

  // LoadKernel with in-memory images named /images/<kernel_name> and /images/initrd, and the
  // RSDP at layout::kAcpiRsdp.
  absl::StatusOr<BootEntry> Load(const std::string& kernel_name, const Image& kernel,
                                 const Image* initrd, std::string cmdline);

  uint64_t ram_;
  std::optional<GuestMemory> mem_;
};

}  // namespace keel::vmm::testing
