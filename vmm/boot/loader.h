// Kernel loading: puts a guest kernel, its initrd and command line into guest memory and
// builds the boot information the kernel's entry protocol expects.
//
// Two formats are accepted, chosen by their magic numbers:
//   - PVH ELF: an ELF64 x86-64 image (a `vmlinux`, or Keel's test guest) carrying the Xen
//     note XEN_ELFNOTE_PHYS32_ENTRY; entered in 32-bit protected mode with EBX pointing to a
//     struct hvm_start_info (vmm/boot/pvh.h).
//   - bzImage: the Linux x86 boot protocol >= 2.12 with XLF_KERNEL_64; entered at the 64-bit
//     entry point with RSI pointing to struct boot_params (vmm/boot/bzimage.h).
//
// Guest memory layout used (vmm/layout.h): boot GDT at kGdtStart, hvm_start_info at
// kPvhStartInfo or the zero page at kZeroPage, page tables from kPml4Start, the command line
// at kCmdlineStart, the kernel from 1 MiB, the initrd page-aligned at the top of RAM below
// the MMIO gap. The platform tables (vmm/boot/platform.h) live in [kEbdaStart, 1 MiB) and
// are written separately; pass their RSDP address in BootConfig.
//
// Every field of the images is untrusted: a malformed image yields an error that names the
// image and the problem, never a crash, a hang, an allocation sized by the image, or an
// access outside guest memory.
//
// Example:
//
//   KEEL_ASSIGN_OR_RETURN(FileImageReader kernel, FileImageReader::Open(kernel_path));
//   KEEL_ASSIGN_OR_RETURN(PlatformInfo platform, WritePlatformTables(mem, platform_config));
//   BootConfig boot{.kernel = &kernel, .cmdline = cmdline, .acpi_rsdp_gpa = platform.rsdp_gpa};
//   KEEL_ASSIGN_OR_RETURN(BootEntry entry, LoadKernel(mem, boot));
//   BootCpuState cpu = InitialCpuState(entry.mode, entry.entry, entry.boot_info_gpa);
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "vmm/boot/boot_cpu.h"
#include "vmm/boot/image_reader.h"
#include "vmm/memory/guest_memory.h"

namespace keel::vmm {

struct BootConfig {
  const ImageReader* kernel = nullptr;  // required; not owned
  const ImageReader* initrd = nullptr;  // optional; not owned
  std::string cmdline;                  // without the NUL; no NUL bytes inside
  uint64_t acpi_rsdp_gpa = 0;           // 0: the guest gets no ACPI tables
};

struct BootEntry {
  BootMode mode = BootMode::kPvh32;
  uint64_t entry = 0;          // EIP (kPvh32) or RIP (kLinux64)
  uint64_t boot_info_gpa = 0;  // EBX = hvm_start_info (kPvh32), RSI = boot_params (kLinux64)
  // Guest memory the kernel occupies, [kernel_start, kernel_end): its segments (PVH), or
  // its load address through the end of its init_size working area (bzImage).
  uint64_t kernel_start = 0;
  uint64_t kernel_end = 0;
  uint64_t initrd_gpa = 0;  // 0 and 0 without an initrd
  uint64_t initrd_size = 0;
};

// Detects the kernel format and loads it (see above). Writes only guest memory. On error,
// guest memory may hold a partially loaded kernel; the caller discards the VM.
absl::StatusOr<BootEntry> LoadKernel(const GuestMemory& mem, const BootConfig& config);

}  // namespace keel::vmm
