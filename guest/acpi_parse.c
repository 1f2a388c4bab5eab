// Byte-buffer ACPI parsing (see acpi_parse.h). Table offsets cite ACPI 6.5.
#include "acpi_parse.h"

static uint16_t le16(const uint8_t* p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t* p) { return le16(p) | (uint32_t)le16(p + 2) << 16; }
static uint64_t le64(const uint8_t* p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }

static bool bytes_eq(const uint8_t* p, const char* s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (p[i] != (uint8_t)s[i]) return false;
  }
  return true;
}

static void zero(void* p, size_t n) {
  volatile uint8_t* b = p;  // volatile: no call to memset, which the host test may not want
  for (size_t i = 0; i < n; i++) b[i] = 0;
}

// --- FADT (§5.2.9, Table 5.9) -----------------------------------------------------------

static void read_gas(const uint8_t* p, struct acpi_gas* g) {
  g->space = p[0];
  g->bit_width = p[1];
  g->bit_offset = p[2];
  g->access_size = p[3];
  g->address = le64(p + 4);
}

// DSDT u32 @40, Flags u32 @112, X_DSDT u64 @140, SLEEP_CONTROL_REG GAS @244,
// SLEEP_STATUS_REG GAS @256.
void acpi_parse_fadt(const uint8_t* p, size_t len, struct acpi_fadt* out) {
  zero(out, sizeof(*out));
  if (len >= 116) out->hw_reduced = (le32(p + 112) >> 20) & 1;
  if (len >= 148) out->dsdt = le64(p + 140);
  if (!out->dsdt && len >= 44) out->dsdt = le32(p + 40);
  if (len >= 256) read_gas(p + 244, &out->sleep_control);
  if (len >= 268) read_gas(p + 256, &out->sleep_status);
}

// --- AML names and packages (§20.2) -----------------------------------------------------

#define AML_NAME_OP 0x08
#define AML_BUFFER_OP 0x11
#define AML_PACKAGE_OP 0x12
#define AML_METHOD_OP 0x14
#define AML_RETURN_OP 0xA4
#define AML_EXT_PREFIX 0x5B
#define AML_DEVICE_OP 0x82  // after AML_EXT_PREFIX

size_t aml_pkg_length(const uint8_t* p, const uint8_t* end, uint32_t* len) {
  if (p >= end) return 0;
  size_t extra = p[0] >> 6;
  if (extra > (size_t)(end - p) - 1) return 0;
  if (extra == 0) {
    *len = p[0] & 0x3F;
    return 1;
  }
  uint32_t v = p[0] & 0x0F;
  for (size_t i = 0; i < extra; i++) v |= (uint32_t)p[1 + i] << (4 + 8 * i);
  *len = v;
  return 1 + extra;
}

static bool lead_name_char(uint8_t c) { return (c >= 'A' && c <= 'Z') || c == '_'; }

size_t aml_name_string(const uint8_t* p, const uint8_t* end, char* out, size_t cap) {
  const uint8_t* s = p;
  size_t o = 0;
  if (cap == 0) return 0;
  while (s < end && (*s == '\\' || *s == '^')) {
    if (o + 1 < cap) out[o++] = (char)*s;
    s++;
  }
  if (s >= end) return 0;
  size_t segs = 1;
  if (*s == 0x00) {
    segs = 0, s++;
  } else if (*s == 0x2E) {  // DualNamePrefix
    segs = 2, s++;
  } else if (*s == 0x2F) {  // MultiNamePrefix SegCount
    if (end - s < 2) return 0;
    segs = s[1];
    s += 2;
  }
  for (size_t i = 0; i < segs; i++) {
    if (end - s < 4 || !lead_name_char(s[0])) return 0;
    if (i && o + 1 < cap) out[o++] = '.';
    for (int k = 0; k < 4 && o + 1 < cap; k++) out[o++] = (char)s[k];
    s += 4;
  }
  out[o] = '\0';
  return (size_t)(s - p);
}

// ComputationalData integers (§20.2.3): ZeroOp, OneOp, OnesOp, Byte/Word/DWord/QWordConst.
static size_t aml_integer(const uint8_t* p, const uint8_t* end, uint64_t* v) {
  if (p >= end) return 0;
  size_t avail = (size_t)(end - p);
  switch (p[0]) {
    case 0x00:
      *v = 0;
      return 1;
    case 0x01:
      *v = 1;
      return 1;
    case 0xFF:
      *v = ~0ULL;
      return 1;
    case 0x0A:
      if (avail < 2) return 0;
      *v = p[1];
      return 2;
    case 0x0B:
      if (avail < 3) return 0;
      *v = le16(p + 1);
      return 3;
    case 0x0C:
      if (avail < 5) return 0;
      *v = le32(p + 1);
      return 5;
    case 0x0E:
      if (avail < 9) return 0;
      *v = le64(p + 1);
      return 9;
    default:
      return 0;
  }
}

static bool is_device_op(const uint8_t* p, const uint8_t* end) {
  return end - p >= 2 && p[0] == AML_EXT_PREFIX && p[1] == AML_DEVICE_OP;
}

static void eisa_id_text(uint32_t v, char out[8]) {
  const char* hex = "0123456789ABCDEF";
  uint8_t b0 = v & 0xFF, b1 = (v >> 8) & 0xFF, b2 = (v >> 16) & 0xFF, b3 = v >> 24;
  out[0] = (char)('@' + ((b0 >> 2) & 0x1F));
  out[1] = (char)('@' + (((b0 & 0x3) << 3) | (b1 >> 5)));
  out[2] = (char)('@' + (b1 & 0x1F));
  out[3] = hex[b2 >> 4];
  out[4] = hex[b2 & 0xF];
  out[5] = hex[b3 >> 4];
  out[6] = hex[b3 & 0xF];
  out[7] = '\0';
}

// Name(_HID, ...) in [p, end), not inside a nested Device: a String (0x0D ... NUL) or an
// EISA ID (DWordPrefix 0x0C + 4 bytes).
static void find_hid(const uint8_t* p, const uint8_t* end, char* hid, size_t cap) {
  hid[0] = '\0';
  for (; end - p >= 6; p++) {
    if (is_device_op(p, end)) return;
    if (p[0] != AML_NAME_OP || !bytes_eq(p + 1, "_HID", 4)) continue;
    const uint8_t* d = p + 5;
    if (d[0] == 0x0D) {
      size_t i = 0;
      for (d++; d < end && *d && i + 1 < cap; d++) hid[i++] = (char)*d;
      hid[i] = '\0';
    } else if (d[0] == 0x0C && end - d >= 5 && cap >= 8) {
      eisa_id_text(le32(d + 1), hid);
    }
    return;
  }
}

void aml_for_each_device(const uint8_t* aml, size_t len, aml_device_fn fn, void* ctx) {
  if (aml == NULL || len == 0) return;  // (NULL + 0 is undefined in C)
  const uint8_t* end = aml + len;
  for (const uint8_t* p = aml; end - p > 2; p++) {
    if (!is_device_op(p, end)) continue;
    uint32_t pkg;
    size_t used = aml_pkg_length(p + 2, end, &pkg);
    if (!used) continue;
    // PkgLength counts itself and what follows; clamp a bad one to the table.
    const uint8_t* pkg_end = pkg < used || pkg > (size_t)(end - (p + 2)) ? end : p + 2 + pkg;
    struct aml_device dev;
    size_t name_len = aml_name_string(p + 2 + used, pkg_end, dev.name, sizeof(dev.name));
    if (!name_len) continue;  // not a real DeviceOp: bytes that happen to look like one
    dev.body = p + 2 + used + name_len;
    dev.body_len = (size_t)(pkg_end - dev.body);
    find_hid(dev.body, pkg_end, dev.hid, sizeof(dev.hid));
    fn(ctx, &dev);
  }
}

// --- Resource templates (§6.4) ----------------------------------------------------------

static void add_irq(struct aml_resources* r, uint32_t irq, bool level, bool active_low) {
  if (r->irq_count == 0) {
    r->irq_level = level;
    r->irq_active_low = active_low;
  }
  if (r->irq_count < AML_MAX_IRQS) r->irqs[r->irq_count++] = irq;
}

static void add_mem(struct aml_resources* r, uint64_t base, uint64_t len) {
  if (r->has_mem) return;
  r->has_mem = true;
  r->mem_base = base;
  r->mem_len = len;
}

// Small descriptors: tag byte = type << 3 | length. IRQ (type 4): mask u16, optional
// flags (bit 0: edge, bit 3: active low); End Tag (type 15).
// Large descriptors: tag byte 0x80 | type, length u16, data. 0x85 Memory32 (min @1,
// length @13), 0x86 Memory32Fixed (base @1, length @5), 0x87 DWord and 0x8A QWord address
// space (resource type @0: 0 = memory; minimum and length at type-specific offsets),
// 0x89 Extended Interrupt (flags @0: bit 1 edge, bit 2 active low; count @1; u32 each).
bool aml_parse_resources(const uint8_t* b, size_t len, struct aml_resources* r) {
  zero(r, sizeof(*r));
  size_t i = 0;
  while (i < len) {
    uint8_t tag = b[i];
    if (!(tag & 0x80)) {
      size_t n = tag & 7;
      uint8_t type = (tag >> 3) & 0xF;
      if (n > len - i - 1) return false;
      const uint8_t* d = b + i + 1;
      if (type == 0xF) return true;
      if (type == 0x4 && n >= 2) {
        uint16_t mask = le16(d);
        uint8_t flags = n >= 3 ? d[2] : 0x01;
        for (uint32_t irq = 0; irq < 16; irq++) {
          if (mask & (1u << irq)) add_irq(r, irq, !(flags & 1), (flags & 8) != 0);
        }
      }
      i += 1 + n;
      continue;
    }
    if (len - i < 3) return false;
    size_t n = le16(b + i + 1);
    if (n > len - i - 3) return false;
    const uint8_t* d = b + i + 3;
    if (tag == 0x85 && n >= 17) {
      add_mem(r, le32(d + 1), le32(d + 13));
    } else if (tag == 0x86 && n >= 9) {
      add_mem(r, le32(d + 1), le32(d + 5));
    } else if (tag == 0x87 && n >= 23 && d[0] == 0) {
      add_mem(r, le32(d + 7), le32(d + 19));
    } else if (tag == 0x8A && n >= 43 && d[0] == 0) {
      add_mem(r, le64(d + 11), le64(d + 35));
    } else if (tag == 0x89 && n >= 2) {
      uint8_t flags = d[0], count = d[1];
      for (size_t k = 0; k < count && 2 + 4 * k + 4 <= n; k++)
        add_irq(r, le32(d + 2 + 4 * k), !(flags & 2), (flags & 4) != 0);
    }
    i += 3 + n;
  }
  return true;  // a template cut short before its End Tag: keep what was read
}

// A Buffer literal at p (BufferOp PkgLength BufferSize ByteList): its bytes.
static bool buffer_literal(const uint8_t* p, const uint8_t* end, const uint8_t** data,
                           size_t* size) {
  if (p >= end || p[0] != AML_BUFFER_OP) return false;
  uint32_t pkg;
  size_t used = aml_pkg_length(p + 1, end, &pkg);
  if (!used || pkg < used || pkg > (size_t)(end - (p + 1))) return false;
  const uint8_t* pkg_end = p + 1 + pkg;
  uint64_t declared;
  size_t isz = aml_integer(p + 1 + used, pkg_end, &declared);
  if (!isz) return false;
  *data = p + 1 + used + isz;
  size_t have = (size_t)(pkg_end - *data);
  *size = declared < have ? (size_t)declared : have;
  return true;
}

bool aml_device_resources(const uint8_t* body, size_t len, struct aml_resources* out) {
  if (body == NULL || len == 0) return false;
  const uint8_t* end = body + len;
  const uint8_t* data;
  size_t size;
  for (const uint8_t* p = body; end - p >= 6; p++) {
    if (is_device_op(p, end)) return false;
    if (p[0] == AML_NAME_OP && bytes_eq(p + 1, "_CRS", 4)) {
      return buffer_literal(p + 5, end, &data, &size) && aml_parse_resources(data, size, out);
    }
    if (p[0] != AML_METHOD_OP) continue;
    uint32_t pkg;
    size_t used = aml_pkg_length(p + 1, end, &pkg);
    if (!used || pkg < used || pkg > (size_t)(end - (p + 1))) continue;
    const uint8_t* m_end = p + 1 + pkg;
    char name[8];
    size_t nl = aml_name_string(p + 1 + used, m_end, name, sizeof(name));
    if (nl == 0 || !bytes_eq((const uint8_t*)name, "_CRS", 4)) continue;
    for (const uint8_t* q = p + 1 + used + nl; m_end - q >= 2; q++) {
      if (q[0] == AML_RETURN_OP && buffer_literal(q + 1, m_end, &data, &size))
        return aml_parse_resources(data, size, out);
    }
    return false;
  }
  return false;
}

bool aml_find_s5(const uint8_t* aml, size_t len, uint8_t* slp_typ) {
  if (aml == NULL || len == 0) return false;
  const uint8_t* end = aml + len;
  for (const uint8_t* p = aml; end - p >= 8; p++) {
    if (p[0] != AML_NAME_OP) continue;
    const uint8_t* n = p + 1;
    if (n[0] == '\\') n++;
    if (end - n < 6 || !bytes_eq(n, "_S5_", 4) || n[4] != AML_PACKAGE_OP) continue;
    uint32_t pkg;
    size_t used = aml_pkg_length(n + 5, end, &pkg);
    if (!used || pkg < used || pkg > (size_t)(end - (n + 5))) continue;
    const uint8_t* pkg_end = n + 5 + pkg;
    const uint8_t* elems = n + 5 + used;  // NumElements, then the elements
    if (pkg_end - elems < 2 || elems[0] == 0) continue;
    uint64_t v;
    if (!aml_integer(elems + 1, pkg_end, &v)) continue;
    *slp_typ = (uint8_t)(v & 7);
    return true;
  }
  return false;
}
