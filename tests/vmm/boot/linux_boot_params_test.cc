// The boot protocol structures against the offset tables of Documentation/arch/x86/boot.rst
// ("The Real-Mode Kernel Header") and Documentation/arch/x86/zero-page.rst, restated here
// as data so that a wrong struct shows up as a readable test failure.
#include "vmm/boot/linux_boot_params.h"

#include <string>

#include "gtest/gtest.h"

namespace keel::vmm::linux_boot {
namespace {

struct Field {
  std::string name;
  size_t actual;  // offset in Keel's struct
  size_t size;
  size_t documented_offset;
  size_t documented_size;
};

#define HDR(f, off, sz) \
  Field { #f, kSetupHeaderOffset + offsetof(SetupHeader, f), sizeof(SetupHeader::f), off, sz }
#define ZP(f, off, sz) \
  Field { #f, offsetof(BootParams, f), sizeof(BootParams::f), off, sz }

class BootProtocolLayoutTest : public ::testing::TestWithParam<Field> {};

TEST_P(BootProtocolLayoutTest, MatchesTheDocumentation) {
  EXPECT_EQ(GetParam().actual, GetParam().documented_offset) << GetParam().name;
  EXPECT_EQ(GetParam().size, GetParam().documented_size) << GetParam().name;
}

INSTANTIATE_TEST_SUITE_P(
    SetupHeader, BootProtocolLayoutTest,
    ::testing::Values(
        HDR(setup_sects, 0x1f1, 1), HDR(root_flags, 0x1f2, 2), HDR(syssize, 0x1f4, 4),
        HDR(ram_size, 0x1f8, 2), HDR(vid_mode, 0x1fa, 2), HDR(root_dev, 0x1fc, 2),
        HDR(boot_flag, 0x1fe, 2), HDR(jump, 0x200, 2), HDR(header, 0x202, 4),
        HDR(version, 0x206, 2), HDR(realmode_swtch, 0x208, 4), HDR(start_sys_seg, 0x20c, 2),
        HDR(kernel_version, 0x20e, 2), HDR(type_of_loader, 0x210, 1), HDR(loadflags, 0x211, 1),
        HDR(setup_move_size, 0x212, 2), HDR(code32_start, 0x214, 4), HDR(ramdisk_image, 0x218, 4),
        HDR(ramdisk_size, 0x21c, 4), HDR(bootsect_kludge, 0x220, 4), HDR(heap_end_ptr, 0x224, 2),
        HDR(ext_loader_ver, 0x226, 1), HDR(ext_loader_type, 0x227, 1), HDR(cmd_line_ptr, 0x228, 4),
        HDR(initrd_addr_max, 0x22c, 4), HDR(kernel_alignment, 0x230, 4),
        HDR(relocatable_kernel, 0x234, 1), HDR(min_alignment, 0x235, 1), HDR(xloadflags, 0x236, 2),
        HDR(cmdline_size, 0x238, 4), HDR(hardware_subarch, 0x23c, 4),
        HDR(hardware_subarch_data, 0x240, 8), HDR(payload_offset, 0x248, 4),
        HDR(payload_length, 0x24c, 4), HDR(setup_data, 0x250, 8), HDR(pref_address, 0x258, 8),
        HDR(init_size, 0x260, 4), HDR(handover_offset, 0x264, 4),
        HDR(kernel_info_offset, 0x268, 4)),
    [](const ::testing::TestParamInfo<Field>& info) { return info.param.name; });

INSTANTIATE_TEST_SUITE_P(
    ZeroPage, BootProtocolLayoutTest,
    ::testing::Values(ZP(screen_info, 0x000, 0x40), ZP(apm_bios_info, 0x040, 0x14),
                      ZP(tboot_addr, 0x058, 8), ZP(ist_info, 0x060, 0x10),
                      ZP(acpi_rsdp_addr, 0x070, 8), ZP(hd0_info, 0x080, 0x10),
                      ZP(hd1_info, 0x090, 0x10), ZP(sys_desc_table, 0x0a0, 0x10),
                      ZP(olpc_ofw_header, 0x0b0, 0x10), ZP(ext_ramdisk_image, 0x0c0, 4),
                      ZP(ext_ramdisk_size, 0x0c4, 4), ZP(ext_cmd_line_ptr, 0x0c8, 4),
                      ZP(cc_blob_address, 0x13c, 4), ZP(edid_info, 0x140, 0x80),
                      ZP(efi_info, 0x1c0, 0x20), ZP(alt_mem_k, 0x1e0, 4), ZP(scratch, 0x1e4, 4),
                      ZP(e820_entries, 0x1e8, 1), ZP(eddbuf_entries, 0x1e9, 1),
                      ZP(edd_mbr_sig_buf_entries, 0x1ea, 1), ZP(kbd_status, 0x1eb, 1),
                      ZP(secure_boot, 0x1ec, 1), ZP(sentinel, 0x1ef, 1),
                      ZP(edd_mbr_sig_buffer, 0x290, 0x40), ZP(e820_table, 0x2d0, 0xa00),
                      ZP(eddbuf, 0xd00, 0x1ec)),
    [](const ::testing::TestParamInfo<Field>& info) { return info.param.name; });

TEST(BootParamsTest, IsOnePageWithTheHeaderAt0x1f1) {
  EXPECT_EQ(sizeof(BootParams), 4096u);
  EXPECT_EQ(offsetof(BootParams, hdr), 0x1f1u);
  EXPECT_EQ(sizeof(E820Entry), 20u);
}

}  // namespace
}  // namespace keel::vmm::linux_boot
