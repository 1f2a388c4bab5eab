// keeltest=net-bench,dir=tx|rx,size=BYTES,secs=S[,nic=N][,ip=A.B.C.D][,dst_ip=A.B.C.D]
//                   [,dst_mac=aa:bb:cc:dd:ee:ff][,port=N][,wait_s=30][,event_idx=0]
//                   [,offload=1]
//
// Polling packet benchmark on a virtio-net device.
//   dir=tx: sends identical UDP/IPv4 frames of `size` bytes (the Ethernet frame as handed to
//     the device, without FCS or virtio header: 60-1514) from ip (default 10.0.0.2) port
//     `port` to dst_ip (10.0.0.1) port `port` (default 9, discard) at dst_mac (default
//     02:00:00:00:00:02, a unicast address no bridge knows: dropped cheaply), keeping the
//     transmit queue full for S seconds. packets counts frames the device completed.
//     offload=1 leaves the UDP checksum to the device (VIRTIO_NET_F_CSUM: header flag
//     NEEDS_CSUM, csum_start 34, csum_offset 6, the pseudo-header sum in the field).
//   dir=rx: prints "keeltest: net-bench rx ready", then counts received frames (buffers are
//     reposted at once) for S seconds from the first frame. The size printed is size= when
//     given (what the host says it sends), else the average frame length seen. FAIL if
//     nothing arrives within wait_s seconds.
// Result:
//   keeltest: net-bench dir=<dir> size=<n> pps=<n> gbps=<n.nn> packets=<n>
//   keeltest: net-bench detail notifies=<n> queue=<n> event_idx=<0|1> elapsed_us=<n>
// gbps counts frame bytes (no virtio header, no FCS) in 10^9 bits per second.
#include "arch.h"
#include "inet.h"
#include "lib.h"
#include "printf.h"
#include "scenario.h"
#include "timer.h"
#include "virtio_net.h"

#define MIN_FRAME 60
#define MAX_FRAME 1514
#define STALL_SECONDS 10

struct nb {
  struct net n;
  bool tx;
  uint32_t size, secs, wait_s;
  bool size_given, offload;
  struct virtio_net_hdr hdr;  // sent with every frame
  uint16_t port;
  uint8_t ip[4], dst_ip[4], dst_mac[6];
  char err[160];
};

static void build_udp(struct nb* b, uint8_t* f) {
  uint16_t udp_len = (uint16_t)(b->size - ETH_HLEN - IPV4_HLEN);
  eth_header(f, b->dst_mac, b->n.mac, ETH_TYPE_IPV4);
  ipv4_header(f + ETH_HLEN, 0, IP_PROTO_UDP, b->ip, b->dst_ip, udp_len);
  uint8_t* u = f + ETH_HLEN + IPV4_HLEN;
  be16_put(u, b->port);
  be16_put(u + 2, b->port);
  be16_put(u + 4, udp_len);
  be16_put(u + 6, 0);
  for (uint32_t i = UDP_HLEN; i < udp_len; i++) u[i] = (uint8_t)i;
  // RFC 768 checksum over the pseudo header (addresses, protocol, length) and the datagram.
  uint8_t pseudo[12];
  memcpy(pseudo, b->ip, 4);
  memcpy(pseudo + 4, b->dst_ip, 4);
  pseudo[8] = 0;
  pseudo[9] = IP_PROTO_UDP;
  be16_put(pseudo + 10, udp_len);
  if (b->offload) {
    // RFC 1071 folded pseudo-header sum, not complemented: the device finishes the job.
    be16_put(u + 6, (uint16_t)~inet_csum(pseudo, sizeof(pseudo), 0));
    return;
  }
  uint16_t c = inet_csum(u, udp_len, inet_sum(pseudo, sizeof(pseudo), 0));
  be16_put(u + 6, c ? c : 0xFFFF);
}

static void report(const struct nb* b, const struct vq* q, uint64_t packets, uint64_t bytes,
                   uint64_t elapsed_us, uint32_t size) {
  if (elapsed_us == 0) elapsed_us = 1;
  uint64_t pps = packets * 1000000 / elapsed_us;
  uint64_t gbps100 = bytes * 8 / 10 / elapsed_us;  // bits/us = Mbit/s; /10 = Gbit/s * 100
  KT_LINE("net-bench dir=%s size=%u pps=%lu gbps=%lu.%02lu packets=%lu", b->tx ? "tx" : "rx", size,
          pps, gbps100 / 100, gbps100 % 100, packets);
  KT_LINE("net-bench detail notifies=%lu queue=%u event_idx=%d elapsed_us=%lu", q->notifies,
          q->size, q->event_idx, elapsed_us);
}

static const char* run_tx(struct nb* b) {
  struct net* n = &b->n;
  uint64_t hz = tsc_hz();
  uint32_t id;
  uint8_t* f;
  // Every buffer gets the same frame once; afterwards buffers are requeued untouched.
  while ((f = net_tx_buffer(n, &id))) {
    build_udp(b, f);
    net_tx_queue(n, id, b->size, &b->hdr);
  }
  uint64_t start = rdtsc(), end = start + hz * b->secs, last = start, now = start;
  net_tx_kick(n);
  uint64_t packets = 0;
  while ((now = rdtsc()) < end) {
    uint32_t done = net_tx_reclaim(n);
    if (n->error) return n->error;
    if (done == 0) {
      if (now - last > hz * STALL_SECONDS) return "the device stopped completing transmissions";
      cpu_relax();
      continue;
    }
    last = now;
    packets += done;
    while (net_tx_buffer(n, &id)) net_tx_queue(n, id, b->size, &b->hdr);
    net_tx_kick(n);
  }
  uint64_t elapsed_us = (now - start) * 1000000 / hz;
  // Drain what is still in flight (not counted).
  uint64_t drain = tsc_deadline_us(2000000);
  while (n->tx_nfree < n->tx.size && !tsc_passed(drain)) net_tx_reclaim(n);
  report(b, &n->tx, packets, packets * b->size, elapsed_us, b->size);
  return NULL;
}

static const char* run_rx(struct nb* b) {
  struct net* n = &b->n;
  uint64_t hz = tsc_hz();
  KT_LINE("net-bench rx ready");
  uint64_t first = tsc_deadline_us((uint64_t)b->wait_s * 1000000);
  while (!vq_has_used(&n->rx)) {
    if (tsc_passed(first)) return "no frame arrived within wait_s seconds";
    cpu_relax();
  }
  uint64_t start = rdtsc(), end = start + hz * b->secs, now, last = start;
  uint64_t packets = 0, bytes = 0;
  struct net_frame fr;
  while ((now = rdtsc()) < end) {
    uint32_t got = 0;
    while (net_rx(n, &fr)) {
      bytes += fr.len;
      got++;
      net_rx_done(n, &fr);
    }
    if (n->error) return n->error;
    if (got) {
      packets += got;
      last = now;
      net_rx_kick(n);
    } else {
      if (now - last > hz * STALL_SECONDS) break;  // the sender stopped: report what came
      cpu_relax();
    }
  }
  uint64_t elapsed_us = ((now < end ? now : end) - start) * 1000000 / hz;
  uint32_t size = b->size_given ? b->size : packets ? (uint32_t)(bytes / packets) : 0;
  report(b, &n->rx, packets, bytes, elapsed_us, size);
  return NULL;
}

static const char* parse(struct nb* b, struct scenario_ctx* ctx, struct net_options* o, int* nic) {
  const struct scenario_args* a = ctx->args;
  const char* dir = scenario_arg(a, "dir");
  if (!dir || (strcmp(dir, "tx") != 0 && strcmp(dir, "rx") != 0))
    return "dir=tx or dir=rx is required";
  b->tx = strcmp(dir, "tx") == 0;
  bool ok = true;
  b->size = (uint32_t)scenario_arg_u64(a, "size", 64, &ok);
  b->size_given = scenario_arg(a, "size") != NULL;
  b->secs = (uint32_t)scenario_arg_u64(a, "secs", 5, &ok);
  b->wait_s = (uint32_t)scenario_arg_u64(a, "wait_s", 30, &ok);
  b->port = (uint16_t)scenario_arg_u64(a, "port", 9, &ok);
  *nic = (int)scenario_arg_u64(a, "nic", 0, &ok);
  o->no_event_idx = scenario_arg_u64(a, "event_idx", 1, &ok) == 0;
  b->offload = scenario_arg_u64(a, "offload", 0, &ok) != 0;
  if (!ok) return "size, secs, wait_s, port, nic, event_idx and offload take numbers";
  if (b->size < MIN_FRAME || b->size > MAX_FRAME) return "size must be 60-1514";
  if (b->secs < 1 || b->secs > 3600) return "secs must be 1-3600";
  const char* ip = scenario_arg(a, "ip");
  const char* dst_ip = scenario_arg(a, "dst_ip");
  const char* dst_mac = scenario_arg(a, "dst_mac");
  if (!inet_parse_ip(ip ? ip : "10.0.0.2", b->ip)) return "ip must be A.B.C.D";
  if (!inet_parse_ip(dst_ip ? dst_ip : "10.0.0.1", b->dst_ip)) return "dst_ip must be A.B.C.D";
  if (!inet_parse_mac(dst_mac ? dst_mac : "02:00:00:00:00:02", b->dst_mac))
    return "dst_mac must be aa:bb:cc:dd:ee:ff";
  return NULL;
}

static int run_net_bench(struct scenario_ctx* ctx) {
  static struct nb b;
  struct net_options o = {0};
  int nic;
  const char* e = parse(&b, ctx, &o, &nic);
  if (!e) e = net_open(&b.n, ctx->boot, nic, &o, b.err, sizeof(b.err));
  if (!e && b.size > (uint32_t)b.n.mtu + ETH_HLEN) e = "size is above the device's MTU";
  if (!e && b.offload && !b.n.csum)
    e = "offload=1, but the device does not offer VIRTIO_NET_F_CSUM";
  if (b.offload) {
    b.hdr.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    b.hdr.csum_start = ETH_HLEN + IPV4_HLEN;
    b.hdr.csum_offset = 6;  // the checksum field in the UDP header
  }
  if (!e) e = b.tx ? run_tx(&b) : run_rx(&b);
  if (b.n.dev.base) virtio_reset(&b.n.dev);
  if (e) return scenario_fail(ctx, "%s", e);
  return SCENARIO_PASS;
}
KEEL_SCENARIO(net_bench, "net-bench", run_net_bench);
