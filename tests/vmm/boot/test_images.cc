#include "tests/vmm/boot/test_images.h"

#include <elf.h>

#include "vmm/boot/linux_boot_params.h"

namespace keel::vmm::testing {

namespace {

template <typename T>
void Append(Image& out, const T& value) {
  const auto* p = reinterpret_cast<const uint8_t*>(&value);
  out.insert(out.end(), p, p + sizeof(T));
}

void PadTo(Image& out, size_t align) {
  while (out.size() % align != 0) out.push_back(0);
}

// The Xen PVH entry note: namesz 4 ("Xen\0"), type 18, desc = entry (4 or 8 bytes).
Image EntryNote(uint64_t entry, uint32_t desc_size) {
  Image note;
  Append(note, Elf64_Nhdr{4, desc_size, 18});
  note.insert(note.end(), {'X', 'e', 'n', 0});
  const auto* p = reinterpret_cast<const uint8_t*>(&entry);
  note.insert(note.end(), p, p + desc_size);
  PadTo(note, 4);
  return note;
}

// A note the loader must skip: GNU build id.
Image OtherNote() {
  Image note;
  Append(note, Elf64_Nhdr{4, 8, NT_GNU_BUILD_ID});
  note.insert(note.end(), {'G', 'N', 'U', 0, 1, 2, 3, 4, 5, 6, 7, 8});
  return note;
}

}  // namespace

Image Pattern(size_t size, uint8_t seed) {
  Image out(size);
  for (size_t i = 0; i < size; ++i) out[i] = static_cast<uint8_t>(seed + i * 7);
  return out;
}

PvhElfSpec DefaultPvhElfSpec() {
  PvhElfSpec spec;
  spec.segments.push_back({0x100000, Pattern(0x1000, 1), 0x2000});
  spec.segments.push_back({0x200000, Pattern(0x1000, 2), 0x1000});
  return spec;
}

Image BuildPvhElf(const PvhElfSpec& spec) {
  const bool note_phdr = spec.note == NotePlacement::kProgramHeader;
  const bool note_section = spec.note != NotePlacement::kNone;
  const uint16_t phnum = static_cast<uint16_t>(spec.segments.size() + (note_phdr ? 1 : 0));

  Image notes = OtherNote();
  const Image entry_note = EntryNote(spec.entry, spec.entry_note_size);
  notes.insert(notes.end(), entry_note.begin(), entry_note.end());

  const uint64_t notes_offset = kElfPhdrOffset + uint64_t{phnum} * kElfPhdrSize;
  uint64_t data_offset = notes_offset + notes.size();
  data_offset = (data_offset + 15) & ~uint64_t{15};

  std::vector<Elf64_Phdr> phdrs;
  if (note_phdr) {
    phdrs.push_back({PT_NOTE, PF_R, notes_offset, 0, 0, notes.size(), notes.size(), 4});
  }
  uint64_t offset = data_offset;
  for (const ElfSegment& s : spec.segments) {
    phdrs.push_back({PT_LOAD, PF_R | PF_X, offset, s.paddr + 0xffffffff80000000ull, s.paddr,
                     s.data.size(), s.memsz, 0x1000});
    offset += s.data.size();
  }
  const uint64_t shoff = (offset + 7) & ~uint64_t{7};

  Elf64_Ehdr eh{};
  memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_EXEC;
  eh.e_machine = EM_X86_64;
  eh.e_version = EV_CURRENT;
  eh.e_entry = 0xffffffff81000000ull;  // the 64-bit ELF entry, ignored by PVH
  eh.e_phoff = kElfPhdrOffset;
  eh.e_ehsize = sizeof(Elf64_Ehdr);
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = phnum;
  if (note_section) {
    eh.e_shoff = shoff;
    eh.e_shentsize = sizeof(Elf64_Shdr);
    eh.e_shnum = 2;
  }

  Image out;
  Append(out, eh);
  for (const Elf64_Phdr& ph : phdrs) Append(out, ph);
  out.insert(out.end(), notes.begin(), notes.end());
  out.resize(data_offset, 0);
  for (const ElfSegment& s : spec.segments) out.insert(out.end(), s.data.begin(), s.data.end());
  if (note_section) {
    out.resize(shoff, 0);
    Append(out, Elf64_Shdr{});
    Elf64_Shdr note{};
    note.sh_type = SHT_NOTE;
    note.sh_offset = notes_offset;
    note.sh_size = notes.size();
    note.sh_addralign = 4;
    Append(out, note);
  }
  return out;
}

uint8_t BzPayloadByte(uint64_t i) { return static_cast<uint8_t>(0x5a ^ (i * 13)); }

Image BuildBzImage(const BzImageSpec& spec) {
  using namespace linux_boot;
  const uint64_t setup_sects = spec.setup_sects == 0 ? 4 : spec.setup_sects;
  const uint64_t setup_size = (setup_sects + 1) * kSectorSize;
  Image out = Pattern(setup_size, 0x33);  // real-mode code: never loaded by Keel
  memset(out.data() + 0x1ef, 0, 0x290 - 0x1ef);
  SetupHeader h{};
  h.setup_sects = spec.setup_sects;
  h.syssize = static_cast<uint32_t>(spec.pm_size / 16);
  h.vid_mode = 0xfffd;
  h.boot_flag = kBootFlagMagic;
  h.jump = 0x6aeb;  // jmp to 0x202 + 0x6a = 0x26c: the end of a 2.15 header
  h.header = kHdrSMagic;
  h.version = spec.version;
  h.loadflags = spec.loadflags;
  h.kernel_version = 0x1000;
  h.initrd_addr_max = spec.initrd_addr_max;
  h.kernel_alignment = spec.kernel_alignment;
  h.relocatable_kernel = spec.relocatable;
  h.min_alignment = 21;
  h.xloadflags = spec.xloadflags;
  h.cmdline_size = spec.cmdline_size;
  h.setup_data = 0xdeadbeef;  // garbage a loader must not pass on
  h.pref_address = spec.pref_address;
  h.init_size = spec.init_size;
  h.handover_offset = 0x190;
  memcpy(out.data() + kSetupHeaderOffset, &h, sizeof(h));
  for (uint64_t i = 0; i < spec.pm_size; ++i) out.push_back(BzPayloadByte(i));
  return out;
}

}  // namespace keel::vmm::testing
