#!/usr/bin/env python3
"""The block pattern Keel's test guest writes with keeltest=blk-rw, and a checker for disk
images that holds them to it. Used by tests/guest and by the keel-vmm integration tests.

The pattern, per 512-byte sector s:
    bytes 0-7      s as a little-endian u64
    byte i, 8-511  (s * 31 + i) & 0xff
Sectors covered: every sector of disks up to 256 MiB (or with the guest's full=1); on
larger disks the first MiB, the last MiB, and the first 8 sectors (4 KiB) of every MiB in
between. After blk-rw on a writable disk, two ranges differ when the device offered the
features (the guest prints them):
    keeltest: blk discard 2048+2048 ok        each sector zeros or the pattern
    keeltest: blk write-zeroes 4096+2048 ok   zeros

    blk_pattern.py write IMAGE              fill IMAGE (its whole size) with the pattern
    blk_pattern.py check IMAGE [GUEST_LOG]  check IMAGE; GUEST_LOG gives the special ranges
"""

import re
import sys

SECTOR = 512
MIB_SECTORS = 2048
FULL_LIMIT_SECTORS = 256 * MIB_SECTORS
SUBSET_RUN = 8

# The 504 bytes after the sector number depend only on (s * 31 + 8) & 0xff.
_TAILS = [bytes((v + k) & 0xFF for k in range(SECTOR - 8)) for v in range(256)]
_ZERO = bytes(SECTOR)


def sector_bytes(s):
    """The pattern's 512 bytes for sector s."""
    return s.to_bytes(8, "little") + _TAILS[(s * 31 + 8) & 0xFF]


def pattern_runs(capacity, full=False):
    """The (start, count) runs of sectors the guest writes on a disk of `capacity` sectors."""
    if full or capacity <= FULL_LIMIT_SECTORS:
        if capacity:
            yield (0, capacity)
        return
    yield (0, MIB_SECTORS)
    m = MIB_SECTORS
    while m < capacity - MIB_SECTORS:
        yield (m, min(m + SUBSET_RUN, capacity - MIB_SECTORS) - m)
        m += MIB_SECTORS
    yield (capacity - MIB_SECTORS, MIB_SECTORS)


def special_ranges(lines):
    """The discarded and zeroed (start, count) ranges a blk-rw log reports."""
    discarded, zeroed = [], []
    for line in lines:
        m = re.match(r"^keeltest: blk (discard|write-zeroes) (\d+)\+(\d+) ok$", line.strip())
        if m:
            (discarded if m.group(1) == "discard" else zeroed).append(
                (int(m.group(2)), int(m.group(3))))
    return discarded, zeroed


def _in(ranges, s):
    return any(start <= s < start + count for start, count in ranges)


def check_image(path, discarded=(), zeroed=(), full=False, max_problems=10):
    """Checks an image against the pattern. Returns a list of problems (empty: it holds)."""
    problems = []
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        capacity = size // SECTOR
        for start, count in pattern_runs(capacity, full):
            f.seek(start * SECTOR)
            data = f.read(count * SECTOR)
            for i in range(count):
                s = start + i
                got = data[i * SECTOR:(i + 1) * SECTOR]
                want = sector_bytes(s)
                if _in(zeroed, s):
                    ok, what = got == _ZERO, "zeros"
                elif _in(discarded, s):
                    ok, what = got in (_ZERO, want), "zeros or the pattern"
                else:
                    ok, what = got == want, "the pattern"
                if not ok:
                    at = next((k for k in range(SECTOR) if got[k] != want[k]), 0)
                    problems.append("sector %d is not %s (first difference at byte %d: 0x%02x, "
                                    "pattern 0x%02x)" % (s, what, at, got[at], want[at]))
                    if len(problems) >= max_problems:
                        return problems
    return problems


def write_image(path, size_bytes=None):
    """Fills the image (its current size, or size_bytes) with the pattern on every sector."""
    with open(path, "r+b" if size_bytes is None else "wb") as f:
        if size_bytes is None:
            f.seek(0, 2)
            size_bytes = f.tell()
            f.seek(0)
        chunk = 2048
        for start in range(0, size_bytes // SECTOR, chunk):
            n = min(chunk, size_bytes // SECTOR - start)
            f.write(b"".join(sector_bytes(s) for s in range(start, start + n)))


def main(argv):
    if len(argv) >= 3 and argv[1] == "write":
        write_image(argv[2])
        return 0
    if len(argv) >= 3 and argv[1] == "check":
        discarded, zeroed = ((), ())
        if len(argv) >= 4:
            with open(argv[3]) as log:
                discarded, zeroed = special_ranges(log)
        problems = check_image(argv[2], discarded, zeroed)
        for p in problems:
            print(p)
        print("ok" if not problems else "%d+ problems" % len(problems))
        return 1 if problems else 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
