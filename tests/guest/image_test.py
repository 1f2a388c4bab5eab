#!/usr/bin/env python3
"""Checks the test guest's two images against the boot formats they claim, independently
of the tool that made them:

    image_test.py keel-guest.elf keel-guest.bzimage

  - the ELF: ELF64 x86-64, one PT_LOAD at 1 MiB, a Xen PVH note (XEN_ELFNOTE_PHYS32_ENTRY)
    in a PT_NOTE segment aligned to 4 (QEMU pads note names to p_align) whose entry lies
    in the image below 4 GiB;
  - the bzImage: the setup header fields of Documentation/arch/x86/boot.rst protocol 2.15,
    and a protected-mode part that is the ELF's loadable bytes from 1 MiB (so the 64-bit
    entry at +0x200 is the same code).
"""

import struct
import sys
import unittest

ELF_PATH = BZIMAGE_PATH = None


def read(path):
    with open(path, "rb") as f:
        return f.read()


def program_headers(elf):
    phoff, = struct.unpack_from("<Q", elf, 32)
    phentsize, phnum = struct.unpack_from("<HH", elf, 54)
    return [struct.unpack_from("<IIQQQQQQ", elf, phoff + i * phentsize) for i in range(phnum)]


def loads(elf):
    return [p for p in program_headers(elf) if p[0] == 1]


def notes(elf):
    return [p for p in program_headers(elf) if p[0] == 4]


def first_note(elf, ph):
    off = ph[2]
    namesz, descsz, ntype = struct.unpack_from("<III", elf, off)
    name = elf[off + 12:off + 12 + namesz]
    desc_off = off + 12 + (namesz + 3) // 4 * 4
    return name, ntype, int.from_bytes(elf[desc_off:desc_off + descsz], "little"), descsz


class ElfImage(unittest.TestCase):
    def setUp(self):
        self.elf = read(ELF_PATH)

    def test_is_elf64_x86_64_executable(self):
        self.assertEqual(self.elf[:6], b"\x7fELF\x02\x01")
        self.assertEqual(struct.unpack_from("<HH", self.elf, 16), (2, 62))

    def test_loads_at_one_mib(self):
        self.assertEqual([p[4] for p in loads(self.elf)], [0x100000])

    def test_has_pvh_note_with_32bit_entry_in_image(self):
        (note,) = notes(self.elf)
        name, ntype, entry, descsz = first_note(self.elf, note)
        load = loads(self.elf)[0]
        self.assertEqual((name, ntype, descsz), (b"Xen\0", 18, 8))
        self.assertEqual(note[7], 4)  # p_align: QEMU pads the name to it
        self.assertTrue(load[4] <= entry < load[4] + load[5] and entry < 1 << 32, hex(entry))


class BzImage(unittest.TestCase):
    def setUp(self):
        self.img = read(BZIMAGE_PATH)
        self.elf = read(ELF_PATH)

    def field(self, fmt, offset):
        return struct.unpack_from("<" + fmt, self.img, offset)[0]

    def payload(self):
        return self.img[(self.field("B", 0x1F1) + 1) * 512:]

    def test_magic_and_protocol_version(self):
        self.assertEqual(self.field("H", 0x1FE), 0xAA55)
        self.assertEqual(self.img[0x202:0x206], b"HdrS")
        self.assertEqual(self.field("H", 0x206), 0x020F)

    def test_header_length_is_given_by_the_jump(self):
        self.assertEqual(self.img[0x200], 0xEB)
        self.assertEqual(0x202 + self.img[0x201], 0x26C)

    def test_load_flags(self):
        self.assertEqual(self.field("B", 0x211) & 0x01, 0x01)   # LOADED_HIGH
        self.assertEqual(self.field("H", 0x236), 0x0001)        # XLF_KERNEL_64 only
        self.assertEqual(self.field("B", 0x234), 0)             # not relocatable
        self.assertEqual(self.field("Q", 0x258), 0x100000)      # pref_address
        self.assertEqual(self.field("I", 0x214), 0x100000)      # code32_start

    def test_syssize_covers_the_payload(self):
        self.assertEqual(self.field("I", 0x1F4) * 16, len(self.payload()))

    def test_init_size_covers_bss(self):
        load = loads(self.elf)[0]
        self.assertGreaterEqual(self.field("I", 0x260), load[6])  # p_memsz

    def test_cmdline_size(self):
        self.assertEqual(self.field("I", 0x238), 4095)

    def test_payload_is_the_elf_image(self):
        load = loads(self.elf)[0]
        body = self.elf[load[2]:load[2] + load[5]]
        self.assertEqual(self.payload()[:len(body)], body)

    def test_kernel_info(self):
        offset = self.field("I", 0x268)
        self.assertEqual(self.payload()[offset:offset + 4], b"LToP")


def main():
    global ELF_PATH, BZIMAGE_PATH
    if len(sys.argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    ELF_PATH, BZIMAGE_PATH = sys.argv.pop(1), sys.argv.pop(1)
    result = unittest.main(exit=False, verbosity=2).result
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
