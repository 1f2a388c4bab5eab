// libFuzzer target: arbitrary bytes as a bzImage kernel.
#include "tests/vmm/boot/fuzz_loader.h"
#include "vmm/boot/bzimage.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  keel::vmm::testing::FuzzLoader(keel::vmm::linux_boot::LoadBzImage, data, size);
  return 0;
}
