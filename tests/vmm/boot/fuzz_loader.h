// Shared body of the loader fuzz targets: the input is the kernel image, loaded with a
// small initrd into 32 MiB of guest memory created once per process. Any crash, sanitizer
// report, hang or large allocation is a loader bug.
#pragma once

#include <cstddef>
#include <cstdint>

#include "vmm/boot/loader.h"
#include "vmm/layout.h"

namespace keel::vmm::testing {

using LoaderFn = absl::StatusOr<BootEntry> (*)(const GuestMemory&, const BootConfig&);

inline void FuzzLoader(LoaderFn load, const uint8_t* data, size_t size) {
  static const GuestMemory* mem = new GuestMemory(*GuestMemory::Create(32 * layout::kMiB));
  static const uint8_t initrd_bytes[4096] = {'0', '7', '0', '7', '0', '1'};
  SpanImageReader kernel("fuzz-kernel", {data, size});
  SpanImageReader initrd("fuzz-initrd", initrd_bytes);
  const BootConfig config{&kernel, &initrd, "console=ttyS0", layout::kAcpiRsdp};
  (void)load(*mem, config);
}

}  // namespace keel::vmm::testing
