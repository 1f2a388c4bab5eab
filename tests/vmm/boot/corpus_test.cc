// Every fuzz seed under tests/fuzz/corpus/{pvh_elf,bzimage} must be a valid image, so the
// fuzzers start from inputs that reach deep into the loaders.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "vmm/boot/loader.h"
#include "vmm/layout.h"

namespace keel::vmm {
namespace {

class CorpusTest : public ::testing::TestWithParam<std::string> {};

TEST_P(CorpusTest, EverySeedLoads) {
  const char* root = getenv("KEEL_BOOT_CORPUS");
  if (root == nullptr) GTEST_SKIP() << "KEEL_BOOT_CORPUS is not set (run through meson test)";
  const std::filesystem::path dir = std::filesystem::path(root) / GetParam();
  auto mem = GuestMemory::Create(32 * layout::kMiB);
  ASSERT_TRUE(mem.ok());
  int seeds = 0;

  for (const auto& file : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(file.path(), std::ios::binary);
    const std::vector<uint8_t> bytes{std::istreambuf_iterator<char>(in), {}};
    SpanImageReader kernel(file.path().string(), bytes);
    auto entry = LoadKernel(*mem, {&kernel, nullptr, "console=ttyS0", 0});
    EXPECT_TRUE(entry.ok()) << entry.status();
    ++seeds;
  }

  EXPECT_GE(seeds, 3);
}

INSTANTIATE_TEST_SUITE_P(Seeds, CorpusTest, ::testing::Values("pvh_elf", "bzimage"));

}  // namespace
}  // namespace keel::vmm
