// ACPI table reading (see acpi.h). Offsets cite ACPI 6.5 §5.2 tables.
#include "acpi.h"

#include "arch.h"
#include "lib.h"
#include "printf.h"

#define MAPPED_LIMIT 0x100000000ULL  // boot.S identity-maps the first 4 GiB
#define TABLE_MAX_LEN (16u << 20)
#define HEADER_LEN 36  // System Description Table Header (§5.2.6)

static const uint8_t* ptr(uint64_t addr) { return phys_ptr(addr); }
static bool mapped(uint64_t addr, uint64_t len) {
  return addr != 0 && addr < MAPPED_LIMIT && len <= MAPPED_LIMIT - addr;
}
static uint16_t le16(const uint8_t* p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t* p) { return le16(p) | (uint32_t)le16(p + 2) << 16; }
static uint64_t le64(const uint8_t* p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }

static uint8_t sum(const uint8_t* p, size_t n) {
  uint8_t s = 0;
  for (size_t i = 0; i < n; i++) s = (uint8_t)(s + p[i]);
  return s;
}

// RSDP (§5.2.5.3): "RSD PTR " @0, checksum of the first 20 bytes @8, OEMID @9, revision
// @15, RSDT u32 @16; revision >= 2: length u32 @20, XSDT u64 @24, extended checksum @32.
static bool rsdp_valid(uint64_t a) {
  if (!mapped(a, 36) || memcmp(ptr(a), "RSD PTR ", 8) != 0 || sum(ptr(a), 20) != 0) return false;
  if (ptr(a)[15] < 2) return true;
  uint32_t len = le32(ptr(a) + 20);
  return len >= 36 && len <= 4096 && mapped(a, len) && sum(ptr(a), len) == 0;
}

static uint64_t scan_rsdp(uint64_t start, uint64_t end) {
  for (uint64_t a = start; a + 36 <= end; a += 16) {
    if (rsdp_valid(a)) return a;
  }
  return 0;
}

// §5.2.5.1: the first KiB of the EBDA (its segment is the word at 0x40E), then the BIOS
// area 0xE0000-0xFFFFF.
static uint64_t find_rsdp(uint64_t hint) {
  if (hint && rsdp_valid(hint)) return hint;
  uint64_t ebda = (uint64_t)le16(ptr(0x40E)) << 4;
  if (ebda >= 0x80000 && ebda < 0xA0000) {
    uint64_t a = scan_rsdp(ebda, ebda + 1024);
    if (a) return a;
  }
  return scan_rsdp(0xE0000, 0x100000);
}

// Records the table at `addr` (if there is room) and checks its header and checksum.
static const char* add_table(struct acpi_info* a, uint64_t addr, struct acpi_table_ref** out,
                             char* err, size_t n) {
  if (!mapped(addr, HEADER_LEN))
    return fmt_error(err, n, "table pointer 0x%lx is not in the low 4 GiB", addr);
  uint32_t len = le32(ptr(addr) + 4);
  if (len < HEADER_LEN || len > TABLE_MAX_LEN || !mapped(addr, len))
    return fmt_error(err, n, "table %.4s at 0x%lx has a bad length %u", (const char*)ptr(addr),
                     addr, len);
  if (a->table_count == ACPI_MAX_TABLES)
    return fmt_error(err, n, "more than %d tables", ACPI_MAX_TABLES);
  struct acpi_table_ref* t = &a->tables[a->table_count++];
  memcpy(t->sig, ptr(addr), 4);
  t->sig[4] = '\0';
  t->addr = addr;
  t->len = len;
  t->checksum_ok = sum(ptr(addr), len) == 0;
  *out = t;
  if (!t->checksum_ok)
    return fmt_error(err, n, "table %s at 0x%lx has a bad checksum", t->sig, addr);
  return NULL;
}

// FADT (§5.2.9): acpi_parse_fadt reads the fields (DSDT, flags, sleep registers).
static const char* read_fadt(struct acpi_info* a, const struct acpi_table_ref* t, char* err,
                             size_t n) {
  struct acpi_fadt f;
  acpi_parse_fadt(ptr(t->addr), t->len, &f);
  a->hw_reduced = f.hw_reduced;
  a->sleep_control = f.sleep_control;
  if (!f.dsdt) return fmt_error(err, n, "the FADT gives no DSDT");
  a->dsdt = f.dsdt;
  return NULL;
}

// MADT (§5.2.12): local APIC address u32 @36, flags @40, then entries (type u8,
// length u8): 0 processor local APIC (apic_id @3, flags u32 @4), 1 I/O APIC (id @2,
// address u32 @4, GSI base u32 @8), 2 interrupt source override (source @3, GSI u32 @4,
// flags u16 @8), 9 processor local x2APIC (x2apic_id u32 @4, flags u32 @8).
static const char* read_madt(struct acpi_info* a, const struct acpi_table_ref* t, char* err,
                             size_t n) {
  const uint8_t* p = ptr(t->addr);
  if (t->len < 44) return fmt_error(err, n, "the MADT is too short (%u bytes)", t->len);
  a->lapic_addr = le32(p + 36);
  for (uint32_t off = 44; off + 2 <= t->len;) {
    uint8_t type = p[off], len = p[off + 1];
    if (len < 2 || off + len > t->len)
      return fmt_error(err, n, "MADT entry at offset %u has a bad length %u", off, len);
    const uint8_t* e = p + off;
    if ((type == 0 && len >= 8) || (type == 9 && len >= 16)) {
      if (a->cpu_count < ACPI_MAX_CPUS) {
        uint32_t flags = type == 0 ? le32(e + 4) : le32(e + 8);
        a->cpus[a->cpu_count++] =
            (struct acpi_cpu){type == 0 ? e[3] : le32(e + 4), (flags & 1) != 0, (flags & 2) != 0};
      }
    } else if (type == 1 && len >= 12) {
      if (a->ioapic_count < ACPI_MAX_IOAPICS)
        a->ioapics[a->ioapic_count++] = (struct acpi_ioapic){e[2], le32(e + 4), le32(e + 8)};
    } else if (type == 2 && len >= 10) {
      if (a->override_count < ACPI_MAX_OVERRIDES)
        a->overrides[a->override_count++] = (struct acpi_override){e[3], le32(e + 4), le16(e + 8)};
    }
    off += len;
  }
  return NULL;
}

const char* acpi_read(struct acpi_info* a, uint64_t hint, char* err, size_t n) {
  memset(a, 0, sizeof(*a));
  a->rsdp = find_rsdp(hint);
  if (!a->rsdp)
    return fmt_error(err, n, "no valid RSDP (hint 0x%lx, scanned 0xE0000-0xFFFFF)", hint);
  const uint8_t* r = ptr(a->rsdp);
  a->rsdp_revision = r[15];
  memcpy(a->oem_id, r + 9, 6);
  a->root_is_xsdt = a->rsdp_revision >= 2 && le64(r + 24) != 0;
  a->root = a->root_is_xsdt ? le64(r + 24) : le32(r + 16);

  struct acpi_table_ref* root;
  const char* e = add_table(a, a->root, &root, err, n);
  if (e) return e;
  if (memcmp(root->sig, a->root_is_xsdt ? "XSDT" : "RSDT", 4) != 0)
    return fmt_error(err, n, "the RSDP points at a %s, not an %s", root->sig,
                     a->root_is_xsdt ? "XSDT" : "RSDT");
  uint32_t entry_size = a->root_is_xsdt ? 8 : 4;
  uint64_t root_addr = root->addr;
  uint32_t entries = (root->len - HEADER_LEN) / entry_size;
  for (uint32_t i = 0; i < entries; i++) {
    const uint8_t* ent = ptr(root_addr) + HEADER_LEN + i * entry_size;
    uint64_t addr = entry_size == 8 ? le64(ent) : le32(ent);
    struct acpi_table_ref* t;
    if ((e = add_table(a, addr, &t, err, n))) return e;
    if (memcmp(t->sig, "FACP", 4) == 0 && (e = read_fadt(a, t, err, n))) return e;
    if (memcmp(t->sig, "APIC", 4) == 0 && (e = read_madt(a, t, err, n))) return e;
  }
  if (!a->dsdt) return fmt_error(err, n, "no FADT (FACP) in the %s", root->sig);
  struct acpi_table_ref* dsdt;
  if ((e = add_table(a, a->dsdt, &dsdt, err, n))) return e;
  if (memcmp(dsdt->sig, "DSDT", 4) != 0)
    return fmt_error(err, n, "the FADT's DSDT pointer leads to a %s", dsdt->sig);
  a->dsdt_len = dsdt->len;
  a->has_s5 = aml_find_s5(ptr(a->dsdt) + HEADER_LEN, a->dsdt_len - HEADER_LEN, &a->s5_slp_typ);
  if (a->cpu_count == 0) return fmt_error(err, n, "no MADT (APIC) with CPUs in the %s", root->sig);
  return NULL;
}

uint32_t acpi_isa_irq_to_gsi(const struct acpi_info* a, uint8_t irq, uint16_t* flags) {
  for (int i = 0; i < a->override_count; i++) {
    if (a->overrides[i].irq == irq) {
      *flags = a->overrides[i].flags;
      return a->overrides[i].gsi;
    }
  }
  *flags = 0;
  return irq;
}

void acpi_dsdt_devices(const struct acpi_info* a, aml_device_fn fn, void* ctx) {
  if (!a->dsdt || a->dsdt_len <= HEADER_LEN) return;
  aml_for_each_device(ptr(a->dsdt) + HEADER_LEN, a->dsdt_len - HEADER_LEN, fn, ctx);
}
