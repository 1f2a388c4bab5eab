// libFuzzer target: the test guest's ACPI/AML and command-line parsers (guest/acpi_parse.c,
// guest/cmdline.c) on arbitrary bytes. They read tables a VMM wrote; whatever the VMM
// wrote, they must stay inside the buffer.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "acpi_parse.h"
#include "cmdline.h"

namespace {

void OnDevice(void* ctx, const aml_device* d) {
  aml_resources r;
  if (aml_device_resources(d->body, d->body_len, &r)) *static_cast<int*>(ctx) += r.irq_count;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Exact-size copies, so ASan sees a read one byte past the input.
  std::vector<uint8_t> buf(data, data + size);
  int irqs = 0;
  aml_for_each_device(buf.data(), buf.size(), OnDevice, &irqs);
  uint8_t typ;
  aml_find_s5(buf.data(), buf.size(), &typ);
  aml_resources r;
  aml_parse_resources(buf.data(), buf.size(), &r);
  acpi_fadt f;
  acpi_parse_fadt(buf.data(), buf.size(), &f);
  std::vector<char> text(buf.begin(), buf.end());
  uint64_t wsize, base;
  uint32_t irq;
  cmdline_parse_virtio_mmio(text.data(), text.size(), &wsize, &base, &irq);
  scenario_args a;
  scenario_args_parse(text.data(), text.size(), &a);
  return 0;
}
