// keeltest=blk-rw[,disk=N][,irq=1][,indirect=1][,verify=1][,full=1][,event_idx=0][,qd=N]
//                [,halt_after_flush=1]
//
// Writes a pattern over a virtio-blk disk, flushes, reads it back and checks it, then the
// other request types. The pattern (tests/guest/blk_pattern.py checks images with it):
//   sector s (512 bytes): bytes 0-7 = s as a little-endian u64,
//                         byte i (8 <= i < 512) = (s * 31 + i) & 0xff.
// Sectors covered: all of them for disks up to 256 MiB (or with full=1); above that the
// first and last MiB and the first 4 KiB of every MiB in between.
//
// Read-write disk, in order:
//   keeltest: blk id <serial>                        (GET_ID; "(none)" if empty,
//                                                    "unsupported" if UNSUPP)
//   pattern written (OUT), FLUSH ("keeltest: blk flush ok"), read back (IN) and checked
//   (halt_after_flush=1: "keeltest: blk halting after flush" after the FLUSH, then halts)
//   keeltest: blk discard <sector>+<count> ok        DISCARD [2048, 4096) when offered;
//                                                    each sector then reads as the pattern
//                                                    or as zeros
//   keeltest: blk write-zeroes <sector>+<count> ok   WRITE_ZEROES [4096, 6144) when
//                                                    offered; reads back as zeros
//   keeltest: blk past-end ioerr ok                  IN at the capacity and across it: IOERR
//   keeltest: blk-rw sectors_written=<n> sectors_read=<n> requests=<n> notifies=<n> irqs=<n>
//             len_mismatches=<n>
// Read-only disk (VIRTIO_BLK_F_RO): an OUT must fail with IOERR ("keeltest: blk read-only
// ok"), nothing is written; everything is read (and checked against the pattern with
// verify=1). verify=1 on a writable disk also only reads and checks.
// Every status byte is checked; anything but the expected status is a FAIL.
#include "arch.h"
#include "lib.h"
#include "mem.h"
#include "printf.h"
#include "scenario.h"
#include "timer.h"
#include "virtio_blk.h"

#define MIB_SECTORS 2048ULL
#define FULL_LIMIT_SECTORS (256 * MIB_SECTORS)
#define SUBSET_RUN 8  // sectors written at each MiB boundary of a large disk
#define MAX_QD 32
#define DISCARD_START (1 * MIB_SECTORS)
#define WRITE_ZEROES_START (2 * MIB_SECTORS)
#define SPECIAL_SECTORS MIB_SECTORS

struct rw {
  struct blk b;
  bool full;
  bool halt_after_flush;  // halt_after_flush=1: stop for good right after the FLUSH line
  uint64_t timeout_ms;
  uint32_t seg_bytes, nseg, chunk_sectors;
  int qd;
  uint8_t* chunk[MAX_QD];
  uint64_t chunk_start[MAX_QD];
  uint32_t chunk_count[MAX_QD];
  uint8_t* scratch;  // 64 KiB for single requests
  uint64_t sectors_written, sectors_read;
  char err[200];
};

static void fill_sector(uint8_t* p, uint64_t s) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(s >> (8 * i));
  uint8_t v = (uint8_t)(s * 31 + 8);
  for (int i = 8; i < BLK_SECTOR; i++) p[i] = v++;
}

// The first byte where sector `s`'s data differs from the pattern, or -1.
static int pattern_mismatch(const uint8_t* p, uint64_t s, uint8_t* want) {
  for (int i = 0; i < 8; i++) {
    if (p[i] != (uint8_t)(s >> (8 * i))) {
      *want = (uint8_t)(s >> (8 * i));
      return i;
    }
  }
  uint8_t v = (uint8_t)(s * 31 + 8);
  for (int i = 8; i < BLK_SECTOR; i++, v++) {
    if (p[i] != v) {
      *want = v;
      return i;
    }
  }
  return -1;
}

static bool all_zero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (p[i]) return false;
  }
  return true;
}

// The sectors the pattern covers, as runs of at most `max` sectors from *pos on.
static bool next_run(const struct rw* r, uint64_t* pos, uint32_t max, uint64_t* start,
                     uint32_t* count) {
  uint64_t cap = r->b.capacity, p = *pos, end;
  bool subset = !r->full && cap > FULL_LIMIT_SECTORS;
  for (;;) {
    if (p >= cap) return false;
    if (!subset || p >= cap - MIB_SECTORS) {
      end = cap;
      break;
    }
    if (p < MIB_SECTORS) {
      end = MIB_SECTORS;
      break;
    }
    uint64_t mib = p - p % MIB_SECTORS;
    if (p < mib + SUBSET_RUN) {
      end = mib + SUBSET_RUN < cap - MIB_SECTORS ? mib + SUBSET_RUN : cap - MIB_SECTORS;
      break;
    }
    p = mib + MIB_SECTORS < cap - MIB_SECTORS ? mib + MIB_SECTORS : cap - MIB_SECTORS;
  }
  uint64_t n = end - p < max ? end - p : max;
  *start = p;
  *count = (uint32_t)n;
  *pos = p + n;
  return true;
}

// One request's data buffers: `bytes` of `buf` in seg_bytes pieces.
static int segments(const struct rw* r, uint8_t* buf, uint32_t bytes, struct vq_buf* segs) {
  int n = 0;
  for (uint32_t off = 0; off < bytes; off += r->seg_bytes) {
    uint32_t len = bytes - off < r->seg_bytes ? bytes - off : r->seg_bytes;
    segs[n++] = (struct vq_buf){mem_phys(buf + off), len};
  }
  return n;
}

static const char* check_chunk(struct rw* r, int c) {
  for (uint32_t i = 0; i < r->chunk_count[c]; i++) {
    uint64_t s = r->chunk_start[c] + i;
    uint8_t want;
    int at = pattern_mismatch(r->chunk[c] + (size_t)i * BLK_SECTOR, s, &want);
    if (at >= 0)
      return fmt_error(r->err, sizeof(r->err),
                       "sector %lu byte %d reads 0x%02x, the pattern has 0x%02x", s, at,
                       r->chunk[c][(size_t)i * BLK_SECTOR + at], want);
  }
  return NULL;
}

// Writes (or reads, and checks when `verify`) every pattern sector with up to qd
// requests in flight and one notification per batch of submissions.
static const char* pass(struct rw* r, bool write, bool verify) {
  struct blk* b = &r->b;
  uint32_t type = write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
  int free_chunks[MAX_QD], nfree = r->qd, inflight = 0;
  for (int i = 0; i < r->qd; i++) free_chunks[i] = i;
  uint64_t pos = 0;
  bool more = true;
  while (more || inflight) {
    while (more && nfree) {
      uint64_t start;
      uint32_t count;
      if (!(more = next_run(r, &pos, r->chunk_sectors, &start, &count))) break;
      int c = free_chunks[--nfree];
      r->chunk_start[c] = start;
      r->chunk_count[c] = count;
      if (write) {
        for (uint32_t i = 0; i < count; i++)
          fill_sector(r->chunk[c] + (size_t)i * BLK_SECTOR, start + i);
      }
      struct vq_buf segs[64];
      int nseg = segments(r, r->chunk[c], count * BLK_SECTOR, segs);
      if (blk_submit(b, type, start, segs, nseg, (uint32_t)c) < 0)
        return fmt_error(r->err, sizeof(r->err), "no room in the queue for a request of %d buffers",
                         nseg + 2);
      inflight++;
    }
    blk_kick(b);
    if (!inflight) break;
    if (!vq_wait(&b->q, tsc_deadline_us(r->timeout_ms * 1000)))
      return fmt_error(r->err, sizeof(r->err),
                       "no completion within %lu ms (%d requests in flight)", r->timeout_ms,
                       inflight);
    struct blk_done d;
    while (blk_reap(b, &d)) {
      int c = (int)d.cookie;
      if (d.status != VIRTIO_BLK_S_OK)
        return fmt_error(r->err, sizeof(r->err), "%s of sectors %lu+%u: status %u",
                         write ? "OUT" : "IN", r->chunk_start[c], r->chunk_count[c], d.status);
      const char* e = verify ? check_chunk(r, c) : NULL;
      if (e) return e;
      if (write) {
        r->sectors_written += r->chunk_count[c];
      } else {
        r->sectors_read += r->chunk_count[c];
      }
      free_chunks[nfree++] = c;
      inflight--;
    }
    if (b->error) return fmt_error(r->err, sizeof(r->err), "%s", b->error);
  }
  return NULL;
}

static int sync_req(struct rw* r, uint32_t type, uint64_t sector, void* buf, uint32_t len) {
  return blk_sync(&r->b, type, sector, buf, len, r->timeout_ms);
}

static const char* get_id(struct rw* r) {
  memset(r->scratch, 0, VIRTIO_BLK_ID_BYTES + 1);
  int st = sync_req(r, VIRTIO_BLK_T_GET_ID, 0, r->scratch, VIRTIO_BLK_ID_BYTES);
  if (st == VIRTIO_BLK_S_UNSUPP) {
    KT_LINE("blk id unsupported");
    return NULL;
  }
  if (st != VIRTIO_BLK_S_OK)
    return fmt_error(r->err, sizeof(r->err), "GET_ID: status %d (%s)", st,
                     r->b.error ? r->b.error : "");
  // The serial is up to 20 bytes, NUL-terminated only when shorter (§5.2.6).
  char serial[VIRTIO_BLK_ID_BYTES + 1];
  size_t n = strnlen((const char*)r->scratch, VIRTIO_BLK_ID_BYTES);
  for (size_t i = 0; i < n; i++) {
    char c = (char)r->scratch[i];
    serial[i] = c > ' ' && c < 127 ? c : '?';
  }
  serial[n] = '\0';
  KT_LINE("blk id %s", n ? serial : "(none)");
  return NULL;
}

// DISCARD or WRITE_ZEROES of [start, start+count) in requests the device's limits allow.
static const char* ranged(struct rw* r, uint32_t type, uint64_t start, uint32_t count,
                          uint32_t max_sectors, uint32_t flags) {
  struct virtio_blk_discard_write_zeroes* seg = (void*)r->scratch;
  if (max_sectors == 0) max_sectors = count;
  for (uint32_t done = 0; done < count;) {
    uint32_t n = count - done < max_sectors ? count - done : max_sectors;
    *seg = (struct virtio_blk_discard_write_zeroes){start + done, n, flags};
    int st = sync_req(r, type, 0, seg, sizeof(*seg));
    if (st != VIRTIO_BLK_S_OK)
      return fmt_error(r->err, sizeof(r->err), "%s of sectors %lu+%u: status %d",
                       type == VIRTIO_BLK_T_DISCARD ? "DISCARD" : "WRITE_ZEROES", start + done, n,
                       st);
    done += n;
  }
  return NULL;
}

// Reads [start, start+count) and checks each sector is zeros (or, when `pattern_ok`,
// the pattern).
static const char* read_check(struct rw* r, uint64_t start, uint32_t count, bool pattern_ok) {
  for (uint32_t i = 0; i < count; i += 16) {
    uint32_t n = count - i < 16 ? count - i : 16;
    int st = sync_req(r, VIRTIO_BLK_T_IN, start + i, r->scratch, n * BLK_SECTOR);
    if (st != VIRTIO_BLK_S_OK)
      return fmt_error(r->err, sizeof(r->err), "IN of sectors %lu+%u: status %d", start + i, n, st);
    for (uint32_t k = 0; k < n; k++) {
      const uint8_t* p = r->scratch + (size_t)k * BLK_SECTOR;
      uint8_t want;
      if (all_zero(p, BLK_SECTOR) || (pattern_ok && pattern_mismatch(p, start + i + k, &want) < 0))
        continue;
      return fmt_error(r->err, sizeof(r->err), "sector %lu reads neither zeros%s", start + i + k,
                       pattern_ok ? " nor the pattern" : "");
    }
  }
  return NULL;
}

static const char* discard_and_zeroes(struct rw* r) {
  struct blk* b = &r->b;
  if ((b->discard || b->write_zeroes) && b->capacity < WRITE_ZEROES_START + SPECIAL_SECTORS + 1) {
    KT_LINE("blk discard/write-zeroes skipped: the disk is smaller than 3 MiB");
    return NULL;
  }
  const char* e;
  if (b->discard) {
    if ((e = ranged(r, VIRTIO_BLK_T_DISCARD, DISCARD_START, SPECIAL_SECTORS, b->max_discard_sectors,
                    0)) ||
        (e = read_check(r, DISCARD_START, SPECIAL_SECTORS, true)))
      return e;
    KT_LINE("blk discard %llu+%llu ok", DISCARD_START, SPECIAL_SECTORS);
  }
  if (b->write_zeroes) {
    uint32_t flags = b->write_zeroes_may_unmap ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0;
    if ((e = ranged(r, VIRTIO_BLK_T_WRITE_ZEROES, WRITE_ZEROES_START, SPECIAL_SECTORS,
                    b->max_write_zeroes_sectors, flags)) ||
        (e = read_check(r, WRITE_ZEROES_START, SPECIAL_SECTORS, false)))
      return e;
    KT_LINE("blk write-zeroes %llu+%llu ok", WRITE_ZEROES_START, SPECIAL_SECTORS);
  }
  return NULL;
}

// Requests at and across the end of the disk must fail with IOERR (§5.2.6.1: the device
// MUST set IOERR for a request it cannot serve... beyond the capacity).
static const char* past_end(struct rw* r) {
  uint32_t unit = r->b.blk_size >= BLK_SECTOR && r->b.blk_size <= 4096 ? r->b.blk_size : BLK_SECTOR;
  uint64_t cap = r->b.capacity;
  int st = sync_req(r, VIRTIO_BLK_T_IN, cap, r->scratch, unit);
  if (st != VIRTIO_BLK_S_IOERR)
    return fmt_error(r->err, sizeof(r->err),
                     "IN at sector %lu (the capacity) gave status %d, want IOERR (1)", cap, st);
  st = sync_req(r, VIRTIO_BLK_T_IN, cap - unit / BLK_SECTOR, r->scratch, 2 * unit);
  if (st != VIRTIO_BLK_S_IOERR)
    return fmt_error(r->err, sizeof(r->err),
                     "IN across the end (sector %lu, %u bytes) gave status %d, want IOERR (1)",
                     cap - unit / BLK_SECTOR, 2 * unit, st);
  KT_LINE("blk past-end ioerr ok");
  return NULL;
}

static const char* read_only_write(struct rw* r) {
  fill_sector(r->scratch, 0);
  int st = sync_req(r, VIRTIO_BLK_T_OUT, 0, r->scratch, BLK_SECTOR);
  if (st != VIRTIO_BLK_S_IOERR)
    return fmt_error(r->err, sizeof(r->err),
                     "OUT to a read-only disk gave status %d, want IOERR (1)", st);
  KT_LINE("blk read-only ok");
  return NULL;
}

static const char* setup(struct rw* r, struct scenario_ctx* ctx, bool* verify_only) {
  const struct scenario_args* a = ctx->args;
  bool ok = true;
  int disk = (int)scenario_arg_u64(a, "disk", 0, &ok);
  struct blk_options o = {
      .indirect = scenario_arg_u64(a, "indirect", 0, &ok) != 0,
      .no_event_idx = scenario_arg_u64(a, "event_idx", 1, &ok) == 0,
      .irq = scenario_arg_u64(a, "irq", 0, &ok) != 0,
      .max_bufs = 16,
  };
  *verify_only = scenario_arg_u64(a, "verify", 0, &ok) != 0;
  r->full = scenario_arg_u64(a, "full", 0, &ok) != 0;
  r->halt_after_flush = scenario_arg_u64(a, "halt_after_flush", 0, &ok) != 0;
  r->timeout_ms = scenario_arg_u64(a, "timeout_ms", 30000, &ok);
  uint64_t qd = scenario_arg_u64(a, "qd", 16, &ok);
  if (!ok)
    return "disk, indirect, event_idx, irq, verify, full, halt_after_flush, qd and timeout_ms "
           "take numbers";
  if (qd == 0 || qd > MAX_QD) return fmt_error(r->err, sizeof(r->err), "qd must be 1-%d", MAX_QD);
  const char* e = blk_open(&r->b, ctx->boot, disk, &o, r->err, sizeof(r->err));
  if (e) return e;
  struct blk* b = &r->b;
  if (b->capacity < 16)
    return fmt_error(r->err, sizeof(r->err), "the disk has only %lu sectors", b->capacity);
  if (b->blk_size % BLK_SECTOR || b->blk_size > 4096)
    return fmt_error(r->err, sizeof(r->err), "blk_size %u is not a multiple of 512 up to 4096",
                     b->blk_size);
  // 4 KiB buffers (fewer if size_max says so), up to 16 per request (seg_max permitting).
  r->seg_bytes = 4096;
  if (b->size_max && b->size_max < r->seg_bytes) r->seg_bytes = b->size_max & ~(BLK_SECTOR - 1);
  if (r->seg_bytes < b->blk_size)
    return fmt_error(r->err, sizeof(r->err), "size_max %u is below blk_size", b->size_max);
  r->nseg = b->seg_max < 16 ? b->seg_max : 16;
  r->chunk_sectors = r->nseg * r->seg_bytes / BLK_SECTOR;
  int per_req = vq_descs_needed(&b->q, (int)r->nseg + 2, b->indirect);
  r->qd = (int)qd;
  if (r->qd > b->q.size / per_req) r->qd = b->q.size / per_req;
  if (r->qd < 1)
    return fmt_error(r->err, sizeof(r->err), "the queue (%u) cannot hold one request of %u buffers",
                     b->q.size, r->nseg + 2);
  for (int i = 0; i < r->qd; i++) {
    if (!(r->chunk[i] = mem_alloc(r->chunk_sectors * BLK_SECTOR, 4096)))
      return "out of memory for buffers";
  }
  if (!(r->scratch = mem_alloc(64 * 1024, 4096))) return "out of memory for buffers";
  (void)tsc_hz();
  return NULL;
}

static int run_blk_rw(struct scenario_ctx* ctx) {
  static struct rw r;
  bool verify_only;
  const char* e = setup(&r, ctx, &verify_only);
  if (e) return scenario_fail(ctx, "%s", e);
  struct blk* b = &r.b;
  if (!e) e = get_id(&r);
  if (!e && b->ro) e = read_only_write(&r);
  if (!e && !b->ro && !verify_only) {
    e = pass(&r, true, false);
    if (!e && b->flush) {
      int st = sync_req(&r, VIRTIO_BLK_T_FLUSH, 0, NULL, 0);
      if (st != VIRTIO_BLK_S_OK) e = fmt_error(r.err, sizeof(r.err), "FLUSH: status %d", st);
      if (!e) KT_LINE("blk flush ok");
      // Durability tests kill the VMM on the FLUSH line: nothing may change the disk after it.
      if (!e && r.halt_after_flush) {
        KT_LINE("blk halting after flush");
        sys_halt();
      }
    }
    if (!e) e = pass(&r, false, true);
    if (!e) e = discard_and_zeroes(&r);
  } else if (!e) {
    e = pass(&r, false, verify_only);
  }
  if (!e) e = past_end(&r);
  if (!e && b->dev.use_irq && b->dev.irqs == 0) e = "irq=1, but the device never interrupted";
  if (e) {
    virtio_reset(&b->dev);
    return scenario_fail(ctx, "%s", e);
  }
  KT_LINE(
      "blk-rw sectors_written=%lu sectors_read=%lu requests=%lu notifies=%lu irqs=%lu "
      "len_mismatches=%lu",
      r.sectors_written, r.sectors_read, b->submitted, b->q.notifies, b->dev.irqs,
      b->len_mismatches);
  virtio_reset(&b->dev);
  return SCENARIO_PASS;
}
KEEL_SCENARIO(blk_rw, "blk-rw", run_blk_rw);
