// virtio-blk driver (virtio 1.2 §5.2) for the guest's block scenarios: one request queue,
// requests laid out as header (device-readable) / data buffers / status byte
// (device-writable), in a chain or as one indirect descriptor.
//
// Usage:
//   static struct blk b;
//   struct blk_options o = {.indirect = true};
//   if ((e = blk_open(&b, boot, 0, &o, err, sizeof(err)))) fail(e);
//   int slot = blk_submit(&b, VIRTIO_BLK_T_IN, sector, bufs, nbufs, cookie);
//   blk_kick(&b);                    // one notification for everything submitted
//   vq_wait(&b.q, deadline);         // spin, or halt for the interrupt in irq mode
//   while (blk_reap(&b, &c)) ...     // c.cookie, c.status
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "virtio.h"

// Feature bits (§5.2.3).
#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_TOPOLOGY 10
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

// Request types and status values (§5.2.6).
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2
#define VIRTIO_BLK_ID_BYTES 20
#define VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP 1

#define BLK_SECTOR 512

// The data of a DISCARD or WRITE_ZEROES request: one segment.
struct virtio_blk_discard_write_zeroes {
  uint64_t sector;
  uint32_t num_sectors;
  uint32_t flags;
};

struct blk_options {
  bool indirect;        // multi-buffer requests as one indirect descriptor, when offered
  bool no_event_idx;    // do not accept VIRTIO_F_RING_EVENT_IDX
  bool irq;             // interrupt mode (see virtio.h)
  uint16_t queue_size;  // wanted size (0: 256)
  uint16_t max_bufs;    // most data buffers one request will carry (0: 1)
};

struct blk_slot;  // per in-flight request: header and status (DMA memory)

struct blk {
  struct virtio_dev dev;
  struct vq q;
  bool indirect;  // in use (asked for and negotiated)
  // Configuration (§5.2.4); limits are 0 when the feature was not offered.
  uint64_t capacity;  // 512-byte sectors
  uint32_t blk_size, seg_max, size_max;
  uint32_t max_discard_sectors, max_discard_seg, discard_align;
  uint32_t max_write_zeroes_sectors, max_write_zeroes_seg;
  bool write_zeroes_may_unmap;
  bool ro, flush, discard, write_zeroes;
  // Slots: one per request in flight (at most the queue size).
  struct blk_slot* slots;
  uint16_t* free_slots;
  int nfree, nslots;
  uint64_t submitted, len_mismatches;
  const char* error;  // the device broke the protocol (set by blk_reap)
};

// Finds the `index`th block device, negotiates (VERSION_1, SIZE_MAX, SEG_MAX, RO,
// BLK_SIZE, FLUSH, TOPOLOGY, DISCARD, WRITE_ZEROES, EVENT_IDX and INDIRECT_DESC unless
// told otherwise), reads the configuration, sets up the queue and DRIVER_OK. Prints
// "keeltest: blk dev ..." with what it found. Returns NULL or what failed.
const char* blk_open(struct blk* b, const struct boot_info* boot, int index,
                     const struct blk_options* o, char* err, size_t err_len);

// Queues a request (visible to the device at the next blk_kick). `data` buffers are
// device-readable for OUT, DISCARD and WRITE_ZEROES, device-writable for IN and GET_ID;
// FLUSH has none. Returns the slot, or -1 when no slot or descriptors are free.
int blk_submit(struct blk* b, uint32_t type, uint64_t sector, const struct vq_buf* data, int nbufs,
               uint32_t cookie);
static inline void blk_kick(struct blk* b) { vq_kick(&b->q); }

struct blk_done {
  uint32_t cookie;
  uint8_t status;  // 0xFF: the device never wrote it (b->error is set too)
  uint32_t len;    // bytes the device says it wrote
};
// Takes one completed request. False when none (check b->error / b->q.error).
bool blk_reap(struct blk* b, struct blk_done* out);

// Submits one request and waits for it (up to timeout_ms). Returns its status, or -1 on
// a timeout or protocol error (b->error says which).
int blk_sync(struct blk* b, uint32_t type, uint64_t sector, void* buf, uint32_t len,
             uint64_t timeout_ms);
