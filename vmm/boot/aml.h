// A small ACPI Machine Language (AML) encoder for Keel's DSDT (ACPI 6.5 §20 "ACPI Machine
// Language (AML) Specification", §6.4 "Resource Data Types for ACPI").
//
// Each function returns the encoding of one AML term; terms nest by passing their bytes to
// the enclosing term. Only what a microVM DSDT needs is here: Scope, Device, Name, Method,
// Notify, integers, strings, EISAID, Package and resource templates with IO, IRQNoFlags, Memory32Fixed and
// Extended Interrupt descriptors.
//
// Example (the ASL on the left, AML via this file on the right):
//
//   Device (COM1) {                         aml::Device("COM1", {
//     Name (_HID, EisaId ("PNP0501"))         aml::Name("_HID", aml::EisaId("PNP0501")),
//     Name (_CRS, ResourceTemplate () {       aml::Name("_CRS", aml::ResourceTemplate({
//       IO (Decode16, 0x3F8, 0x3F8, 0, 8)        aml::Io(0x3f8, 0x3f8, 0, 8),
//       IRQNoFlags () {4} })                     aml::IrqNoFlags(4)})),
//   }                                        });
//
// Names are ACPI NameSegs of 1-4 characters from [A-Z0-9_] (shorter ones are padded with
// '_'), optionally as a dotted path with a leading '\' for the root ("\\_SB_.COM1"). Keel
// only passes names it generates; other characters are replaced by '_' rather than failing.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace keel::vmm::aml {

using Bytes = std::vector<uint8_t>;

// PkgLength (§20.2.4): the encoded length of a package whose contents are `body_len`
// bytes, the PkgLength bytes included. Bodies up to 2^28 - 5 bytes can be encoded.
Bytes PkgLength(size_t body_len);

Bytes NameString(std::string_view path);

// DataRefObject terms.
Bytes Integer(uint64_t value);  // ZeroOp/OneOp or the smallest Byte/Word/DWord/QWord const
Bytes String(std::string_view s);
Bytes EisaId(std::string_view id);  // "PNP0501" -> its 32-bit compressed form
Bytes Package(const std::vector<Bytes>& elements);

// Named objects.
Bytes Name(std::string_view name, const Bytes& value);
Bytes Scope(std::string_view path, const std::vector<Bytes>& terms);
Bytes Device(std::string_view name, const std::vector<Bytes>& terms);

// Method (name, arg_count) { terms } — §20.2.5.2 DefMethod, not serialized.
Bytes Method(std::string_view name, uint8_t arg_count, const std::vector<Bytes>& terms);
// Notify (path, value) — §20.2.5.3 DefNotify.
Bytes Notify(std::string_view path, uint64_t value);

// ResourceTemplate (a Buffer of resource descriptors closed by an End Tag, §6.4.2.9).
Bytes ResourceTemplate(const std::vector<Bytes>& descriptors);
// IO (Decode16, min, max, align, len) — I/O Port Descriptor, §6.4.2.5.
Bytes Io(uint16_t min, uint16_t max, uint8_t align, uint8_t len);
// IRQNoFlags () {irq} — IRQ Descriptor without the information byte, §6.4.2.1. irq < 16.
Bytes IrqNoFlags(uint8_t irq);
// Memory32Fixed (ReadWrite|ReadOnly, base, len) — §6.4.3.4.
Bytes Memory32Fixed(bool read_write, uint32_t base, uint32_t len);
// Interrupt (ResourceConsumer, Edge|Level, ActiveHigh|ActiveLow, Exclusive|Shared) {irq} —
// Extended Interrupt Descriptor, §6.4.3.6.
struct InterruptFlags {
  bool edge = true;
  bool active_low = false;
  bool shared = false;
};
Bytes ExtendedInterrupt(uint32_t irq, InterruptFlags flags);

}  // namespace keel::vmm::aml
