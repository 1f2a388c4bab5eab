// Writes the fuzz seed corpora: valid images for each loader.
//   make_boot_corpus <tests/fuzz/corpus>
// creates <dir>/pvh_elf/* and <dir>/bzimage/*.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/vmm/boot/test_images.h"

namespace {

using keel::vmm::testing::Image;

void Save(const std::filesystem::path& dir, const std::string& name, const Image& image) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary)
      .write(reinterpret_cast<const char*>(image.data()), image.size());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s <corpus-dir>\n", argv[0]);
    return 2;
  }
  namespace t = keel::vmm::testing;
  const std::filesystem::path root = argv[1];

  t::PvhElfSpec pvh = t::DefaultPvhElfSpec();
  pvh.segments[0].data.resize(0x200);
  pvh.segments[1].data.resize(0x100);
  Save(root / "pvh_elf", "default", t::BuildPvhElf(pvh));
  pvh.entry_note_size = 4;
  Save(root / "pvh_elf", "note4", t::BuildPvhElf(pvh));
  pvh.note = t::NotePlacement::kSectionOnly;
  Save(root / "pvh_elf", "section_note", t::BuildPvhElf(pvh));

  t::BzImageSpec bz;
  bz.pm_size = 0x400;
  bz.setup_sects = 1;
  Save(root / "bzimage", "relocatable", t::BuildBzImage(bz));
  bz.relocatable = 0;
  Save(root / "bzimage", "fixed", t::BuildBzImage(bz));
  bz.setup_sects = 0;
  bz.version = 0x020c;
  Save(root / "bzimage", "protocol_2_12", t::BuildBzImage(bz));
  return 0;
}
