#include "vmm/boot/mptable.h"

#include <map>

#include "gtest/gtest.h"
#include "tests/vmm/boot/test_util.h"
#include "vmm/boot/acpi.h"
#include "vmm/layout.h"

namespace keel::vmm::mptable {
namespace {

using testing::Val;
using testing::WithVcpus;

class MpTableTest : public testing::GuestMemoryTest {
 protected:
  std::vector<uint8_t> ConfigTable() {
    const auto fp = Read<FloatingPointer>(layout::kEbdaStart);
    const auto h = Read<ConfigHeader>(fp.config_table);
    std::vector<uint8_t> bytes(h.base_table_length);
    EXPECT_TRUE(mem_->Read(fp.config_table, bytes).ok());
    return bytes;
  }
  // Entries of the configuration table, by type.
  std::map<uint8_t, std::vector<InterruptEntry>> Entries() {
    const std::vector<uint8_t> t = ConfigTable();
    std::map<uint8_t, std::vector<InterruptEntry>> out;
    size_t off = sizeof(ConfigHeader);
    while (off < t.size()) {
      InterruptEntry e;  // every entry is at least 8 bytes; keep the first 8
      memcpy(&e, t.data() + off, sizeof(e));
      out[e.type].push_back(e);
      off += e.type == kProcessor ? sizeof(ProcessorEntry) : 8;
    }
    return out;
  }
};

const PlatformConfig kConfig{
    .vcpus = 2,
    .virtio_devices = {{0xd0000000, 0x1000, 5}, {0xd0001000, 0x1000, 17}},
};

TEST_F(MpTableTest, FloatingPointerAndTableAreChecksummed) {
  ASSERT_TRUE(WriteMpTable(*mem_, kConfig).value());

  const auto fp = Read<FloatingPointer>(layout::kEbdaStart);
  const std::vector<uint8_t> table = ConfigTable();

  EXPECT_EQ(std::string(fp.signature, 4), "_MP_");
  EXPECT_EQ(Val(fp.length), 1);
  EXPECT_EQ(Val(fp.spec_rev), 4);
  EXPECT_EQ(acpi::Checksum(reinterpret_cast<const uint8_t*>(&fp), sizeof(fp)), 0);
  EXPECT_EQ(Val(fp.config_table), layout::kEbdaStart + 16);
  EXPECT_EQ(std::string(table.begin(), table.begin() + 4), "PCMP");
  EXPECT_EQ(acpi::Checksum(table.data(), table.size()), 0);
  EXPECT_EQ(Val(Read<ConfigHeader>(fp.config_table).local_apic_address), layout::kLapicAddr);
}

TEST_F(MpTableTest, ListsProcessorsBusIoApicAndInterrupts) {
  ASSERT_TRUE(WriteMpTable(*mem_, kConfig).value());
  const auto fp = Read<FloatingPointer>(layout::kEbdaStart);

  auto entries = Entries();
  const auto cpu0 = Read<ProcessorEntry>(fp.config_table + sizeof(ConfigHeader));
  const auto cpu1 = Read<ProcessorEntry>(fp.config_table + sizeof(ConfigHeader) + 20);

  EXPECT_EQ(entries[kProcessor].size(), 2u);
  EXPECT_EQ(Val(cpu0.apic_id), 0);
  EXPECT_EQ(Val(cpu0.cpu_flags), 0x3);  // enabled, bootstrap processor
  EXPECT_EQ(Val(cpu1.apic_id), 1);
  EXPECT_EQ(Val(cpu1.cpu_flags), 0x1);
  EXPECT_EQ(entries[kBus].size(), 1u);
  ASSERT_EQ(entries[kIoApic].size(), 1u);
  EXPECT_EQ(Val(entries[kIoApic][0].interrupt_type), IoApicId(2));  // 2nd byte: the IOAPIC id
  // ISA IRQs 0-15 except the cascade, plus virtio IRQ 17 (IRQ 5 is already an ISA entry).
  ASSERT_EQ(entries[kIoInterrupt].size(), 16u);
  EXPECT_EQ(Val(entries[kIoInterrupt][0].source_irq), 0);
  EXPECT_EQ(Val(entries[kIoInterrupt][0].dest_pin), 2);
  EXPECT_EQ(Val(entries[kIoInterrupt][15].source_irq), 17);
  EXPECT_EQ(Val(entries[kIoInterrupt][15].dest_pin), 17);
  ASSERT_EQ(entries[kLocalInterrupt].size(), 2u);
  EXPECT_EQ(Val(entries[kLocalInterrupt][0].interrupt_type), kIntTypeExtInt);
  EXPECT_EQ(Val(entries[kLocalInterrupt][0].dest_pin), 0);
  EXPECT_EQ(Val(entries[kLocalInterrupt][1].interrupt_type), kIntTypeNmi);
  EXPECT_EQ(Val(entries[kLocalInterrupt][1].dest_pin), 1);
  EXPECT_EQ(Val(Read<ConfigHeader>(fp.config_table).entry_count), 2 + 1 + 1 + 16 + 2);
}

TEST_F(MpTableTest, FitsTheLargestVcpuCount) {
  auto written = WriteMpTable(*mem_, WithVcpus(kMaxMpTableVcpus));

  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_TRUE(*written);
  EXPECT_EQ(acpi::Checksum(ConfigTable().data(), ConfigTable().size()), 0);
}

TEST_F(MpTableTest, IsSkippedAbove254Vcpus) {
  auto written = WriteMpTable(*mem_, WithVcpus(kMaxMpTableVcpus + 1));

  ASSERT_TRUE(written.ok());
  EXPECT_FALSE(*written);
  EXPECT_EQ(Read<uint32_t>(layout::kEbdaStart), 0u);
}

}  // namespace
}  // namespace keel::vmm::mptable
