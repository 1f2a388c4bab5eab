// Host unit tests of the test guest's table and command-line parsing (guest/acpi_parse.c,
// guest/cmdline.c): the same C code the guest runs, built for the host with the project's
// sanitizers, against AML compiled by iasl and against hostile, truncated input.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "acpi_parse.h"
#include "cmdline.h"
#include "gtest/gtest.h"

namespace {

// iasl -p dsdt dsdt.asl, without the 36-byte table header, from:
//   Scope (\_SB) {
//     Device (COM1) { Name (_HID, EisaId ("PNP0501")) Name (_UID, One)
//       Name (_CRS, ResourceTemplate () { IO (Decode16, 0x3F8, 0x3F8, 0, 8) IRQNoFlags () {4} }) }
//     Device (GED0) { Name (_HID, "ACPI0013") Name (_UID, Zero)
//       Name (_CRS, ResourceTemplate () {
//         Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) {9} }) }
//     Device (VR00) { Name (_HID, "LNRO0005") Name (_UID, Zero) Name (_CCA, One)
//       Name (_CRS, ResourceTemplate () { Memory32Fixed (ReadWrite, 0xD0000000, 0x1000)
//         Interrupt (ResourceConsumer, Level, ActiveHigh, Exclusive) {5} }) }
//     Device (VR01) { Name (_HID, "LNRO0005") Name (_UID, One)
//       Method (_CRS, 0) { Return (ResourceTemplate () {
//         QWordMemory (ResourceConsumer, PosDecode, MinFixed, MaxFixed, NonCacheable,
//                      ReadWrite, 0, 0xD0001000, 0xD0001FFF, 0, 0x1000)
//         Interrupt (ResourceConsumer, Edge, ActiveLow, Shared) {6} }) } }
//   }
//   Name (\_S5, Package (4) { 5, Zero, Zero, Zero })
const std::vector<uint8_t> kDsdtBody = {
    0x10, 0x49, 0x10, 0x5f, 0x53, 0x42, 0x5f, 0x5b, 0x82, 0x2b, 0x43, 0x4f, 0x4d, 0x31, 0x08, 0x5f,
    0x48, 0x49, 0x44, 0x0c, 0x41, 0xd0, 0x05, 0x01, 0x08, 0x5f, 0x55, 0x49, 0x44, 0x01, 0x08, 0x5f,
    0x43, 0x52, 0x53, 0x11, 0x10, 0x0a, 0x0d, 0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x00, 0x08, 0x22,
    0x10, 0x00, 0x79, 0x00, 0x5b, 0x82, 0x2e, 0x47, 0x45, 0x44, 0x30, 0x08, 0x5f, 0x48, 0x49, 0x44,
    0x0d, 0x41, 0x43, 0x50, 0x49, 0x30, 0x30, 0x31, 0x33, 0x00, 0x08, 0x5f, 0x55, 0x49, 0x44, 0x00,
    0x08, 0x5f, 0x43, 0x52, 0x53, 0x11, 0x0e, 0x0a, 0x0b, 0x89, 0x06, 0x00, 0x03, 0x01, 0x09, 0x00,
    0x00, 0x00, 0x79, 0x00, 0x5b, 0x82, 0x41, 0x04, 0x56, 0x52, 0x30, 0x30, 0x08, 0x5f, 0x48, 0x49,
    0x44, 0x0d, 0x4c, 0x4e, 0x52, 0x4f, 0x30, 0x30, 0x30, 0x35, 0x00, 0x08, 0x5f, 0x55, 0x49, 0x44,
    0x00, 0x08, 0x5f, 0x43, 0x43, 0x41, 0x01, 0x08, 0x5f, 0x43, 0x52, 0x53, 0x11, 0x1a, 0x0a, 0x17,
    0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xd0, 0x00, 0x10, 0x00, 0x00, 0x89, 0x06, 0x00, 0x01,
    0x01, 0x05, 0x00, 0x00, 0x00, 0x79, 0x00, 0x5b, 0x82, 0x41, 0x06, 0x56, 0x52, 0x30, 0x31, 0x08,
    0x5f, 0x48, 0x49, 0x44, 0x0d, 0x4c, 0x4e, 0x52, 0x4f, 0x30, 0x30, 0x30, 0x35, 0x00, 0x08, 0x5f,
    0x55, 0x49, 0x44, 0x01, 0x14, 0x45, 0x04, 0x5f, 0x43, 0x52, 0x53, 0x00, 0xa4, 0x11, 0x3c, 0x0a,
    0x39, 0x8a, 0x2b, 0x00, 0x00, 0x0d, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x10, 0x00, 0xd0, 0x00, 0x00, 0x00, 0x00, 0xff, 0x1f, 0x00, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x89,
    0x06, 0x00, 0x0f, 0x01, 0x06, 0x00, 0x00, 0x00, 0x79, 0x00, 0x08, 0x5f, 0x53, 0x35, 0x5f, 0x12,
    0x07, 0x04, 0x0a, 0x05, 0x00, 0x00, 0x00,
};

struct Found {
  std::string name, hid;
  bool has_crs;
  aml_resources res;
};

void Collect(void* ctx, const aml_device* d) {
  Found f{d->name, d->hid, false, {}};
  f.has_crs = aml_device_resources(d->body, d->body_len, &f.res);
  static_cast<std::vector<Found>*>(ctx)->push_back(f);
}

std::vector<Found> Devices(const std::vector<uint8_t>& aml) {
  std::vector<Found> out;
  aml_for_each_device(aml.data(), aml.size(), Collect, &out);
  return out;
}

TEST(AmlDevices, FindsEveryDeviceWithItsHid) {
  std::vector<Found> d = Devices(kDsdtBody);

  ASSERT_EQ(d.size(), 4u);
  EXPECT_EQ(d[0].name, "COM1");
  EXPECT_EQ(d[0].hid, "PNP0501");  // an EISA ID, decoded
  EXPECT_EQ(d[1].hid, "ACPI0013");
  EXPECT_EQ(d[2].name, "VR00");
  EXPECT_EQ(d[3].hid, "LNRO0005");
}

TEST(AmlResources, SmallIrqDescriptor) {
  std::vector<Found> d = Devices(kDsdtBody);

  ASSERT_TRUE(d[0].has_crs);
  EXPECT_FALSE(d[0].res.has_mem);
  ASSERT_EQ(d[0].res.irq_count, 1);
  EXPECT_EQ(d[0].res.irqs[0], 4u);
  EXPECT_FALSE(d[0].res.irq_level);
}

TEST(AmlResources, GenericEventDeviceInterrupt) {
  std::vector<Found> d = Devices(kDsdtBody);

  ASSERT_TRUE(d[1].has_crs);
  ASSERT_EQ(d[1].res.irq_count, 1);
  EXPECT_EQ(d[1].res.irqs[0], 9u);
  EXPECT_FALSE(d[1].res.irq_level);
  EXPECT_FALSE(d[1].res.irq_active_low);
}

TEST(AmlResources, VirtioMmioWindowFromNameCrs) {
  std::vector<Found> d = Devices(kDsdtBody);

  ASSERT_TRUE(d[2].has_crs);
  EXPECT_TRUE(d[2].res.has_mem);
  EXPECT_EQ(d[2].res.mem_base, 0xD0000000u);
  EXPECT_EQ(d[2].res.mem_len, 0x1000u);
  ASSERT_EQ(d[2].res.irq_count, 1);
  EXPECT_EQ(d[2].res.irqs[0], 5u);
  EXPECT_TRUE(d[2].res.irq_level);
}

TEST(AmlResources, QWordMemoryFromMethodCrs) {
  std::vector<Found> d = Devices(kDsdtBody);

  ASSERT_TRUE(d[3].has_crs);
  EXPECT_EQ(d[3].res.mem_base, 0xD0001000u);
  EXPECT_EQ(d[3].res.mem_len, 0x1000u);
  ASSERT_EQ(d[3].res.irq_count, 1);
  EXPECT_EQ(d[3].res.irqs[0], 6u);
  EXPECT_FALSE(d[3].res.irq_level);
  EXPECT_TRUE(d[3].res.irq_active_low);
}

TEST(AmlResources, ParentDoesNotTakeANestedDevicesCrs) {
  // Device (OUTR) { Device (INNR) { Name (_CRS, ResourceTemplate () { IRQNoFlags () {3} }) } }
  const std::vector<uint8_t> aml = {0x5b, 0x82, 0x1a, 'O',  'U',  'T',  'R',  0x5b, 0x82, 0x13,
                                    'I',  'N',  'N',  'R',  0x08, '_',  'C',  'R',  'S',  0x11,
                                    0x08, 0x0a, 0x05, 0x22, 0x08, 0x00, 0x79, 0x00};

  std::vector<Found> d = Devices(aml);

  ASSERT_EQ(d.size(), 2u);
  EXPECT_FALSE(d[0].has_crs);
  ASSERT_TRUE(d[1].has_crs);
  EXPECT_EQ(d[1].res.irqs[0], 3u);
}

TEST(AmlResources, DescriptorLongerThanItsBufferIsRejected) {
  // Memory32Fixed claiming 9 data bytes with only 4 present.
  const uint8_t crs[] = {0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00};
  aml_resources r;

  EXPECT_FALSE(aml_parse_resources(crs, sizeof(crs), &r));
}

TEST(AmlResources, ExtendedInterruptCountBeyondItsLengthStopsAtTheLength) {
  // Count 200, room for one interrupt.
  const uint8_t crs[] = {0x89, 0x06, 0x00, 0x01, 200, 0x07, 0x00, 0x00, 0x00, 0x79, 0x00};
  aml_resources r;

  ASSERT_TRUE(aml_parse_resources(crs, sizeof(crs), &r));
  ASSERT_EQ(r.irq_count, 1);
  EXPECT_EQ(r.irqs[0], 7u);
}

TEST(AmlS5, FirstPackageElement) {
  uint8_t typ = 0;

  ASSERT_TRUE(aml_find_s5(kDsdtBody.data(), kDsdtBody.size(), &typ));
  EXPECT_EQ(typ, 5);
}

TEST(AmlS5, RootPrefixedNameAndZeroOp) {
  const uint8_t aml[] = {0x08, '\\', '_', 'S', '5', '_', 0x12, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00};
  uint8_t typ = 9;

  ASSERT_TRUE(aml_find_s5(aml, sizeof(aml), &typ));
  EXPECT_EQ(typ, 0);
}

TEST(AmlS5, AbsentOrCutShort) {
  uint8_t typ;
  const uint8_t cut[] = {0x08, '_', 'S', '5', '_', 0x12, 0x07, 0x04, 0x0a};

  EXPECT_FALSE(aml_find_s5(kDsdtBody.data(), 100, &typ));
  EXPECT_FALSE(aml_find_s5(cut, sizeof(cut), &typ));
}

TEST(AmlHostile, EveryTruncationOfTheDsdtIsSafe) {
  // Each prefix is parsed from a buffer of exactly that size (ASan sees any overrun).
  for (size_t n = 0; n <= kDsdtBody.size(); n++) {
    std::vector<uint8_t> cut(kDsdtBody.begin(), kDsdtBody.begin() + n);
    uint8_t typ;
    Devices(cut);
    aml_find_s5(cut.data(), cut.size(), &typ);
  }
}

TEST(AmlHostile, PackageLengthPastTheTableIsClamped) {
  // Device (DEVX) whose PkgLength (0x3F) runs past the 12-byte table.
  const std::vector<uint8_t> aml = {0x5b, 0x82, 0x3f, 'D', 'E', 'V', 'X',
                                    0x08, '_',  'H',  'I', 'D', 0x0d};

  std::vector<Found> d = Devices(aml);

  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].name, "DEVX");
  EXPECT_EQ(d[0].hid, "");
}

std::vector<uint8_t> Fadt(size_t len) {
  std::vector<uint8_t> t(len, 0);
  std::memcpy(t.data(), "FACP", 4);
  if (len >= 44) t[41] = 0x10;    // DSDT 0x1000
  if (len >= 116) t[114] = 0x10;  // Flags bit 20: HW_REDUCED_ACPI
  if (len >= 256) {
    // SLEEP_CONTROL_REG: system memory, 8 bits, byte access, at 0xfea00200.
    const uint8_t gas[12] = {0, 8, 0, 1, 0x00, 0x02, 0xa0, 0xfe, 0, 0, 0, 0};
    std::memcpy(&t[244], gas, sizeof(gas));
  }
  return t;
}

TEST(Fadt, SleepControlRegisterOfAnAcpi6Fadt) {
  std::vector<uint8_t> t = Fadt(276);
  acpi_fadt f;

  acpi_parse_fadt(t.data(), t.size(), &f);

  EXPECT_TRUE(f.hw_reduced);
  EXPECT_EQ(f.dsdt, 0x1000u);
  EXPECT_EQ(f.sleep_control.space, ACPI_GAS_MEMORY);
  EXPECT_EQ(f.sleep_control.bit_width, 8);
  EXPECT_EQ(f.sleep_control.address, 0xfea00200u);
}

TEST(Fadt, OlderFadtHasNoSleepControlRegister) {
  std::vector<uint8_t> t = Fadt(116);
  acpi_fadt f;

  acpi_parse_fadt(t.data(), t.size(), &f);

  EXPECT_TRUE(f.hw_reduced);
  EXPECT_EQ(f.sleep_control.address, 0u);
}

TEST(Fadt, TooShortForAnythingYieldsZeroes) {
  std::vector<uint8_t> t = Fadt(36);
  acpi_fadt f;

  acpi_parse_fadt(t.data(), t.size(), &f);

  EXPECT_EQ(f.dsdt, 0u);
  EXPECT_FALSE(f.hw_reduced);
}

struct Window {
  bool ok;
  uint64_t size, base;
  uint32_t irq;
};

Window ParseToken(const std::string& s) {
  Window w{};
  w.ok = cmdline_parse_virtio_mmio(s.data(), s.size(), &w.size, &w.base, &w.irq);
  return w;
}

TEST(VirtioMmioToken, KeelLayout) {
  Window w = ParseToken("4K@0xd0000000:5");

  ASSERT_TRUE(w.ok);
  EXPECT_EQ(w.size, 4096u);
  EXPECT_EQ(w.base, 0xd0000000u);
  EXPECT_EQ(w.irq, 5u);
}

TEST(VirtioMmioToken, QemuHexSizeAndLinuxDeviceId) {
  Window w = ParseToken("0x200@0xfeb00e00:12:3");

  ASSERT_TRUE(w.ok);
  EXPECT_EQ(w.size, 0x200u);
  EXPECT_EQ(w.base, 0xfeb00e00u);
  EXPECT_EQ(w.irq, 12u);
}

TEST(VirtioMmioToken, DecimalSizeAndMegabyteSuffix) {
  EXPECT_EQ(ParseToken("512@0xd0001000:6").size, 512u);
  EXPECT_EQ(ParseToken("1M@0xd0001000:6").size, 1u << 20);
}

TEST(VirtioMmioToken, MalformedTokensAreRejected) {
  EXPECT_FALSE(ParseToken("").ok);
  EXPECT_FALSE(ParseToken("4K").ok);
  EXPECT_FALSE(ParseToken("4K@0xd0000000").ok);
  EXPECT_FALSE(ParseToken("@0xd0000000:5").ok);
  EXPECT_FALSE(ParseToken("0@0xd0000000:5").ok);
  EXPECT_FALSE(ParseToken("4X@0xd0000000:5").ok);
  EXPECT_FALSE(ParseToken("4K@nowhere:5").ok);
  EXPECT_FALSE(ParseToken("4K@0xd0000000:").ok);
  EXPECT_FALSE(ParseToken("4K@0xfffffffffffff800:5").ok);  // wraps
  EXPECT_FALSE(ParseToken("99999999999999999999G@0x0:5").ok);
}

TEST(ScenarioArgs, NameParamAndKeyValues) {
  const std::string spec = "blk-bench:x,qd=32,rw=randread,flag";
  scenario_args a;

  ASSERT_EQ(scenario_args_parse(spec.data(), spec.size(), &a), nullptr);

  EXPECT_STREQ(a.name, "blk-bench");
  EXPECT_STREQ(a.param, "x");
  EXPECT_STREQ(scenario_arg(&a, "rw"), "randread");
  EXPECT_STREQ(scenario_arg(&a, "flag"), "");
  bool ok = true;
  EXPECT_EQ(scenario_arg_u64(&a, "qd", 1, &ok), 32u);
  EXPECT_EQ(scenario_arg_u64(&a, "missing", 7, &ok), 7u);
  EXPECT_TRUE(ok);
}

TEST(ScenarioArgs, NonNumberIsReported) {
  const std::string spec = "blk-rw,disk=one";
  scenario_args a;
  ASSERT_EQ(scenario_args_parse(spec.data(), spec.size(), &a), nullptr);
  bool ok = true;

  EXPECT_EQ(scenario_arg_u64(&a, "disk", 0, &ok), 0u);
  EXPECT_FALSE(ok);
}

TEST(ParseU64, DecimalHexAndOverflow) {
  uint64_t v = 0;

  EXPECT_TRUE(parse_u64("18446744073709551615", 20, &v));
  EXPECT_EQ(v, UINT64_MAX);
  EXPECT_FALSE(parse_u64("18446744073709551616", 20, &v));
  EXPECT_TRUE(parse_u64("0xFEB00E00", 10, &v));
  EXPECT_EQ(v, 0xFEB00E00u);
  EXPECT_FALSE(parse_u64("0x", 2, &v));
  EXPECT_FALSE(parse_u64("12a", 3, &v));
}

}  // namespace
