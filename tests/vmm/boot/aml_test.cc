// Encodings checked against ACPI 6.5 §20 (AML) and §6.4 (resource descriptors), byte by byte.
#include "vmm/boot/aml.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace keel::vmm::aml {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;

TEST(AmlTest, PkgLengthUsesOneToFourBytes) {
  EXPECT_THAT(PkgLength(10), ElementsAre(11));
  EXPECT_THAT(PkgLength(62), ElementsAre(63));
  // 63 + 2 = 65 = 0x41: lead byte 0b01 << 6 | 0x1, then 0x41 >> 4.
  EXPECT_THAT(PkgLength(63), ElementsAre(0x41, 0x04));
  // 0x1234 + 3 = 0x1237: two follow bytes.
  EXPECT_THAT(PkgLength(0x1234), ElementsAre(0x87, 0x23, 0x01));
  // 0x123456 + 4 = 0x12345a: three follow bytes.
  EXPECT_THAT(PkgLength(0x123456), ElementsAre(0xca, 0x45, 0x23, 0x01));
}

TEST(AmlTest, NameStringsEncodeRootAndMultiSegmentPaths) {
  EXPECT_THAT(NameString("_HID"), ElementsAre('_', 'H', 'I', 'D'));
  EXPECT_THAT(NameString("V0"), ElementsAre('V', '0', '_', '_'));
  EXPECT_THAT(NameString("\\_S5_"), ElementsAre('\\', '_', 'S', '5', '_'));
  EXPECT_THAT(NameString("\\_SB_.COM1"),
              ElementsAre('\\', 0x2e, '_', 'S', 'B', '_', 'C', 'O', 'M', '1'));
  EXPECT_THAT(NameString("A.B.C"),
              ElementsAre(0x2f, 3, 'A', '_', '_', '_', 'B', '_', '_', '_', 'C', '_', '_', '_'));
  EXPECT_THAT(NameString("a-b"), ElementsAre('_', '_', '_', '_'));
}

TEST(AmlTest, IntegersUseTheSmallestEncoding) {
  EXPECT_THAT(Integer(0), ElementsAre(0x00));
  EXPECT_THAT(Integer(1), ElementsAre(0x01));
  EXPECT_THAT(Integer(5), ElementsAre(0x0a, 5));
  EXPECT_THAT(Integer(0x1234), ElementsAre(0x0b, 0x34, 0x12));
  EXPECT_THAT(Integer(0xd0000000), ElementsAre(0x0c, 0, 0, 0, 0xd0));
  EXPECT_THAT(Integer(0x100000000), ElementsAre(0x0e, 0, 0, 0, 0, 1, 0, 0, 0));
}

TEST(AmlTest, StringsAndEisaIds) {
  EXPECT_THAT(String("LNRO0005"), ElementsAre(0x0d, 'L', 'N', 'R', 'O', '0', '0', '0', '5', 0));
  EXPECT_THAT(EisaId("PNP0501"), ElementsAre(0x0c, 0x41, 0xd0, 0x05, 0x01));
  EXPECT_THAT(EisaId("PNP0A03"), ElementsAre(0x0c, 0x41, 0xd0, 0x0a, 0x03));
}

TEST(AmlTest, NamePackageScopeAndDevice) {
  EXPECT_THAT(Name("_UID", Integer(0)), ElementsAre(0x08, '_', 'U', 'I', 'D', 0x00));
  EXPECT_THAT(Package({Integer(5), Integer(0)}), ElementsAre(0x12, 0x05, 0x02, 0x0a, 5, 0x00));
  EXPECT_THAT(Device("COM1", {Name("_UID", Integer(0))}),
              ElementsAre(0x5b, 0x82, 11, 'C', 'O', 'M', '1', 0x08, '_', 'U', 'I', 'D', 0x00));
  EXPECT_THAT(Scope("\\_SB_", {}), ElementsAre(0x10, 6, '\\', '_', 'S', 'B', '_'));
}

TEST(AmlTest, ResourceDescriptors) {
  EXPECT_THAT(Io(0x3f8, 0x3f8, 0, 8), ElementsAre(0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0, 8));
  EXPECT_THAT(IrqNoFlags(4), ElementsAre(0x22, 0x10, 0x00));
  EXPECT_THAT(IrqNoFlags(12), ElementsAre(0x22, 0x00, 0x10));
  EXPECT_THAT(Memory32Fixed(true, 0xd0000000, 0x1000),
              ElementsAre(0x86, 9, 0, 1, 0, 0, 0, 0xd0, 0, 0x10, 0, 0));
  EXPECT_THAT(ExtendedInterrupt(5, {}), ElementsAre(0x89, 6, 0, 0x03, 1, 5, 0, 0, 0));
  EXPECT_THAT(ExtendedInterrupt(17, {.edge = false, .active_low = true, .shared = true}),
              ElementsAre(0x89, 6, 0, 0x0d, 1, 17, 0, 0, 0));
}

TEST(AmlTest, ResourceTemplateIsABufferClosedByAnEndTag) {
  const Bytes rt = ResourceTemplate({IrqNoFlags(4)});

  // BufferOp, PkgLength, BufferSize (5), IRQ descriptor, End Tag + checksum.
  EXPECT_THAT(rt, ElementsAreArray({0x11, 8, 0x0a, 5, 0x22, 0x10, 0x00, 0x79, 0x00}));
}

}  // namespace
}  // namespace keel::vmm::aml
