// virtio-net driver (see virtio_net.h).
#include "virtio_net.h"

#include "lib.h"
#include "mem.h"
#include "printf.h"

#define RX_QUEUE 0
#define TX_QUEUE 1
#define HDR_LEN sizeof(struct virtio_net_hdr)

// Configuration offsets (§5.1.4, struct virtio_net_config).
#define CFG_MAC 0
#define CFG_STATUS 6
#define CFG_MTU 10

// Used when the device offers no MAC: locally administered, unicast.
static const uint8_t kDefaultMac[6] = {0x02, 0x00, 0x00, 0x4b, 0x45, 0x4c};

static bool has(const struct net* n, int bit) { return (n->dev.features & VIRTIO_BIT(bit)) != 0; }

int net_link(struct net* n) {
  if (!has(n, VIRTIO_NET_F_STATUS)) return n->link = -1;
  return n->link = (virtio_cfg16(&n->dev, CFG_STATUS) & VIRTIO_NET_S_LINK_UP) ? 1 : 0;
}

static uint8_t* rx_buf(const struct net* n, uint32_t id) {
  return n->rx_bufs + (size_t)id * n->buf_size;
}
static uint8_t* tx_buf(const struct net* n, uint32_t id) {
  return n->tx_bufs + (size_t)id * n->buf_size;
}

static void rx_post(struct net* n, uint32_t id) {
  struct vq_buf b = {mem_phys(rx_buf(n, id)), n->buf_size};
  vq_add(&n->rx, &b, 0, 1, id, false);
}

const char* net_open(struct net* n, const struct boot_info* boot, int index,
                     const struct net_options* o, char* err, size_t errn) {
  memset(n, 0, sizeof(*n));
  const char* e = mem_init(boot);
  if (e) return e;
  if ((e = virtio_find(boot, VIRTIO_ID_NET, index, &n->dev, err, errn))) return e;
  uint64_t want =
      VIRTIO_BIT(VIRTIO_NET_F_MAC) | VIRTIO_BIT(VIRTIO_NET_F_MTU) | VIRTIO_BIT(VIRTIO_NET_F_STATUS);
  if (!o->no_csum) want |= VIRTIO_BIT(VIRTIO_NET_F_CSUM) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM);
  if (!o->no_mrg_rxbuf) want |= VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF);
  if (!o->no_event_idx) want |= VIRTIO_BIT(VIRTIO_F_RING_EVENT_IDX);
  if ((e = virtio_negotiate(&n->dev, want, err, errn))) return e;
  n->mrg_rxbuf = has(n, VIRTIO_NET_F_MRG_RXBUF);
  n->csum = has(n, VIRTIO_NET_F_CSUM);
  n->guest_csum = has(n, VIRTIO_NET_F_GUEST_CSUM);
  if (has(n, VIRTIO_NET_F_MAC)) {
    for (int i = 0; i < 6; i++) n->mac[i] = virtio_cfg8(&n->dev, CFG_MAC + i);
  } else {
    memcpy(n->mac, kDefaultMac, 6);
  }
  n->mtu = has(n, VIRTIO_NET_F_MTU) ? virtio_cfg16(&n->dev, CFG_MTU) : 1500;
  net_link(n);
  // Without MRG_RXBUF every buffer must hold a whole frame (§5.1.6.3.1): header, Ethernet
  // header, a VLAN tag and the MTU.
  uint32_t frame = (n->mtu > 1500 ? n->mtu : 1500) + 14 + 4;
  n->buf_size = ((uint32_t)HDR_LEN + frame + 63) & ~63u;
  if (n->buf_size < 2048) n->buf_size = 2048;
  uint16_t qsize = o->queue_size ? o->queue_size : 256;
  if ((e = vq_init(&n->rx, &n->dev, RX_QUEUE, qsize, 0, err, errn)) ||
      (e = vq_init(&n->tx, &n->dev, TX_QUEUE, qsize, 0, err, errn))) {
    virtio_fail(&n->dev);
    return e;
  }
  n->rx_bufs = mem_alloc((size_t)n->rx.size * n->buf_size, 4096);
  n->tx_bufs = mem_alloc((size_t)n->tx.size * n->buf_size, 4096);
  n->tx_free = mem_alloc(sizeof(uint16_t) * n->tx.size, 8);
  if (!n->rx_bufs || !n->tx_bufs || !n->tx_free) return "out of memory for packet buffers";
  for (uint32_t i = 0; i < n->tx.size; i++) n->tx_free[i] = (uint16_t)(n->tx.size - 1 - i);
  n->tx_nfree = n->tx.size;
  for (uint32_t i = 0; i < n->rx.size; i++) rx_post(n, i);
  if (o->irq && (e = virtio_use_irq(&n->dev, boot, err, errn))) return e;
  virtio_driver_ok(&n->dev);
  net_rx_kick(n);  // §3.1.1: no notification before DRIVER_OK (the buffers went in before)
  KT_LINE(
      "net dev %d 0x%lx mac=%02x:%02x:%02x:%02x:%02x:%02x mtu=%u link=%s rx_queue=%u "
      "tx_queue=%u mrg_rxbuf=%d csum=%d guest_csum=%d event_idx=%d irq=%d features=0x%lx",
      index, n->dev.base, n->mac[0], n->mac[1], n->mac[2], n->mac[3], n->mac[4], n->mac[5], n->mtu,
      n->link > 0    ? "up"
      : n->link == 0 ? "down"
                     : "unknown",
      n->rx.size, n->tx.size, n->mrg_rxbuf, n->csum, n->guest_csum, n->rx.event_idx, n->dev.use_irq,
      n->dev.features);
  return NULL;
}

bool net_rx(struct net* n, struct net_frame* f) {
  uint32_t id, len;
  for (;;) {
    if (!vq_get(&n->rx, &id, &len)) {
      if (n->rx.error) n->error = n->rx.error;
      return false;
    }
    uint8_t* b = rx_buf(n, id);
    const struct virtio_net_hdr* h = (const struct virtio_net_hdr*)b;
    if (len < HDR_LEN || len > n->buf_size) {
      n->error = "the device returned a receive buffer with an impossible length";
      return false;
    }
    uint16_t extra = n->mrg_rxbuf && h->num_buffers > 1 ? (uint16_t)(h->num_buffers - 1) : 0;
    if (extra == 0) {
      *f = (struct net_frame){id, h, b + HDR_LEN, len - (uint32_t)HDR_LEN};
      n->rx_frames++;
      return true;
    }
    // A frame larger than one buffer: drop it and the buffers it continues in.
    rx_post(n, id);
    for (uint16_t i = 0; i < extra; i++) {
      if (!vq_get(&n->rx, &id, &len)) {
        n->error = "a merged receive frame names more buffers than the device returned";
        return false;
      }
      rx_post(n, id);
    }
    n->rx_dropped++;
  }
}

void net_rx_done(struct net* n, const struct net_frame* f) { rx_post(n, f->id); }

uint8_t* net_tx_buffer(struct net* n, uint32_t* id) {
  if (n->tx_nfree == 0) return NULL;
  *id = n->tx_free[--n->tx_nfree];
  return tx_buf(n, *id) + HDR_LEN;
}

void net_tx_queue(struct net* n, uint32_t id, uint32_t len, const struct virtio_net_hdr* hdr) {
  uint8_t* b = tx_buf(n, id);
  if (hdr) {
    memcpy(b, hdr, HDR_LEN);
  } else {
    memset(b, 0, HDR_LEN);
  }
  struct vq_buf v = {mem_phys(b), (uint32_t)HDR_LEN + len};
  vq_add(&n->tx, &v, 1, 0, id, false);
}

uint32_t net_tx_reclaim(struct net* n) {
  uint32_t id, len, count = 0;
  while (vq_get(&n->tx, &id, &len)) {
    n->tx_free[n->tx_nfree++] = (uint16_t)id;
    count++;
  }
  if (n->tx.error) n->error = n->tx.error;
  n->tx_frames += count;
  return count;
}
