// virtio-blk driver (see virtio_blk.h).
#include "virtio_blk.h"

#include "lib.h"
#include "mem.h"
#include "printf.h"
#include "timer.h"

// virtio_blk_req's device-readable header (§5.2.6) and the status byte the device writes,
// one per slot in DMA memory.
struct blk_slot {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
  uint8_t status;
  uint8_t pad[7];
  uint32_t cookie;  // driver-only
  uint32_t expect;  // driver-only: bytes the device should report written
};
_Static_assert(sizeof(struct blk_slot) == 32, "slot layout");

#define STATUS_UNWRITTEN 0xFF

// Configuration offsets (§5.2.4, struct virtio_blk_config).
#define CFG_CAPACITY 0
#define CFG_SIZE_MAX 8
#define CFG_SEG_MAX 12
#define CFG_BLK_SIZE 20
#define CFG_MAX_DISCARD_SECTORS 36
#define CFG_MAX_DISCARD_SEG 40
#define CFG_DISCARD_ALIGN 44
#define CFG_MAX_WRITE_ZEROES_SECTORS 48
#define CFG_MAX_WRITE_ZEROES_SEG 52
#define CFG_WRITE_ZEROES_MAY_UNMAP 56

static bool has(const struct blk* b, int bit) { return (b->dev.features & VIRTIO_BIT(bit)) != 0; }

static void read_config(struct blk* b) {
  const struct virtio_dev* d = &b->dev;
  b->capacity = virtio_cfg64(d, CFG_CAPACITY);
  b->size_max = has(b, VIRTIO_BLK_F_SIZE_MAX) ? virtio_cfg32(d, CFG_SIZE_MAX) : 0;
  // Without SEG_MAX a request carries one data buffer (what Linux assumes too).
  b->seg_max = has(b, VIRTIO_BLK_F_SEG_MAX) ? virtio_cfg32(d, CFG_SEG_MAX) : 1;
  if (b->seg_max == 0) b->seg_max = 1;
  b->blk_size = has(b, VIRTIO_BLK_F_BLK_SIZE) ? virtio_cfg32(d, CFG_BLK_SIZE) : BLK_SECTOR;
  if (b->blk_size == 0) b->blk_size = BLK_SECTOR;  // scenarios divide by it
  b->ro = has(b, VIRTIO_BLK_F_RO);
  b->flush = has(b, VIRTIO_BLK_F_FLUSH);
  b->discard = has(b, VIRTIO_BLK_F_DISCARD);
  if (b->discard) {
    b->max_discard_sectors = virtio_cfg32(d, CFG_MAX_DISCARD_SECTORS);
    b->max_discard_seg = virtio_cfg32(d, CFG_MAX_DISCARD_SEG);
    b->discard_align = virtio_cfg32(d, CFG_DISCARD_ALIGN);
  }
  b->write_zeroes = has(b, VIRTIO_BLK_F_WRITE_ZEROES);
  if (b->write_zeroes) {
    b->max_write_zeroes_sectors = virtio_cfg32(d, CFG_MAX_WRITE_ZEROES_SECTORS);
    b->max_write_zeroes_seg = virtio_cfg32(d, CFG_MAX_WRITE_ZEROES_SEG);
    b->write_zeroes_may_unmap = virtio_cfg8(d, CFG_WRITE_ZEROES_MAY_UNMAP) != 0;
  }
}

const char* blk_open(struct blk* b, const struct boot_info* boot, int index,
                     const struct blk_options* o, char* err, size_t n) {
  memset(b, 0, sizeof(*b));
  const char* e = mem_init(boot);
  if (e) return e;
  if ((e = virtio_find(boot, VIRTIO_ID_BLOCK, index, &b->dev, err, n))) return e;
  uint64_t want = VIRTIO_BIT(VIRTIO_BLK_F_SIZE_MAX) | VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX) |
                  VIRTIO_BIT(VIRTIO_BLK_F_RO) | VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE) |
                  VIRTIO_BIT(VIRTIO_BLK_F_FLUSH) | VIRTIO_BIT(VIRTIO_BLK_F_TOPOLOGY) |
                  VIRTIO_BIT(VIRTIO_BLK_F_DISCARD) | VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES);
  if (!o->no_event_idx) want |= VIRTIO_BIT(VIRTIO_F_RING_EVENT_IDX);
  if (o->indirect) want |= VIRTIO_BIT(VIRTIO_F_RING_INDIRECT_DESC);
  if ((e = virtio_negotiate(&b->dev, want, err, n))) return e;
  read_config(b);
  b->indirect = has(b, VIRTIO_F_RING_INDIRECT_DESC);
  uint16_t qsize = o->queue_size ? o->queue_size : 256;
  uint16_t bufs = o->max_bufs ? o->max_bufs : 1;
  if ((e = vq_init(&b->q, &b->dev, 0, qsize, b->indirect ? (uint16_t)(bufs + 2) : 0, err, n))) {
    virtio_fail(&b->dev);
    return e;
  }
  b->nslots = b->q.size;
  b->slots = mem_alloc(sizeof(struct blk_slot) * (size_t)b->nslots, 64);
  b->free_slots = mem_alloc(sizeof(uint16_t) * (size_t)b->nslots, 8);
  if (!b->slots || !b->free_slots) return "out of memory for request slots";
  for (int i = 0; i < b->nslots; i++) b->free_slots[i] = (uint16_t)(b->nslots - 1 - i);
  b->nfree = b->nslots;
  if (o->irq && (e = virtio_use_irq(&b->dev, boot, err, n))) return e;
  virtio_driver_ok(&b->dev);
  KT_LINE(
      "blk dev %d 0x%lx capacity=%lu blk_size=%u seg_max=%u size_max=%u ro=%d flush=%d "
      "discard=%u/%u write_zeroes=%u/%u queue=%u indirect=%d event_idx=%d irq=%d "
      "features=0x%lx",
      index, b->dev.base, b->capacity, b->blk_size, b->seg_max, b->size_max, b->ro, b->flush,
      b->max_discard_sectors, b->max_discard_seg, b->max_write_zeroes_sectors,
      b->max_write_zeroes_seg, b->q.size, b->indirect, b->q.event_idx, b->dev.use_irq,
      b->dev.features);
  return NULL;
}

static bool data_in(uint32_t type) {
  return type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID;
}

int blk_submit(struct blk* b, uint32_t type, uint64_t sector, const struct vq_buf* data, int nbufs,
               uint32_t cookie) {
  struct vq_buf bufs[64 + 2];
  if (nbufs < 0 || nbufs > 64 || b->nfree == 0) return -1;
  if (vq_descs_needed(&b->q, nbufs + 2, b->indirect) > b->q.num_free) return -1;
  int slot = b->free_slots[--b->nfree];
  struct blk_slot* s = &b->slots[slot];
  s->type = type;
  s->reserved = 0;
  s->sector = sector;
  s->status = STATUS_UNWRITTEN;
  s->cookie = cookie;
  s->expect = 1;
  bufs[0] = (struct vq_buf){mem_phys(s), 16};
  for (int i = 0; i < nbufs; i++) {
    bufs[1 + i] = data[i];
    if (data_in(type)) s->expect += data[i].len;
  }
  bufs[1 + nbufs] = (struct vq_buf){mem_phys(&s->status), 1};
  int out = data_in(type) ? 1 : 1 + nbufs;
  if (vq_add(&b->q, bufs, out, nbufs + 2 - out, (uint32_t)slot, b->indirect) < 0) {
    b->free_slots[b->nfree++] = (uint16_t)slot;
    return -1;
  }
  b->submitted++;
  return slot;
}

bool blk_reap(struct blk* b, struct blk_done* out) {
  uint32_t slot, len;
  if (!vq_get(&b->q, &slot, &len)) {
    if (b->q.error) b->error = b->q.error;
    return false;
  }
  struct blk_slot* s = &b->slots[slot];
  out->cookie = s->cookie;
  out->status = s->status;
  out->len = len;
  if (s->status == STATUS_UNWRITTEN)
    b->error = "the device completed a request without writing its status";
  // The device should report exactly the bytes it wrote (§2.7.8.1, a SHOULD): counted.
  if (len != s->expect && s->status == VIRTIO_BLK_S_OK) b->len_mismatches++;
  b->free_slots[b->nfree++] = (uint16_t)slot;
  return true;
}

int blk_sync(struct blk* b, uint32_t type, uint64_t sector, void* buf, uint32_t len,
             uint64_t timeout_ms) {
  struct vq_buf data = {mem_phys(buf), len};
  uint32_t cookie = 0xB10C0000u | type;
  if (blk_submit(b, type, sector, &data, buf ? 1 : 0, cookie) < 0) {
    b->error = "no free slot for a synchronous request";
    return -1;
  }
  blk_kick(b);
  uint64_t deadline = tsc_deadline_us(timeout_ms * 1000);
  struct blk_done d;
  for (;;) {
    if (!vq_wait(&b->q, deadline)) {
      b->error = "timed out waiting for the device";
      return -1;
    }
    while (blk_reap(b, &d)) {
      if (d.cookie == cookie) return b->error ? -1 : d.status;
    }
    if (b->error) return -1;
  }
}
