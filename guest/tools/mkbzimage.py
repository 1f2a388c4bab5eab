#!/usr/bin/env python3
"""Wraps Keel's test guest (an ELF linked at 1 MiB) in a Linux x86 boot protocol image.

    mkbzimage.py keel-guest.elf keel-guest.bzimage

The output is what a 64-bit boot protocol loader (keel-vmm) expects of a bzImage: real-mode
setup sectors carrying the setup header (Documentation/arch/x86/boot.rst, protocol 2.15),
then the protected-mode part: the guest's loadable segments flattened from 1 MiB. There is
no real-mode setup code (the 16-bit entry just halts), so the image boots only through the
64-bit entry at load address + 0x200 (XLF_KERNEL_64); QEMU's 16-bit path will not boot it.

No CRC-32 is appended (boot.rst "The Image Checksum"): no loader checks it, and a loader
copying syssize paragraphs would put its bytes into the guest's BSS, which the guest
expects to find zeroed.

Before writing, the ELF is checked: ELF64 x86-64 executable, loadable from 1 MiB, a Xen
PVH note (XEN_ELFNOTE_PHYS32_ENTRY) pointing into the image, and a 64-bit entry at
+0x200. The build fails with a message naming the problem otherwise.
"""

import struct
import sys

LOAD_ADDR = 0x100000          # GUEST_LOAD_ADDR (guest/defs.h)
LINUX64_ENTRY = LOAD_ADDR + 0x200
KERNEL_INFO_OFFSET = 0x1C0    # guest_kernel_info in boot.S
CMDLINE_SIZE = 4095           # BOOT_CMDLINE_MAX - 1 (guest/boot_info.h)
SETUP_SECTS = 4               # like every real kernel: loaders treat 0 as 4
XEN_ELFNOTE_PHYS32_ENTRY = 18
PT_LOAD, PT_NOTE = 1, 4


class ImageError(Exception):
    pass


def read_elf(data):
    """Returns (loadable segments [(paddr, bytes, memsz)], PVH entry address)."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ImageError("not a little-endian ELF64 file")
    (e_type, e_machine, _, _, e_phoff, _, _, _, e_phentsize,
     e_phnum) = struct.unpack_from("<HHIQQQIHHH", data, 16)
    if e_type != 2 or e_machine != 62:
        raise ImageError("not an x86-64 executable (e_type %d, e_machine %d)" % (e_type, e_machine))
    segments, pvh_entry = [], None
    for i in range(e_phnum):
        p_type, _, p_offset, _, p_paddr, p_filesz, p_memsz, p_align = struct.unpack_from(
            "<IIQQQQQQ", data, e_phoff + i * e_phentsize)
        if p_offset + p_filesz > len(data):
            raise ImageError("segment %d runs past the end of the file" % i)
        body = data[p_offset:p_offset + p_filesz]
        if p_type == PT_LOAD and p_memsz:
            segments.append((p_paddr, body, p_memsz))
        elif p_type == PT_NOTE:
            pvh_entry = find_pvh_note(body) if pvh_entry is None else pvh_entry
    if not segments:
        raise ImageError("no loadable segments")
    if pvh_entry is None:
        raise ImageError("no Xen PVH note (type %d, name 'Xen')" % XEN_ELFNOTE_PHYS32_ENTRY)
    return segments, pvh_entry


def find_pvh_note(notes):
    """ELF notes: namesz, descsz, type, then name and desc, each padded to 4 bytes."""
    off = 0
    while off + 12 <= len(notes):
        namesz, descsz, ntype = struct.unpack_from("<III", notes, off)
        name_off = off + 12
        desc_off = name_off + (namesz + 3) // 4 * 4
        name = notes[name_off:name_off + namesz]
        desc = notes[desc_off:desc_off + descsz]
        if name == b"Xen\0" and ntype == XEN_ELFNOTE_PHYS32_ENTRY and descsz in (4, 8):
            return int.from_bytes(desc, "little")
        off = desc_off + (descsz + 3) // 4 * 4
    return None


def flatten(segments):
    """The protected-mode part: segment file contents placed from LOAD_ADDR; and the
    memory the image needs once loaded (through the end of BSS)."""
    start = min(s[0] for s in segments)
    if start != LOAD_ADDR:
        raise ImageError("image starts at 0x%x, not 0x%x" % (start, LOAD_ADDR))
    file_end = max(p + len(b) for p, b, _ in segments)
    mem_end = max(p + m for p, _, m in segments)
    flat = bytearray(file_end - LOAD_ADDR)
    for paddr, body, _ in segments:
        flat[paddr - LOAD_ADDR:paddr - LOAD_ADDR + len(body)] = body
    flat += bytes(-len(flat) % 16)  # syssize counts 16-byte paragraphs
    return bytes(flat), mem_end - LOAD_ADDR


def setup_sectors(payload_len, init_size):
    """Sector 0 plus SETUP_SECTS sectors, with the setup header at 0x1f1 (boot.rst,
    "The Real-Mode Kernel Header")."""
    setup = bytearray((SETUP_SECTS + 1) * 512)

    def put(fmt, offset, *values):
        struct.pack_into("<" + fmt, setup, offset, *values)

    version_string = b"keel-guest\0"
    version_at = 0x300
    put("B", 0x1F1, SETUP_SECTS)                # setup_sects
    put("I", 0x1F4, payload_len // 16)          # syssize
    put("H", 0x1FA, 0xFFFF)                     # vid_mode: "normal"
    put("H", 0x1FE, 0xAA55)                     # boot_flag
    put("BB", 0x200, 0xEB, 0x26C - 0x202)       # jump over the header (its length, too)
    setup[0x202:0x206] = b"HdrS"                # header
    put("H", 0x206, 0x020F)                     # version 2.15
    put("H", 0x20E, version_at - 0x200)         # kernel_version
    put("B", 0x211, 0x01)                       # loadflags: LOADED_HIGH
    put("I", 0x214, LOAD_ADDR)                  # code32_start
    put("I", 0x22C, 0x7FFFFFFF)                 # initrd_addr_max
    put("I", 0x230, 0x200000)                   # kernel_alignment
    put("B", 0x234, 0)                          # relocatable_kernel: no
    put("B", 0x235, 21)                         # min_alignment (2 MiB, unused: not relocatable)
    put("H", 0x236, 0x0001)                     # xloadflags: XLF_KERNEL_64 only (below 4 GiB)
    put("I", 0x238, CMDLINE_SIZE)               # cmdline_size
    put("Q", 0x258, LOAD_ADDR)                  # pref_address
    put("I", 0x260, (init_size + 4095) // 4096 * 4096)  # init_size
    put("I", 0x268, KERNEL_INFO_OFFSET)         # kernel_info_offset
    setup[0x26C:0x270] = b"\xFA\xF4\xEB\xFD"   # 16-bit entry: cli; 1: hlt; jmp 1b
    setup[version_at:version_at + len(version_string)] = version_string
    return bytes(setup)


def build(elf):
    segments, pvh_entry = read_elf(elf)
    payload, init_size = flatten(segments)
    if not LOAD_ADDR <= pvh_entry < LOAD_ADDR + len(payload) or pvh_entry >= 1 << 32:
        raise ImageError("the PVH note's entry 0x%x is not a 32-bit address inside the image"
                         % pvh_entry)
    if len(payload) <= LINUX64_ENTRY - LOAD_ADDR:
        raise ImageError("the image ends before the 64-bit entry at 0x%x" % LINUX64_ENTRY)
    if payload[KERNEL_INFO_OFFSET:KERNEL_INFO_OFFSET + 4] != b"LToP":
        raise ImageError("no kernel_info ('LToP') at image offset 0x%x" % KERNEL_INFO_OFFSET)
    return setup_sectors(len(payload), init_size) + payload


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: mkbzimage.py GUEST.elf OUTPUT.bzimage\n")
        return 2
    with open(argv[1], "rb") as f:
        elf = f.read()
    try:
        image = build(elf)
    except ImageError as e:
        sys.stderr.write("mkbzimage.py: %s: %s\n" % (argv[1], e))
        return 1
    with open(argv[2], "wb") as f:
        f.write(image)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
