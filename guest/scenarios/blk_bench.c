// keeltest=blk-bench,qd=N,bs=B,secs=S,rw=randread|randwrite|read|write[,disk=N]
//                   [,indirect=0][,event_idx=0][,seed=N][,queue=N]
//
// Keeps N requests in flight on a virtio-blk disk for S seconds, polling, and reports
//   keeltest: blk-bench rw=<rw> qd=<n> bs=<n> iops=<n> mbps=<n.n> ios=<n> secs=<s>
//   keeltest: blk-bench detail notifies=<n> queue=<n> indirect=<0|1> event_idx=<0|1>
//             elapsed_us=<n>
// mbps is 10^6 bytes per second; ios counts requests completed within the S seconds (the
// ones still in flight at the end are drained, not counted). Offsets are aligned to bs:
// random (xorshift64*, seed=) over the whole disk, or sequential with wrap-around.
// Written data is whatever the buffers hold (zeros).
//
// Kept cheap on the guest side: buffers allocated once, no output until the end, a
// completion is resubmitted at once and the whole batch costs one notification (fewer when
// the device suppresses them with EVENT_IDX or NO_NOTIFY), the device is asked not to
// interrupt. QD above a third of the queue needs INDIRECT_DESC (one descriptor a request).
// The queue size asked for is queue= (default: 256, or 3 * qd up to 1024 when larger),
// capped by the device's QueueNumMax.
#include "arch.h"
#include "lib.h"
#include "mem.h"
#include "printf.h"
#include "scenario.h"
#include "timer.h"
#include "virtio_blk.h"

#define MAX_QD 256
#define STALL_SECONDS 30

struct bench {
  struct blk b;
  bool write, random;
  uint32_t qd, bs, secs;
  uint64_t nblocks, next_block, rng;
  uint8_t* buf[MAX_QD];
};

static uint64_t next_offset(struct bench* x) {
  uint64_t blk;
  if (x->random) {
    // xorshift64* (Vigna): fast, and good enough to spread offsets.
    x->rng ^= x->rng >> 12;
    x->rng ^= x->rng << 25;
    x->rng ^= x->rng >> 27;
    blk = (x->rng * 0x2545F4914F6CDD1DULL) % x->nblocks;
  } else {
    blk = x->next_block;
    x->next_block = x->next_block + 1 == x->nblocks ? 0 : x->next_block + 1;
  }
  return blk * (x->bs / BLK_SECTOR);
}

static bool submit(struct bench* x, uint32_t i) {
  struct vq_buf data = {mem_phys(x->buf[i]), x->bs};
  return blk_submit(&x->b, x->write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, next_offset(x), &data, 1,
                    i) >= 0;
}

static const char* parse(struct bench* x, struct scenario_ctx* ctx, char* err, size_t n) {
  const struct scenario_args* a = ctx->args;
  bool ok = true;
  x->qd = (uint32_t)scenario_arg_u64(a, "qd", 32, &ok);
  x->bs = (uint32_t)scenario_arg_u64(a, "bs", 4096, &ok);
  x->secs = (uint32_t)scenario_arg_u64(a, "secs", 5, &ok);
  x->rng = scenario_arg_u64(a, "seed", 0x4b45454c, &ok) | 1;
  int disk = (int)scenario_arg_u64(a, "disk", 0, &ok);
  struct blk_options o = {
      .indirect = scenario_arg_u64(a, "indirect", 1, &ok) != 0,
      .no_event_idx = scenario_arg_u64(a, "event_idx", 1, &ok) == 0,
  };
  if (!ok) return "qd, bs, secs, seed, disk, indirect and event_idx take numbers";
  const char* rw = scenario_arg(a, "rw");
  if (!rw) rw = "randread";
  x->write = strcmp(rw, "randwrite") == 0 || strcmp(rw, "write") == 0;
  x->random = strcmp(rw, "randread") == 0 || strcmp(rw, "randwrite") == 0;
  if (!x->write && !x->random && strcmp(rw, "read") != 0)
    return "rw must be randread, randwrite, read or write";
  if (x->qd < 1 || x->qd > MAX_QD) return "qd must be 1-256";
  if (x->bs < BLK_SECTOR || x->bs % BLK_SECTOR || x->bs > (1u << 20))
    return "bs must be a multiple of 512 up to 1 MiB";
  if (x->secs < 1 || x->secs > 3600) return "secs must be 1-3600";
  // Room for qd requests of 3 descriptors each unless indirect ones are used.
  uint32_t want = 256;
  while (want < 3 * x->qd && want < 1024) want *= 2;
  want = (uint32_t)scenario_arg_u64(a, "queue", want, &ok);
  if (!ok || want < 1 || want > 32768) return "queue must be 1-32768";
  o.queue_size = (uint16_t)want;
  const char* e = blk_open(&x->b, ctx->boot, disk, &o, err, n);
  if (e) return e;
  struct blk* b = &x->b;
  if (x->write && b->ro) return "rw=write/randwrite on a read-only disk";
  if (x->bs % b->blk_size) return "bs must be a multiple of the disk's blk_size";
  if (b->size_max && x->bs > b->size_max) return "bs is above the disk's size_max";
  x->nblocks = b->capacity / (x->bs / BLK_SECTOR);
  if (x->nblocks == 0) return "the disk is smaller than one block";
  if (x->qd * (uint32_t)vq_descs_needed(&b->q, 3, b->indirect) > b->q.size) {
    fmt_snprintf(err, n, "qd=%u needs %u descriptors but the queue has %u%s", x->qd,
                 x->qd * (uint32_t)vq_descs_needed(&b->q, 3, b->indirect), b->q.size,
                 b->indirect ? "" : " and indirect descriptors are off or not offered");
    return err;
  }
  if ((uint64_t)x->qd * x->bs + 65536 > mem_free_bytes()) return "not enough RAM for qd * bs";
  for (uint32_t i = 0; i < x->qd; i++) x->buf[i] = mem_alloc(x->bs, 4096);
  return NULL;
}

static int run_blk_bench(struct scenario_ctx* ctx) {
  static struct bench x;
  char err[200];
  const char* e = parse(&x, ctx, err, sizeof(err));
  if (e) return scenario_fail(ctx, "%s", e);
  struct blk* b = &x.b;
  uint64_t hz = tsc_hz();
  uint64_t start = rdtsc(), end = start + hz * x.secs, last = start, stop = 0;
  for (uint32_t i = 0; i < x.qd; i++) submit(&x, i);
  blk_kick(b);
  uint64_t ios = 0, inflight = x.qd;
  while (inflight) {
    uint64_t spins = 0;
    while (!vq_has_used(&b->q)) {
      cpu_relax();
      if (++spins % 4096 == 0 && rdtsc() - last > hz * STALL_SECONDS) {
        virtio_reset(&b->dev);
        return scenario_fail(ctx, "no completion for %d s (%lu in flight)", STALL_SECONDS,
                             inflight);
      }
    }
    uint64_t now = rdtsc();
    last = now;
    bool running = now < end;
    if (!running && !stop) stop = now;
    struct blk_done d;
    while (blk_reap(b, &d)) {
      if (d.status != VIRTIO_BLK_S_OK) {
        virtio_reset(&b->dev);
        return scenario_fail(ctx, "request failed with status %u", d.status);
      }
      inflight--;
      if (running) {
        ios++;
        if (!submit(&x, d.cookie)) {
          virtio_reset(&b->dev);
          return scenario_fail(ctx, "could not resubmit a request");
        }
        inflight++;
      }
    }
    if (b->error) return scenario_fail(ctx, "%s", b->error);
    blk_kick(b);
  }
  if (!stop) stop = last;
  uint64_t elapsed_us = (stop - start) * 1000000 / hz;
  if (elapsed_us == 0) elapsed_us = 1;
  uint64_t iops = ios * 1000000 / elapsed_us;
  uint64_t mbps10 = ios * x.bs * 10 / elapsed_us;  // bytes/us = MB/s; one decimal
  KT_LINE("blk-bench rw=%s qd=%u bs=%u iops=%lu mbps=%lu.%lu ios=%lu secs=%u",
          scenario_arg(ctx->args, "rw") ? scenario_arg(ctx->args, "rw") : "randread", x.qd, x.bs,
          iops, mbps10 / 10, mbps10 % 10, ios, x.secs);
  KT_LINE("blk-bench detail notifies=%lu queue=%u indirect=%d event_idx=%d elapsed_us=%lu",
          b->q.notifies, b->q.size, b->indirect, b->q.event_idx, elapsed_us);
  virtio_reset(&b->dev);
  return SCENARIO_PASS;
}
KEEL_SCENARIO(blk_bench, "blk-bench", run_blk_bench);
