#include "vmm/boot/bzimage.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status.h"
#include "vmm/boot/boot_cpu.h"
#include "vmm/boot/e820.h"
#include "vmm/boot/linux_boot_params.h"
#include "vmm/boot/loader_internal.h"
#include "vmm/layout.h"

namespace keel::vmm::linux_boot {

namespace {

using boot_internal::KernelName;

constexpr uint16_t kMinProtocol = 0x020c;  // 2.12: xloadflags, XLF_KERNEL_64
// The header must reach at least through init_size (0x260/4) for Keel to place the kernel.
constexpr uint64_t kMinHeaderEnd = 0x264;
// Where boot_params' copy of the setup header must stop (zero-page.rst: edd_mbr_sig_buffer).
constexpr uint64_t kHeaderAreaEnd = offsetof(BootParams, edd_mbr_sig_buffer);
// boot.rst, "Sample Boot Configuration": heap_end = 0xe000, heap_end_ptr = heap_end - 0x200.
// Only real-mode setup code uses the heap; the 64-bit entry skips it, but the field is cheap
// to fill correctly.
constexpr uint16_t kHeapEndPtr = 0xe000 - 0x200;
constexpr uint64_t kMaxKernelAlignment = layout::kGiB;

absl::Status BzError(const ImageReader& image, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(KernelName(image), " ", problem));
}

// The setup-header fields the loader uses, copied out of the packed header once (so they can
// be bound to references, e.g. by StrFormat), plus what Keel derives from them.
struct Image {
  uint16_t version;
  uint16_t jump;
  uint8_t setup_sects;
  uint32_t syssize;
  bool relocatable;
  uint32_t kernel_alignment;
  uint64_t pref_address;
  uint32_t init_size;
  uint32_t cmdline_size;
  uint32_t initrd_addr_max;
  uint64_t header_end;  // 0x202 + the jump's offset byte: where the setup header ends
  uint64_t setup_size;  // real-mode code: (setup_sects + 1) sectors, skipped
  uint64_t pm_size;     // protected-mode kernel: syssize * 16 bytes after the setup code
};

absl::StatusOr<Image> ParseImage(const ImageReader& image) {
  if (image.size() < kSetupHeaderOffset + sizeof(SetupHeader)) {
    return BzError(image, absl::StrFormat("is a truncated bzImage: %u bytes, shorter than its "
                                          "setup header",
                                          image.size()));
  }
  KEEL_ASSIGN_OR_RETURN(const SetupHeader h, ReadObjAt<SetupHeader>(image, kSetupHeaderOffset));
  if (h.boot_flag != kBootFlagMagic || h.header != kHdrSMagic) {
    return BzError(image, "is not a bzImage (no 0xAA55 boot flag and HdrS header)");
  }
  Image img;
  img.version = h.version;
  img.jump = h.jump;
  img.setup_sects = h.setup_sects;
  img.syssize = h.syssize;
  img.relocatable = h.relocatable_kernel != 0;
  img.kernel_alignment = h.kernel_alignment;
  img.pref_address = h.pref_address;
  img.init_size = h.init_size;
  img.cmdline_size = h.cmdline_size;
  img.initrd_addr_max = h.initrd_addr_max;
  if (img.version < kMinProtocol) {
    return BzError(image, absl::StrFormat("uses boot protocol %u.%02u; Keel needs 2.12 or newer "
                                          "(Linux 3.8+)",
                                          img.version >> 8, img.version & 0xff));
  }
  if ((h.loadflags & kLoadedHigh) == 0) {
    return BzError(image, "is a zImage (LOADED_HIGH clear); Keel boots bzImages only");
  }
  if ((h.xloadflags & kXlfKernel64) == 0) {
    return BzError(image, "has no 64-bit entry point (XLF_KERNEL_64); boot a 64-bit kernel");
  }
  // boot.rst "jump": 0xEB, then the header length as an offset relative to 0x202.
  img.header_end = 0x202 + (img.jump >> 8);
  if ((img.jump & 0xff) != 0xeb || img.header_end < kMinHeaderEnd) {
    return BzError(image, absl::StrFormat("has a setup header ending at %#x (jump %#06x); "
                                          "protocol 2.12 headers reach at least %#x",
                                          img.header_end, img.jump, kMinHeaderEnd));
  }
  const uint64_t setup_sects = img.setup_sects == 0 ? kDefaultSetupSects : img.setup_sects;
  img.setup_size = (setup_sects + 1) * kSectorSize;
  if (img.setup_size >= image.size()) {
    return BzError(image, absl::StrFormat("has setup_sects %u (%u bytes of setup code) but the "
                                          "whole image is %u bytes; is it truncated?",
                                          img.setup_sects, img.setup_size, image.size()));
  }
  img.pm_size = uint64_t{img.syssize} * 16;
  const uint64_t available = image.size() - img.setup_size;
  if (img.pm_size <= kEntry64Offset || img.pm_size > available) {
    return BzError(image, absl::StrFormat("has syssize %u (%u bytes of kernel) but %u bytes "
                                          "follow the setup code; is it truncated?",
                                          img.syssize, img.pm_size, available));
  }
  if (img.relocatable) {
    const uint32_t a = img.kernel_alignment;
    if (a < boot_internal::kPageSize || a > kMaxKernelAlignment || (a & (a - 1)) != 0) {
      return BzError(image, absl::StrFormat("has kernel_alignment %#x; expected a power of two "
                                            "between 4 KiB and 1 GiB",
                                            a));
    }
  }
  return img;
}

// Guest memory a kernel loaded at `load` occupies: the loaded image plus the init_size
// working area from its runtime start (boot.rst "init_size": runtime_start is
// align_up(load, kernel_alignment) when relocatable, pref_address otherwise).
struct Footprint {
  uint64_t start;
  uint64_t end;
};

std::optional<Footprint> FootprintAt(const Image& img, uint64_t load) {
  uint64_t runtime = img.pref_address;
  if (img.relocatable && !boot_internal::AlignUp(load, img.kernel_alignment, &runtime)) {
    return std::nullopt;
  }
  const uint64_t need = std::max<uint64_t>(img.init_size, img.pm_size);
  if (load > UINT64_MAX - img.pm_size || runtime > UINT64_MAX - need) return std::nullopt;
  return Footprint{std::min(load, runtime), std::max(load + img.pm_size, runtime + need)};
}

bool Fits(const GuestMemory& mem, const Footprint& f, uint64_t low_end) {
  return f.start >= layout::kHighMemStart && f.end <= low_end &&
         mem.Contains(f.start, f.end - f.start);
}

// Picks the load address: pref_address for a relocatable kernel if it fits, else 1 MiB.
absl::StatusOr<uint64_t> ChooseLoadAddress(const ImageReader& image, const GuestMemory& mem,
                                           const Image& img, uint64_t low_end) {
  if (img.relocatable && img.pref_address >= layout::kHighMemStart) {
    std::optional<Footprint> f = FootprintAt(img, img.pref_address);
    if (f && Fits(mem, *f, low_end)) return img.pref_address;
  }
  std::optional<Footprint> f = FootprintAt(img, layout::kHighMemStart);
  if (!f) {
    return BzError(image, absl::StrFormat("has pref_address %#x and init_size %#x beyond the "
                                          "64-bit address space",
                                          img.pref_address, img.init_size));
  }
  if (Fits(mem, *f, low_end)) return layout::kHighMemStart;
  if (f->start < layout::kHighMemStart) {
    return BzError(image, absl::StrFormat("runs at pref_address %#x, below 1 MiB where Keel "
                                          "keeps the boot structures",
                                          img.pref_address));
  }
  return absl::ResourceExhaustedError(absl::StrFormat(
      "%s needs RAM up to %#x (its init_size working area is %u MiB) but the VM has %u MiB of "
      "RAM below the MMIO gap; give the VM more memory",
      KernelName(image), f->end, img.init_size / layout::kMiB, low_end / layout::kMiB));
}

absl::Status WriteZeroPage(const GuestMemory& mem, const ImageReader& image, const Image& img,
                           const BootConfig& config, uint64_t load,
                           const boot_internal::InitrdPlacement& initrd) {
  BootParams bp;
  memset(&bp, 0, sizeof(bp));
  // boot.rst "64-bit Boot Protocol": copy the setup header as the kernel declares it (up to
  // 0x202 + jump offset), so fields newer than Keel's struct reach the kernel too.
  const uint64_t copy_end = std::min(img.header_end, kHeaderAreaEnd);
  uint8_t* raw = reinterpret_cast<uint8_t*>(&bp);
  KEEL_RETURN_IF_ERROR(image.ReadAt(
      kSetupHeaderOffset, std::span(raw + kSetupHeaderOffset, copy_end - kSetupHeaderOffset)));

  bp.hdr.type_of_loader = kLoaderTypeUndefined;
  bp.hdr.loadflags = kLoadedHigh | kCanUseHeap;
  bp.hdr.heap_end_ptr = kHeapEndPtr;
  bp.hdr.vid_mode = kVidModeNormal;
  bp.hdr.code32_start = static_cast<uint32_t>(load);
  bp.hdr.cmd_line_ptr = static_cast<uint32_t>(layout::kCmdlineStart);
  bp.ext_cmd_line_ptr = static_cast<uint32_t>(layout::kCmdlineStart >> 32);
  bp.hdr.ramdisk_image = static_cast<uint32_t>(initrd.gpa);
  bp.ext_ramdisk_image = static_cast<uint32_t>(initrd.gpa >> 32);
  bp.hdr.ramdisk_size = static_cast<uint32_t>(initrd.size);
  bp.ext_ramdisk_size = static_cast<uint32_t>(initrd.size >> 32);
  // Fields the image may carry but only a boot loader may set.
  bp.hdr.setup_data = 0;
  bp.hdr.hardware_subarch = 0;  // x86/PC
  bp.hdr.hardware_subarch_data = 0;
  // zero-page.rst acpi_rsdp_addr; kernels older than 4.20 ignore it and scan for the RSDP.
  bp.acpi_rsdp_addr = config.acpi_rsdp_gpa;

  const std::vector<E820Entry> e820 = BuildE820(mem);
  if (e820.size() > kE820MaxEntriesZeroPage) {
    return absl::ResourceExhaustedError("the e820 map does not fit in the zero page");
  }
  std::copy(e820.begin(), e820.end(), bp.e820_table);
  bp.e820_entries = static_cast<uint8_t>(e820.size());
  return mem.WriteObj(layout::kZeroPage, bp);
}

}  // namespace

bool LooksLikeBzImage(const ImageReader& image) {
  auto magic = ReadObjAt<uint32_t>(image, offsetof(SetupHeader, header) + kSetupHeaderOffset);
  return magic.ok() && *magic == kHdrSMagic;
}

absl::StatusOr<BootEntry> LoadBzImage(const GuestMemory& mem, const BootConfig& config) {
  const ImageReader& image = *config.kernel;
  KEEL_ASSIGN_OR_RETURN(Image img, ParseImage(image));
  // cmdline_size: the most characters the kernel keeps, without the NUL (boot.rst).
  KEEL_RETURN_IF_ERROR(boot_internal::WriteCmdline(mem, config.cmdline, img.cmdline_size));
  const uint64_t low_end = std::min(mem.low_ram_end(), layout::kMmioGapStart);
  KEEL_ASSIGN_OR_RETURN(uint64_t load, ChooseLoadAddress(image, mem, img, low_end));
  const Footprint footprint = *FootprintAt(img, load);  // ChooseLoadAddress computed it
  KEEL_RETURN_IF_ERROR(ReadIntoGuest(image, img.setup_size, img.pm_size, mem, load));

  // initrd_addr_max is the highest byte the initrd may occupy.
  const uint64_t initrd_limit = std::min(low_end, uint64_t{img.initrd_addr_max} + 1);
  KEEL_ASSIGN_OR_RETURN(auto initrd,
                        boot_internal::LoadInitrd(mem, config.initrd, footprint.end, initrd_limit));
  KEEL_RETURN_IF_ERROR(WriteZeroPage(mem, image, img, config, load, initrd));
  KEEL_RETURN_IF_ERROR(WriteBootGdt(mem, BootMode::kLinux64));
  KEEL_RETURN_IF_ERROR(WriteIdentityPageTables(mem));

  BootEntry boot;
  boot.mode = BootMode::kLinux64;
  boot.entry = load + kEntry64Offset;
  boot.boot_info_gpa = layout::kZeroPage;
  boot.kernel_start = footprint.start;
  boot.kernel_end = footprint.end;
  boot.initrd_gpa = initrd.gpa;
  boot.initrd_size = initrd.size;
  return boot;
}

}  // namespace keel::vmm::linux_boot
