#include "vmm/boot/pvh.h"

#include <elf.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status.h"
#include "vmm/boot/boot_cpu.h"
#include "vmm/boot/e820.h"
#include "vmm/boot/loader_internal.h"
#include "vmm/layout.h"

namespace keel::vmm::pvh {

namespace {

using boot_internal::KernelName;

// Bounds on what Keel reads from an ELF before trusting it: real kernels have a handful of
// program headers, a few dozen sections and notes of a few hundred bytes.
constexpr uint16_t kMaxProgramHeaders = 128;
constexpr uint16_t kMaxSectionHeaders = 1024;
constexpr uint64_t kMaxNoteBytes = 64 * 1024;
// Total note bytes scanned per image, so many section headers naming the same large note
// area cannot make loading slow.
constexpr uint64_t kMaxNoteBytesTotal = 1024 * 1024;

absl::Status ElfError(const ImageReader& image, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(KernelName(image), " ", problem));
}

absl::StatusOr<Elf64_Ehdr> ReadElfHeader(const ImageReader& image) {
  if (image.size() < sizeof(Elf64_Ehdr)) {
    return ElfError(image, absl::StrFormat("is a truncated ELF: %u bytes, shorter than the "
                                           "64-byte ELF header",
                                           image.size()));
  }
  KEEL_ASSIGN_OR_RETURN(Elf64_Ehdr eh, ReadObjAt<Elf64_Ehdr>(image, 0));
  if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) return ElfError(image, "is not an ELF file");
  if (eh.e_ident[EI_CLASS] != ELFCLASS64) {
    return ElfError(image, "is not a 64-bit ELF (EI_CLASS); Keel boots x86-64 PVH kernels");
  }
  if (eh.e_ident[EI_DATA] != ELFDATA2LSB) {
    return ElfError(image, "is not a little-endian ELF (EI_DATA); Keel boots x86-64 kernels");
  }
  if (eh.e_ident[EI_VERSION] != EV_CURRENT || eh.e_version != EV_CURRENT) {
    return ElfError(image, "has an unknown ELF version");
  }
  if (eh.e_machine != EM_X86_64) {
    return ElfError(image, absl::StrFormat("is an ELF for machine %u, not x86-64 (%u)",
                                           eh.e_machine, EM_X86_64));
  }
  if (eh.e_type != ET_EXEC) {
    return ElfError(
        image, absl::StrFormat("is an ELF of type %u, not an executable (ET_EXEC)", eh.e_type));
  }
  if (eh.e_phentsize != sizeof(Elf64_Phdr)) {
    return ElfError(image, absl::StrFormat("has program headers of %u bytes, not %u",
                                           eh.e_phentsize, sizeof(Elf64_Phdr)));
  }
  if (eh.e_phnum == 0 || eh.e_phnum > kMaxProgramHeaders) {
    return ElfError(image, absl::StrFormat("has %u program headers; Keel accepts 1 to %u",
                                           eh.e_phnum, kMaxProgramHeaders));
  }
  return eh;
}

// Reads `count` fixed-size headers at `offset` (count is already bounded by the caller).
template <typename T>
absl::StatusOr<std::vector<T>> ReadTable(const ImageReader& image, uint64_t offset,
                                         uint16_t count) {
  std::vector<T> table(count);
  const uint64_t bytes = uint64_t{count} * sizeof(T);
  KEEL_RETURN_IF_ERROR(CheckImageRange(image, offset, bytes));
  KEEL_RETURN_IF_ERROR(
      image.ReadAt(offset, std::span(reinterpret_cast<uint8_t*>(table.data()), bytes)));
  return table;
}

// Scans one note area (ELF gABI "Note Section") for ("Xen", XEN_ELFNOTE_PHYS32_ENTRY).
// Returns nullopt if the area holds well-formed notes but not that one. `budget` is what
// remains of kMaxNoteBytesTotal; the area's size is taken from it.
absl::StatusOr<std::optional<uint32_t>> FindEntryNote(const ImageReader& image, uint64_t offset,
                                                      uint64_t size, uint64_t align,
                                                      uint64_t* budget) {
  if (size > kMaxNoteBytes) {
    return ElfError(image, absl::StrFormat("has a %u-byte note area; Keel reads at most %u", size,
                                           kMaxNoteBytes));
  }
  if (size > *budget) {
    return ElfError(image,
                    absl::StrFormat("has more than %u bytes of ELF notes", kMaxNoteBytesTotal));
  }
  *budget -= size;
  std::vector<uint8_t> notes(size);
  KEEL_RETURN_IF_ERROR(CheckImageRange(image, offset, size));
  KEEL_RETURN_IF_ERROR(image.ReadAt(offset, std::span(notes)));
  // Notes are 4-byte aligned; some toolchains use 8 for 64-bit objects.
  const uint64_t pad = align == 8 ? 8 : 4;
  uint64_t pos = 0;
  while (size - pos >= sizeof(Elf64_Nhdr)) {
    Elf64_Nhdr nh;
    memcpy(&nh, notes.data() + pos, sizeof(nh));
    pos += sizeof(nh);
    // namesz/descsz are 32-bit, so the padded sizes cannot overflow 64 bits.
    const uint64_t name_len = (uint64_t{nh.n_namesz} + pad - 1) & ~(pad - 1);
    const uint64_t desc_len = (uint64_t{nh.n_descsz} + pad - 1) & ~(pad - 1);
    if (name_len > size - pos || nh.n_descsz > size - pos - name_len) {
      return ElfError(image, absl::StrFormat("has a truncated ELF note at file offset %#x",
                                             offset + pos - sizeof(nh)));
    }
    const uint8_t* name = notes.data() + pos;
    const uint8_t* desc = name + name_len;
    if (nh.n_type == kXenElfNotePhys32Entry && nh.n_namesz == 4 && memcmp(name, "Xen", 4) == 0) {
      if (nh.n_descsz != 4 && nh.n_descsz != 8) {
        return ElfError(image, absl::StrFormat("has a Xen PVH entry note of %u bytes; expected "
                                               "a 4- or 8-byte address",
                                               nh.n_descsz));
      }
      uint64_t entry = 0;
      memcpy(&entry, desc, nh.n_descsz);  // little-endian host, little-endian image
      if (entry > UINT32_MAX) {
        return ElfError(image, absl::StrFormat("has a PVH entry point %#x above 4 GiB; the PVH "
                                               "entry is 32-bit",
                                               entry));
      }
      return std::optional<uint32_t>(static_cast<uint32_t>(entry));
    }
    pos += std::min(desc_len, size - pos - name_len) + name_len;
  }
  return std::optional<uint32_t>();
}

absl::StatusOr<uint32_t> FindPvhEntry(const ImageReader& image, const Elf64_Ehdr& eh,
                                      const std::vector<Elf64_Phdr>& phdrs) {
  uint64_t budget = kMaxNoteBytesTotal;
  for (const Elf64_Phdr& ph : phdrs) {
    if (ph.p_type != PT_NOTE) continue;
    KEEL_ASSIGN_OR_RETURN(std::optional<uint32_t> entry,
                          FindEntryNote(image, ph.p_offset, ph.p_filesz, ph.p_align, &budget));
    if (entry) return *entry;
  }
  // No PT_NOTE carries it: look at SHT_NOTE sections, as some linkers emit notes only there.
  if (eh.e_shoff != 0 && eh.e_shnum != 0) {
    if (eh.e_shentsize != sizeof(Elf64_Shdr) || eh.e_shnum > kMaxSectionHeaders) {
      return ElfError(image, absl::StrFormat("has %u section headers of %u bytes; Keel accepts "
                                             "up to %u of %u bytes",
                                             eh.e_shnum, eh.e_shentsize, kMaxSectionHeaders,
                                             sizeof(Elf64_Shdr)));
    }
    KEEL_ASSIGN_OR_RETURN(auto shdrs, ReadTable<Elf64_Shdr>(image, eh.e_shoff, eh.e_shnum));
    for (const Elf64_Shdr& sh : shdrs) {
      if (sh.sh_type != SHT_NOTE) continue;
      KEEL_ASSIGN_OR_RETURN(
          std::optional<uint32_t> entry,
          FindEntryNote(image, sh.sh_offset, sh.sh_size, sh.sh_addralign, &budget));
      if (entry) return *entry;
    }
  }
  return ElfError(image,
                  "is an ELF but not a PVH ELF (no Xen PVH note XEN_ELFNOTE_PHYS32_ENTRY); "
                  "build it with CONFIG_PVH=y or boot its bzImage");
}

// Validates the PT_LOAD segments against the image and guest memory; returns them sorted
// by address, without empty ones.
absl::StatusOr<std::vector<Elf64_Phdr>> CheckLoadSegments(const ImageReader& image,
                                                          const GuestMemory& mem,
                                                          const std::vector<Elf64_Phdr>& phdrs) {
  std::vector<Elf64_Phdr> loads;
  for (const Elf64_Phdr& ph : phdrs) {
    if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
    const std::string seg = absl::StrFormat("segment [%#x, +%#x)", ph.p_paddr, ph.p_memsz);
    if (ph.p_filesz > ph.p_memsz) {
      return ElfError(image, absl::StrCat(seg, " has more file bytes (p_filesz ", ph.p_filesz,
                                          ") than memory bytes (p_memsz)"));
    }
    if (ph.p_filesz != 0 &&
        (ph.p_offset > image.size() || ph.p_filesz > image.size() - ph.p_offset)) {
      return ElfError(image, absl::StrFormat("%s: its %u file bytes at offset %#x are past the "
                                             "end of the %u-byte image; is the file truncated?",
                                             seg, ph.p_filesz, ph.p_offset, image.size()));
    }
    if (ph.p_paddr < layout::kHighMemStart) {
      return ElfError(image, seg +
                                 " is below 1 MiB, where Keel keeps the boot structures; "
                                 "link the kernel at 1 MiB or above");
    }
    if (ph.p_memsz > layout::kMmioGapStart || ph.p_paddr > layout::kMmioGapStart - ph.p_memsz) {
      return ElfError(image, absl::StrFormat("%s reaches past %#x, the start of the MMIO gap; "
                                             "PVH kernels load below it",
                                             seg, layout::kMmioGapStart));
    }
    if (!mem.Contains(ph.p_paddr, ph.p_memsz)) {
      return ElfError(image, absl::StrFormat("%s is outside the VM's %u MiB of RAM; give the VM "
                                             "more memory",
                                             seg, mem.ram_size() / layout::kMiB));
    }
    loads.push_back(ph);
  }
  if (loads.empty()) return ElfError(image, "has no loadable (PT_LOAD) segments");
  std::sort(loads.begin(), loads.end(),
            [](const Elf64_Phdr& a, const Elf64_Phdr& b) { return a.p_paddr < b.p_paddr; });
  for (size_t i = 1; i < loads.size(); ++i) {
    // Ends cannot overflow: every segment was checked to end below the MMIO gap.
    if (loads[i].p_paddr < loads[i - 1].p_paddr + loads[i - 1].p_memsz) {
      return ElfError(image, absl::StrFormat("has overlapping segments at %#x and %#x",
                                             loads[i - 1].p_paddr, loads[i].p_paddr));
    }
  }
  return loads;
}

absl::Status WriteStartInfo(const GuestMemory& mem, const BootConfig& config,
                            const boot_internal::InitrdPlacement& initrd) {
  const std::vector<E820Entry> e820 = BuildE820(mem);
  const uint64_t memmap_gpa = layout::kPvhStartInfo + sizeof(StartInfo);
  const uint64_t modlist_gpa = memmap_gpa + e820.size() * sizeof(MemmapEntry);
  const uint64_t modules = initrd.size != 0 ? 1 : 0;
  const uint64_t end = modlist_gpa + modules * sizeof(ModlistEntry);
  static_assert(layout::kPvhStartInfo + boot_internal::kPageSize <= layout::kZeroPage);
  if (end > layout::kPvhStartInfo + boot_internal::kPageSize) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "the PVH memory map (%u entries) does not fit in the start-info page", e820.size()));
  }
  for (size_t i = 0; i < e820.size(); ++i) {
    const MemmapEntry entry{e820[i].addr, e820[i].size, e820[i].type, 0};
    KEEL_RETURN_IF_ERROR(mem.WriteObj(memmap_gpa + i * sizeof(MemmapEntry), entry));
  }
  if (modules != 0) {
    KEEL_RETURN_IF_ERROR(mem.WriteObj(modlist_gpa, ModlistEntry{initrd.gpa, initrd.size, 0, 0}));
  }
  StartInfo info{};
  info.magic = kStartInfoMagic;
  info.version = kStartInfoVersion;
  info.nr_modules = static_cast<uint32_t>(modules);
  info.modlist_paddr = modules != 0 ? modlist_gpa : 0;
  info.cmdline_paddr = layout::kCmdlineStart;
  info.rsdp_paddr = config.acpi_rsdp_gpa;
  info.memmap_paddr = memmap_gpa;
  info.memmap_entries = static_cast<uint32_t>(e820.size());
  return mem.WriteObj(layout::kPvhStartInfo, info);
}

}  // namespace

bool LooksLikeElf(const ImageReader& image) {
  uint8_t magic[SELFMAG];
  return image.ReadAt(0, std::span(magic)).ok() && memcmp(magic, ELFMAG, SELFMAG) == 0;
}

absl::StatusOr<BootEntry> LoadPvhElf(const GuestMemory& mem, const BootConfig& config) {
  const ImageReader& image = *config.kernel;
  KEEL_RETURN_IF_ERROR(
      boot_internal::WriteCmdline(mem, config.cmdline, layout::kCmdlineMaxSize - 1));
  KEEL_ASSIGN_OR_RETURN(Elf64_Ehdr eh, ReadElfHeader(image));
  KEEL_ASSIGN_OR_RETURN(auto phdrs, ReadTable<Elf64_Phdr>(image, eh.e_phoff, eh.e_phnum));
  KEEL_ASSIGN_OR_RETURN(uint32_t entry, FindPvhEntry(image, eh, phdrs));
  KEEL_ASSIGN_OR_RETURN(auto loads, CheckLoadSegments(image, mem, phdrs));
  const bool entry_loaded = std::any_of(loads.begin(), loads.end(), [&](const Elf64_Phdr& ph) {
    return entry >= ph.p_paddr && entry - ph.p_paddr < ph.p_memsz;
  });
  if (!entry_loaded) {
    return ElfError(image, absl::StrFormat("has its PVH entry point %#x outside every "
                                           "loadable segment",
                                           entry));
  }
  for (const Elf64_Phdr& ph : loads) {
    if (ph.p_filesz != 0) {
      KEEL_RETURN_IF_ERROR(ReadIntoGuest(image, ph.p_offset, ph.p_filesz, mem, ph.p_paddr));
    }
    // Guest RAM may be reused (reboot): zero the bss explicitly.
    KEEL_RETURN_IF_ERROR(mem.Fill(ph.p_paddr + ph.p_filesz, 0, ph.p_memsz - ph.p_filesz));
  }
  BootEntry boot;
  boot.mode = BootMode::kPvh32;
  boot.entry = entry;
  boot.boot_info_gpa = layout::kPvhStartInfo;
  boot.kernel_start = loads.front().p_paddr;
  boot.kernel_end = loads.back().p_paddr + loads.back().p_memsz;
  const uint64_t initrd_limit = std::min(mem.low_ram_end(), layout::kMmioGapStart);
  KEEL_ASSIGN_OR_RETURN(
      auto initrd, boot_internal::LoadInitrd(mem, config.initrd, boot.kernel_end, initrd_limit));
  boot.initrd_gpa = initrd.gpa;
  boot.initrd_size = initrd.size;
  KEEL_RETURN_IF_ERROR(WriteStartInfo(mem, config, initrd));
  KEEL_RETURN_IF_ERROR(WriteBootGdt(mem, BootMode::kPvh32));
  return boot;
}

}  // namespace keel::vmm::pvh
