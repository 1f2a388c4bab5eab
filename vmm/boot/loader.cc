#include "vmm/boot/loader.h"

#include "absl/strings/str_cat.h"
#include "vmm/boot/bzimage.h"
#include "vmm/boot/pvh.h"

namespace keel::vmm {

absl::StatusOr<BootEntry> LoadKernel(const GuestMemory& mem, const BootConfig& config) {
  if (config.kernel == nullptr) {
    return absl::InvalidArgumentError("no kernel image was given; pass a PVH ELF or a bzImage");
  }
  if (pvh::LooksLikeElf(*config.kernel)) return pvh::LoadPvhElf(mem, config);
  if (linux_boot::LooksLikeBzImage(*config.kernel)) return linux_boot::LoadBzImage(mem, config);
  return absl::InvalidArgumentError(absl::StrCat(
      "kernel ", config.kernel->name(),
      " is not a PVH ELF (no ELF header) or a bzImage (no HdrS header at offset 0x202); pass "
      "a vmlinux built with CONFIG_PVH=y or a bzImage"));
}

}  // namespace keel::vmm
