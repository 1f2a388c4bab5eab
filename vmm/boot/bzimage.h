// bzImage loading: the Linux x86 boot protocol (Documentation/arch/x86/boot.rst), 64-bit
// entry. Keel requires protocol 2.12+ (Linux 3.8+) with XLF_KERNEL_64: it skips the
// real-mode setup code entirely, loads the protected-mode kernel at pref_address (when the
// kernel is relocatable and it fits) or at 1 MiB, builds struct boot_params (the "zero
// page", vmm/boot/linux_boot_params.h) at layout::kZeroPage, the boot GDT and identity page
// tables, and enters at load address + 0x200 in 64-bit mode with RSI = zero page.
#pragma once

#include "absl/status/statusor.h"
#include "vmm/boot/image_reader.h"
#include "vmm/boot/loader.h"
#include "vmm/memory/guest_memory.h"

namespace keel::vmm::linux_boot {

// True if the image has the setup-header magic ("HdrS" at 0x202). It may still be rejected.
bool LooksLikeBzImage(const ImageReader& image);

// Loads `config.kernel` as a bzImage, its initrd and command line; writes the zero page,
// the boot GDT and page tables.
absl::StatusOr<BootEntry> LoadBzImage(const GuestMemory& mem, const BootConfig& config);

}  // namespace keel::vmm::linux_boot
