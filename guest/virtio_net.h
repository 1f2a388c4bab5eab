// virtio-net driver (virtio 1.2 §5.1) for the guest's network scenarios: receiveq1 (queue 0)
// kept full of buffers, transmitq1 (queue 1), no control queue. Every frame travels behind
// the 12-byte struct virtio_net_hdr_v1 (VERSION_1 makes num_buffers always present).
//
// Usage:
//   static struct net n;
//   struct net_options o = {0};
//   if ((e = net_open(&n, boot, 0, &o, err, sizeof(err)))) fail(e);
//   struct net_frame f;
//   while (net_rx(&n, &f)) { ...f.data, f.len...; net_rx_done(&n, &f); }
//   net_rx_kick(&n);                     // reposted buffers become visible
//   uint8_t* p = net_tx_buffer(&n, &id); // room for one frame; fill it
//   net_tx_queue(&n, id, len, NULL); net_tx_kick(&n);
//   net_tx_reclaim(&n);                  // take back sent buffers
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "virtio.h"

// Feature bits (§5.1.3).
#define VIRTIO_NET_F_CSUM 0
#define VIRTIO_NET_F_GUEST_CSUM 1
#define VIRTIO_NET_F_MTU 3
#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_MRG_RXBUF 15
#define VIRTIO_NET_F_STATUS 16
#define VIRTIO_NET_S_LINK_UP 1

// struct virtio_net_hdr_v1 (§5.1.6).
#define VIRTIO_NET_HDR_F_NEEDS_CSUM 1
#define VIRTIO_NET_HDR_F_DATA_VALID 2
struct virtio_net_hdr {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
  uint16_t num_buffers;
};
_Static_assert(sizeof(struct virtio_net_hdr) == 12, "virtio_net_hdr_v1 is 12 bytes");

struct net_options {
  bool irq;             // interrupt mode for the receive queue (virtio.h)
  bool no_event_idx;    // do not accept VIRTIO_F_RING_EVENT_IDX
  bool no_mrg_rxbuf;    // do not accept VIRTIO_NET_F_MRG_RXBUF
  bool no_csum;         // accept neither CSUM nor GUEST_CSUM
  uint16_t queue_size;  // wanted size of each queue (0: 256)
};

struct net {
  struct virtio_dev dev;
  struct vq rx, tx;
  uint8_t mac[6];
  uint16_t mtu;
  int link;  // 1 up, 0 down, -1 unknown (no STATUS)
  bool mrg_rxbuf, csum, guest_csum;
  uint32_t buf_size;  // bytes per buffer, header included
  uint8_t* rx_bufs;   // rx.size buffers
  uint8_t* tx_bufs;   // tx.size buffers
  uint16_t* tx_free;
  int tx_nfree;
  uint64_t rx_frames, rx_dropped, tx_frames;
  const char* error;  // the device broke the protocol
};

// Finds the `index`th network device, negotiates (VERSION_1, MAC, MTU, STATUS, CSUM,
// GUEST_CSUM, MRG_RXBUF, EVENT_IDX unless told otherwise), reads MAC/MTU/status, fills
// the receive queue, sets DRIVER_OK. Prints "keeltest: net dev ...". NULL or what failed.
const char* net_open(struct net* n, const struct boot_info* boot, int index,
                     const struct net_options* o, char* err, size_t err_len);

// Re-reads the link status (config space; STATUS feature). 1 up, 0 down, -1 unknown.
int net_link(struct net* n);

struct net_frame {
  uint32_t id;  // the buffer, for net_rx_done
  const struct virtio_net_hdr* hdr;
  uint8_t* data;  // the Ethernet frame
  uint32_t len;
};
// Takes one received frame. False when none (or n->error). Frames that span several
// buffers (MRG_RXBUF, num_buffers > 1) are dropped and counted in rx_dropped.
bool net_rx(struct net* n, struct net_frame* f);
// Gives a received buffer back to the device (visible after net_rx_kick).
void net_rx_done(struct net* n, const struct net_frame* f);
static inline void net_rx_kick(struct net* n) { vq_kick(&n->rx); }

// Room for one frame to send (n->buf_size - 12 bytes), or NULL when every buffer is in
// flight (call net_tx_reclaim). *id names it for net_tx_queue.
uint8_t* net_tx_buffer(struct net* n, uint32_t* id);
// Queues buffer `id` holding a `len`-byte frame; `hdr` NULL sends a zero header.
void net_tx_queue(struct net* n, uint32_t id, uint32_t len, const struct virtio_net_hdr* hdr);
static inline void net_tx_kick(struct net* n) { vq_kick(&n->tx); }
// Takes back the buffers the device has sent; returns how many.
uint32_t net_tx_reclaim(struct net* n);
