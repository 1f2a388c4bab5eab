#include "vmm/boot/aml.h"

namespace keel::vmm::aml {

namespace {

// Opcodes (ACPI 6.5 §20.3).
constexpr uint8_t kZeroOp = 0x00;
constexpr uint8_t kOneOp = 0x01;
constexpr uint8_t kNameOp = 0x08;
constexpr uint8_t kBytePrefix = 0x0a;
constexpr uint8_t kWordPrefix = 0x0b;
constexpr uint8_t kDWordPrefix = 0x0c;
constexpr uint8_t kStringPrefix = 0x0d;
constexpr uint8_t kQWordPrefix = 0x0e;
constexpr uint8_t kScopeOp = 0x10;
constexpr uint8_t kBufferOp = 0x11;
constexpr uint8_t kPackageOp = 0x12;
constexpr uint8_t kMethodOp = 0x14;
constexpr uint8_t kNotifyOp = 0x86;
constexpr uint8_t kExtOpPrefix = 0x5b;
constexpr uint8_t kDeviceOp = 0x82;  // after kExtOpPrefix
constexpr uint8_t kRootChar = '\\';
constexpr uint8_t kDualNamePrefix = 0x2e;
constexpr uint8_t kMultiNamePrefix = 0x2f;

// Resource descriptor tags (§6.4.2, §6.4.3).
constexpr uint8_t kIrqTag2 = 0x22;        // small item 0x4, length 2
constexpr uint8_t kIoTag = 0x47;          // small item 0x8, length 7
constexpr uint8_t kEndTag = 0x79;         // small item 0xF, length 1
constexpr uint8_t kMemory32Fixed = 0x86;  // large item 0x06
constexpr uint8_t kExtendedIrq = 0x89;    // large item 0x09

void Append(Bytes& out, const Bytes& in) { out.insert(out.end(), in.begin(), in.end()); }

void AppendLe(Bytes& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

bool IsNameChar(char c) { return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'; }

void AppendNameSeg(Bytes& out, std::string_view seg) {
  for (size_t i = 0; i < 4; ++i) {
    const char c = i < seg.size() ? seg[i] : '_';
    out.push_back(static_cast<uint8_t>(IsNameChar(c) ? c : '_'));
  }
}

// Wraps `body` as opcode(s) + PkgLength + body.
Bytes WithPkgLength(std::initializer_list<uint8_t> opcode, const Bytes& body) {
  Bytes out(opcode);
  Append(out, PkgLength(body.size()));
  Append(out, body);
  return out;
}

}  // namespace

Bytes PkgLength(size_t body_len) {
  // One lead byte holds 6 bits; with 1-3 follow bytes it holds 4 bits + 8 per follow byte.
  if (body_len + 1 < (1u << 6)) return {static_cast<uint8_t>(body_len + 1)};
  for (uint8_t follow = 1; follow <= 3; ++follow) {
    const size_t total = body_len + 1 + follow;
    if (total < (size_t{1} << (4 + 8 * follow))) {
      Bytes out{static_cast<uint8_t>((follow << 6) | (total & 0xf))};
      for (uint8_t i = 0; i < follow; ++i)
        out.push_back(static_cast<uint8_t>(total >> (4 + 8 * i)));
      return out;
    }
  }
  return {0};  // unreachable for any table Keel builds (checked by callers' size limits)
}

Bytes NameString(std::string_view path) {
  Bytes out;
  if (!path.empty() && path.front() == '\\') {
    out.push_back(kRootChar);
    path.remove_prefix(1);
  }
  std::vector<std::string_view> segs;
  while (!path.empty()) {
    const size_t dot = path.find('.');
    segs.push_back(path.substr(0, dot));
    path = dot == std::string_view::npos ? std::string_view() : path.substr(dot + 1);
  }
  if (segs.size() == 2) {
    out.push_back(kDualNamePrefix);
  } else if (segs.size() > 2) {
    out.push_back(kMultiNamePrefix);
    out.push_back(static_cast<uint8_t>(segs.size()));
  }
  if (segs.empty()) out.push_back(0);  // NullName
  for (std::string_view seg : segs) AppendNameSeg(out, seg);
  return out;
}

Bytes Integer(uint64_t value) {
  if (value == 0) return {kZeroOp};
  if (value == 1) return {kOneOp};
  Bytes out;
  if (value <= UINT8_MAX) {
    out.push_back(kBytePrefix);
    AppendLe(out, value, 1);
  } else if (value <= UINT16_MAX) {
    out.push_back(kWordPrefix);
    AppendLe(out, value, 2);
  } else if (value <= UINT32_MAX) {
    out.push_back(kDWordPrefix);
    AppendLe(out, value, 4);
  } else {
    out.push_back(kQWordPrefix);
    AppendLe(out, value, 8);
  }
  return out;
}

Bytes String(std::string_view s) {
  Bytes out{kStringPrefix};
  for (char c : s) out.push_back(c == 0 ? '?' : static_cast<uint8_t>(c));
  out.push_back(0);
  return out;
}

Bytes EisaId(std::string_view id) {
  // ACPI 6.5 §19.6.35 EISAID: three uppercase letters (5 bits each, 'A' = 1) and four hex
  // digits, stored as a big-endian 32-bit value (so its bytes read "PNP" + "0501" in order).
  auto hex = [](char c) -> uint32_t {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return 0;
  };
  auto letter = [&](size_t i) -> uint32_t { return i < id.size() ? id[i] & 0x1f : 0; };
  auto digit = [&](size_t i) -> uint32_t { return i < id.size() ? hex(id[i]) : 0; };
  const uint32_t v = (letter(0) << 26) | (letter(1) << 21) | (letter(2) << 16) | (digit(3) << 12) |
                     (digit(4) << 8) | (digit(5) << 4) | digit(6);
  Bytes out{kDWordPrefix};
  AppendLe(out, __builtin_bswap32(v), 4);
  return out;
}

Bytes Package(const std::vector<Bytes>& elements) {
  Bytes body{static_cast<uint8_t>(elements.size())};  // NumElements (<= 255 here)
  for (const Bytes& e : elements) Append(body, e);
  return WithPkgLength({kPackageOp}, body);
}

Bytes Name(std::string_view name, const Bytes& value) {
  Bytes out{kNameOp};
  Append(out, NameString(name));
  Append(out, value);
  return out;
}

Bytes Scope(std::string_view path, const std::vector<Bytes>& terms) {
  Bytes body = NameString(path);
  for (const Bytes& t : terms) Append(body, t);
  return WithPkgLength({kScopeOp}, body);
}

Bytes Device(std::string_view name, const std::vector<Bytes>& terms) {
  Bytes body = NameString(name);
  for (const Bytes& t : terms) Append(body, t);
  return WithPkgLength({kExtOpPrefix, kDeviceOp}, body);
}

Bytes Method(std::string_view name, uint8_t arg_count, const std::vector<Bytes>& terms) {
  Bytes body = NameString(name);
  body.push_back(static_cast<uint8_t>(arg_count & 0x7));  // MethodFlags: not serialized
  for (const Bytes& t : terms) Append(body, t);
  return WithPkgLength({kMethodOp}, body);
}

Bytes Notify(std::string_view path, uint64_t value) {
  Bytes out = {kNotifyOp};
  Append(out, NameString(path));
  Append(out, Integer(value));
  return out;
}

Bytes ResourceTemplate(const std::vector<Bytes>& descriptors) {
  Bytes data;
  for (const Bytes& d : descriptors) Append(data, d);
  data.push_back(kEndTag);
  data.push_back(0);  // checksum 0: "treat as if the checksum were correct" (§6.4.2.9)
  Bytes body = Integer(data.size());  // BufferSize
  Append(body, data);
  return WithPkgLength({kBufferOp}, body);
}

Bytes Io(uint16_t min, uint16_t max, uint8_t align, uint8_t len) {
  Bytes out{kIoTag, 0x01};  // information: bit 0 = decodes 16 address lines
  AppendLe(out, min, 2);
  AppendLe(out, max, 2);
  out.push_back(align);
  out.push_back(len);
  return out;
}

Bytes IrqNoFlags(uint8_t irq) {
  Bytes out{kIrqTag2};
  AppendLe(out, irq < 16 ? (1u << irq) : 0, 2);
  return out;
}

Bytes Memory32Fixed(bool read_write, uint32_t base, uint32_t len) {
  Bytes out{kMemory32Fixed};
  AppendLe(out, 9, 2);  // length of the rest
  out.push_back(read_write ? 1 : 0);
  AppendLe(out, base, 4);
  AppendLe(out, len, 4);
  return out;
}

Bytes ExtendedInterrupt(uint32_t irq, InterruptFlags flags) {
  Bytes out{kExtendedIrq};
  AppendLe(out, 6, 2);  // flags + count + one 32-bit interrupt number
  // Bit 0 consumer, bit 1 edge-triggered, bit 2 active-low, bit 3 shared.
  out.push_back(static_cast<uint8_t>(0x01 | (flags.edge ? 0x02 : 0) |
                                     (flags.active_low ? 0x04 : 0) | (flags.shared ? 0x08 : 0)));
  out.push_back(1);
  AppendLe(out, irq, 4);
  return out;
}

}  // namespace keel::vmm::aml
