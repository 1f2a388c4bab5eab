// libFuzzer target: arbitrary bytes as a PVH ELF kernel.
#include "tests/vmm/boot/fuzz_loader.h"
#include "vmm/boot/pvh.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  keel::vmm::testing::FuzzLoader(keel::vmm::pvh::LoadPvhElf, data, size);
  return 0;
}
