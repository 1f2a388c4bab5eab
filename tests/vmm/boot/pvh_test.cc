#include "vmm/boot/pvh.h"

#include <elf.h>

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/vmm/boot/test_images.h"
#include "tests/vmm/boot/test_util.h"
#include "vmm/boot/e820.h"
#include "vmm/boot/loader.h"
#include "vmm/layout.h"

namespace keel::vmm {
namespace {

using testing::BuildPvhElf;
using testing::DefaultPvhElfSpec;
using ::testing::HasSubstr;
using testing::Image;
using testing::kElfPhdrOffset;
using testing::kElfPhdrSize;
using testing::kXenNoteOffset;
using testing::NotePlacement;
using testing::Patch;
using testing::Peek;

constexpr uint64_t kRam = 64 * layout::kMiB;

// Offset of field `field` in program header `index` of an image built by BuildPvhElf.
#define PHDR_FIELD(index, field) \
  (kElfPhdrOffset + (index)*kElfPhdrSize + offsetof(Elf64_Phdr, field))

class PvhLoadTest : public testing::GuestMemoryTest {
 protected:
  PvhLoadTest() : GuestMemoryTest(kRam) {}
  absl::StatusOr<BootEntry> Load(const Image& image, const Image* initrd = nullptr,
                                 std::string cmdline = "console=ttyS0") {
    return GuestMemoryTest::Load("vmlinux", image, initrd, std::move(cmdline));
  }
};

TEST_F(PvhLoadTest, LoadsSegmentsAndReturnsThePvhEntry) {
  ASSERT_TRUE(mem_->Fill(0x101000, 0xaa, 0x1000).ok());  // stale bytes where the bss goes
  const Image image = BuildPvhElf(DefaultPvhElfSpec());

  auto entry = Load(image);

  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_EQ(entry->mode, BootMode::kPvh32);
  EXPECT_EQ(entry->entry, 0x100000u);
  EXPECT_EQ(entry->boot_info_gpa, layout::kPvhStartInfo);
  EXPECT_EQ(entry->kernel_start, 0x100000u);
  EXPECT_EQ(entry->kernel_end, 0x201000u);
  Image text(0x1000), bss(0x1000), data(0x1000);
  ASSERT_TRUE(mem_->Read(0x100000, text).ok());
  ASSERT_TRUE(mem_->Read(0x101000, bss).ok());
  ASSERT_TRUE(mem_->Read(0x200000, data).ok());
  EXPECT_EQ(text, testing::Pattern(0x1000, 1));
  EXPECT_EQ(bss, Image(0x1000, 0));
  EXPECT_EQ(data, testing::Pattern(0x1000, 2));
}

TEST_F(PvhLoadTest, WritesStartInfoWithMemmapCmdlineAndRsdp) {
  const Image image = BuildPvhElf(DefaultPvhElfSpec());

  ASSERT_TRUE(Load(image, nullptr, "console=ttyS0 quiet").ok());

  const auto info = Read<pvh::StartInfo>(layout::kPvhStartInfo);
  EXPECT_EQ(info.magic, 0x336ec578u);
  EXPECT_EQ(info.version, 1u);
  EXPECT_EQ(info.nr_modules, 0u);
  EXPECT_EQ(info.modlist_paddr, 0u);
  EXPECT_EQ(info.cmdline_paddr, layout::kCmdlineStart);
  EXPECT_EQ(info.rsdp_paddr, layout::kAcpiRsdp);
  const std::vector<E820Entry> e820 = BuildE820(*mem_);
  ASSERT_EQ(info.memmap_entries, e820.size());
  const auto last = Read<pvh::MemmapEntry>(info.memmap_paddr + (e820.size() - 1) * 24);
  EXPECT_EQ(last.addr, layout::kHighMemStart);
  EXPECT_EQ(last.size, kRam - layout::kHighMemStart);
  EXPECT_EQ(last.type, kE820Ram);
  char cmdline[20] = {};
  ASSERT_TRUE(mem_->Read(layout::kCmdlineStart,
                         std::span(reinterpret_cast<uint8_t*>(cmdline), sizeof(cmdline)))
                  .ok());
  EXPECT_STREQ(cmdline, "console=ttyS0 quiet");
}

TEST_F(PvhLoadTest, PassesTheInitrdAsModuleZeroAtTheTopOfRam) {
  const Image image = BuildPvhElf(DefaultPvhElfSpec());
  const Image initrd = testing::Pattern(10000, 9);

  auto entry = Load(image, &initrd);

  ASSERT_TRUE(entry.ok()) << entry.status();
  const uint64_t expected_gpa = (kRam - 10000) & ~uint64_t{4095};
  EXPECT_EQ(entry->initrd_gpa, expected_gpa);
  EXPECT_EQ(entry->initrd_size, 10000u);
  const auto info = Read<pvh::StartInfo>(layout::kPvhStartInfo);
  ASSERT_EQ(info.nr_modules, 1u);
  const auto mod = Read<pvh::ModlistEntry>(info.modlist_paddr);
  EXPECT_EQ(mod.paddr, expected_gpa);
  EXPECT_EQ(mod.size, 10000u);
  Image back(10000);
  ASSERT_TRUE(mem_->Read(expected_gpa, back).ok());
  EXPECT_EQ(back, initrd);
}

TEST_F(PvhLoadTest, AcceptsA4ByteEntryNote) {
  auto spec = DefaultPvhElfSpec();
  spec.entry_note_size = 4;
  spec.entry = 0x100040;

  auto entry = Load(BuildPvhElf(spec));

  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_EQ(entry->entry, 0x100040u);
}

TEST_F(PvhLoadTest, FindsTheNoteInASectionWhenNoPtNoteHasIt) {
  auto spec = DefaultPvhElfSpec();
  spec.note = NotePlacement::kSectionOnly;

  auto entry = Load(BuildPvhElf(spec));

  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_EQ(entry->entry, 0x100000u);
}

TEST_F(PvhLoadTest, WritesA32BitBootGdt) {
  ASSERT_TRUE(Load(BuildPvhElf(DefaultPvhElfSpec())).ok());

  EXPECT_EQ(Read<uint64_t>(layout::kGdtStart + 0x10), 0x00cf9b000000ffffu);
  EXPECT_EQ(Read<uint64_t>(layout::kGdtStart + 0x18), 0x00cf93000000ffffu);
}

TEST_F(PvhLoadTest, RejectsAnInitrdThatDoesNotFit) {
  const Image image = BuildPvhElf(DefaultPvhElfSpec());
  const Image initrd(kRam - 0x200000, 1);

  auto entry = Load(image, &initrd);

  EXPECT_EQ(entry.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(entry.status().message(), HasSubstr("initrd /images/initrd is"));
}

TEST_F(PvhLoadTest, RejectsAnEmptyInitrd) {
  const Image initrd;

  auto entry = Load(BuildPvhElf(DefaultPvhElfSpec()), &initrd);

  EXPECT_THAT(entry.status().message(), HasSubstr("is empty"));
}

TEST_F(PvhLoadTest, RejectsACommandLineLongerThanTheCmdlineArea) {
  auto entry =
      Load(BuildPvhElf(DefaultPvhElfSpec()), nullptr, std::string(layout::kCmdlineMaxSize, 'x'));

  EXPECT_EQ(entry.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(entry.status().message(), HasSubstr("command line"));
}

TEST_F(PvhLoadTest, AcceptsTheLongestCommandLineThatFits) {
  auto entry = Load(BuildPvhElf(DefaultPvhElfSpec()), nullptr,
                    std::string(layout::kCmdlineMaxSize - 1, 'x'));

  EXPECT_TRUE(entry.ok()) << entry.status();
}

TEST_F(PvhLoadTest, RejectsACommandLineWithANulByte) {
  auto entry = Load(BuildPvhElf(DefaultPvhElfSpec()), nullptr, std::string("a\0b", 3));

  EXPECT_THAT(entry.status().message(), HasSubstr("NUL"));
}

TEST_F(PvhLoadTest, BoundsTheNoteBytesItScans) {
  // 20 SHT_NOTE sections naming the same 64 KiB of (empty) notes: 1.25 MiB to scan.
  Image image = BuildPvhElf(DefaultPvhElfSpec());
  Patch<uint32_t>(image, PHDR_FIELD(0, p_type), PT_NULL);
  const uint64_t notes = image.size();
  image.resize(notes + 0x10000, 0);
  const uint64_t shoff = image.size();
  for (int i = 0; i < 20; ++i) {
    Elf64_Shdr sh{};
    sh.sh_type = SHT_NOTE;
    sh.sh_offset = notes;
    sh.sh_size = 0x10000;
    image.insert(image.end(), reinterpret_cast<uint8_t*>(&sh),
                 reinterpret_cast<uint8_t*>(&sh) + sizeof(sh));
  }
  Patch<uint64_t>(image, offsetof(Elf64_Ehdr, e_shoff), shoff);
  Patch<uint16_t>(image, offsetof(Elf64_Ehdr, e_shnum), 20);

  auto entry = Load(image);

  EXPECT_THAT(entry.status().message(), HasSubstr("more than 1048576 bytes of ELF notes"));
}

// Hostile images: each case patches a valid image; the loader must fail with a message
// containing `error`.
using HostileElf = testing::HostileImage;

class PvhHostileTest : public PvhLoadTest, public ::testing::WithParamInterface<HostileElf> {};

TEST_P(PvhHostileTest, FailsWithAClearError) {
  Image image = BuildPvhElf(DefaultPvhElfSpec());
  GetParam().patch(image);

  auto entry = Load(image);

  ASSERT_FALSE(entry.ok());
  EXPECT_THAT(entry.status().message(), HasSubstr(GetParam().error));
  EXPECT_THAT(entry.status().message(), HasSubstr("/images/vmlinux"));
}

// Program header 0 is the PT_NOTE, 1 the text segment, 2 the data segment.
INSTANTIATE_TEST_SUITE_P(
    Elf, PvhHostileTest,
    ::testing::Values(
        HostileElf{"Truncated", [](Image& i) { i.resize(40); }, "truncated ELF"},
        HostileElf{"Elf32", [](Image& i) { i[EI_CLASS] = ELFCLASS32; }, "not a 64-bit ELF"},
        HostileElf{"BigEndian", [](Image& i) { i[EI_DATA] = ELFDATA2MSB; }, "little-endian"},
        HostileElf{
            "Aarch64",
            [](Image& i) { Patch<uint16_t>(i, offsetof(Elf64_Ehdr, e_machine), EM_AARCH64); },
            "not x86-64"},
        HostileElf{"SharedObject",
                   [](Image& i) { Patch<uint16_t>(i, offsetof(Elf64_Ehdr, e_type), ET_DYN); },
                   "not an executable"},
        HostileElf{"PhentsizeWrong",
                   [](Image& i) { Patch<uint16_t>(i, offsetof(Elf64_Ehdr, e_phentsize), 32); },
                   "program headers of 32 bytes"},
        HostileElf{"PhnumAbsurd",
                   [](Image& i) { Patch<uint16_t>(i, offsetof(Elf64_Ehdr, e_phnum), 0xffff); },
                   "65535 program headers"},
        HostileElf{"PhnumZero",
                   [](Image& i) { Patch<uint16_t>(i, offsetof(Elf64_Ehdr, e_phnum), 0); },
                   "0 program headers"},
        HostileElf{"PhoffPastEof",
                   [](Image& i) { Patch<uint64_t>(i, offsetof(Elf64_Ehdr, e_phoff), ~0ull - 8); },
                   "truncated"},
        HostileElf{"SegmentPastEof",
                   [](Image& i) { Patch<uint64_t>(i, PHDR_FIELD(1, p_offset), i.size() - 16); },
                   "past the end"},
        HostileElf{"SegmentOffsetOverflows",
                   [](Image& i) { Patch<uint64_t>(i, PHDR_FIELD(1, p_offset), ~0ull - 16); },
                   "past the end"},
        HostileElf{"FileszAboveMemsz",
                   [](Image& i) { Patch<uint64_t>(i, PHDR_FIELD(2, p_memsz), 0x800); },
                   "more file bytes"},
        HostileElf{"SegmentBelow1MiB",
                   [](Image& i) { Patch<uint64_t>(i, PHDR_FIELD(2, p_paddr), 0x7000); },
                   "below 1 MiB"},
        HostileElf{"SegmentInMmioGap",
                   [](Image& i) { Patch<uint64_t>(i, PHDR_FIELD(2, p_paddr), 0xfec00000); },
                   "MMIO gap"},
        HostileElf{"SegmentStraddlesMmioGap",
                   [](Image& i) {
                     Patch<uint64_t>(i, PHDR_FIELD(2, p_paddr), 0xcffff000);
                     Patch<uint64_t>(i, PHDR_FIELD(2, p_memsz), 0x2000);
                   },
                   "MMIO gap"},
        HostileElf{"SegmentAddressOverflows",
                   [](Image& i) { Patch<uint64_t>(i, PHDR_FIELD(2, p_paddr), ~0ull - 0x10); },
                   "MMIO gap"},
        HostileElf{"SegmentOutsideRam",
                   [](Image& i) { Patch<uint64_t>(i, PHDR_FIELD(2, p_paddr), 0x8000000); },
                   "outside the VM's 64 MiB of RAM"},
        HostileElf{"SegmentsOverlap",
                   [](Image& i) { Patch<uint64_t>(i, PHDR_FIELD(2, p_paddr), 0x101000); },
                   "overlapping segments"},
        HostileElf{"NoLoadSegments",
                   [](Image& i) {
                     Patch<uint32_t>(i, PHDR_FIELD(1, p_type), PT_NULL);
                     Patch<uint32_t>(i, PHDR_FIELD(2, p_type), PT_NULL);
                   },
                   "no loadable"},
        HostileElf{"NoPvhNote",
                   [](Image& i) {
                     Patch<uint32_t>(i, PHDR_FIELD(0, p_type), PT_NULL);
                     Patch<uint64_t>(i, offsetof(Elf64_Ehdr, e_shoff), 0);
                   },
                   "not a PVH ELF (no Xen PVH note"},
        HostileElf{"NoteNameszHuge",
                   [](Image& i) {
                     const uint64_t notes = Peek<uint64_t>(i, PHDR_FIELD(0, p_offset));
                     Patch<uint32_t>(i, notes, 0xfffffff0);
                   },
                   "truncated ELF note"},
        HostileElf{"NoteDescszHuge",
                   [](Image& i) {
                     const uint64_t notes = Peek<uint64_t>(i, PHDR_FIELD(0, p_offset));
                     Patch<uint32_t>(i, notes + 4, 0xffffffff);
                   },
                   "truncated ELF note"},
        HostileElf{"NoteAreaPastEof",
                   [](Image& i) { Patch<uint64_t>(i, PHDR_FIELD(0, p_filesz), 0x8000); },
                   "truncated"},
        HostileElf{"NoteAreaHuge",
                   [](Image& i) { Patch<uint64_t>(i, PHDR_FIELD(0, p_filesz), 1ull << 40); },
                   "note area"},
        HostileElf{"EntryNoteShortDesc",
                   [](Image& i) {
                     const uint64_t notes = Peek<uint64_t>(i, PHDR_FIELD(0, p_offset));
                     Patch<uint32_t>(i, notes + kXenNoteOffset + 4, 2);
                   },
                   "2 bytes"},
        HostileElf{"EntryAbove4GiB",
                   [](Image& i) {
                     const uint64_t notes = Peek<uint64_t>(i, PHDR_FIELD(0, p_offset));
                     Patch<uint64_t>(i, notes + kXenNoteOffset + 16, 0x100000000ull);
                   },
                   "above 4 GiB"},
        HostileElf{"EntryOutsideSegments",
                   [](Image& i) {
                     const uint64_t notes = Peek<uint64_t>(i, PHDR_FIELD(0, p_offset));
                     Patch<uint64_t>(i, notes + kXenNoteOffset + 16, 0x300000);
                   },
                   "outside every loadable segment"},
        HostileElf{"SectionTableGarbage",
                   [](Image& i) {
                     Patch<uint32_t>(i, PHDR_FIELD(0, p_type), PT_NULL);
                     Patch<uint16_t>(i, offsetof(Elf64_Ehdr, e_shnum), 0xffff);
                   },
                   "section headers"}),
    testing::HostileImageName);

}  // namespace
}  // namespace keel::vmm
