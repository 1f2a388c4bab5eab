// keeltest=net-ping,ip=A.B.C.D,peer=A.B.C.D[,mask=24][,count=3][,serve_s=10][,irq=1]
//                  [,disk=..][,nic=N][,timeout_ms=1000]
//
// IPv4 on the Nth virtio-net device (nic=, default 0), with the address `ip`:
//   - answers ARP requests for `ip` and ICMP echo requests to it, all the time;
//   - resolves `peer` with ARP (a request every 250 ms, up to 5 s), then sends `count`
//     ICMP echo requests to it, one at a time, waiting up to timeout_ms for each reply:
//       keeltest: net-ping reply from <peer> seq=<n>
//       keeltest: net-ping <got>/<count> replies from <peer> rtt_min_us=<n> rtt_max_us=<n>
//   - then keeps answering for serve_s seconds (so the host can ping the guest):
//       keeltest: net-ping serving <serve_s> s
//       keeltest: net-ping answered <n> echo requests
// PASS when every echo request got its reply. Checksums are computed and checked in
// software (IPv4 header always; ICMP unless the device marked the frame NEEDS_CSUM or
// DATA_VALID); bad ones are dropped and counted in the last line
// ("keeltest: net-ping dropped bad_csum=<n> other=<n>").
// irq=1 waits for receive interrupts (sti; hlt) instead of polling.
#include "arch.h"
#include "inet.h"
#include "lib.h"
#include "printf.h"
#include "scenario.h"
#include "timer.h"
#include "virtio_net.h"

#define PING_IDENT 0x4b54  // "KT"
#define PING_PAYLOAD 56
#define ARP_RETRY_US 250000
#define ARP_TIMEOUT_US 5000000

struct ping {
  struct net n;
  uint8_t ip[4], peer[4], peer_mac[6];
  uint32_t mask;
  bool have_peer_mac;
  char peer_text[16];
  uint16_t ip_id;
  // The echo request in flight.
  uint16_t waiting_seq;
  bool got_reply;
  uint64_t answered, bad_csum, other;
  char err[160];
};

static const uint8_t kBroadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

// Sends `len` bytes built by the caller in the buffer returned here. Waits (reclaiming)
// when every transmit buffer is in flight.
static uint8_t* tx_begin(struct ping* p, uint32_t* id) {
  uint8_t* f;
  uint64_t deadline = tsc_deadline_us(1000000);
  while (!(f = net_tx_buffer(&p->n, id))) {
    net_tx_reclaim(&p->n);
    if (tsc_passed(deadline)) return NULL;
    cpu_relax();
  }
  return f;
}

static void tx_end(struct ping* p, uint32_t id, uint32_t len) {
  net_tx_queue(&p->n, id, len, NULL);
  net_tx_kick(&p->n);
}

static void send_arp(struct ping* p, uint16_t op, const uint8_t dst_mac[6], const uint8_t tha[6],
                     const uint8_t tpa[4]) {
  uint32_t id;
  uint8_t* f = tx_begin(p, &id);
  if (!f) return;
  eth_header(f, dst_mac, p->n.mac, ETH_TYPE_ARP);
  arp_packet(f + ETH_HLEN, op, p->n.mac, p->ip, tha, tpa);
  memset(f + ETH_HLEN + ARP_LEN, 0, 60 - ETH_HLEN - ARP_LEN);  // pad to the Ethernet minimum
  tx_end(p, id, 60);
}

static void send_echo_request(struct ping* p, uint16_t seq) {
  uint32_t id;
  uint8_t* f = tx_begin(p, &id);
  if (!f) return;
  uint16_t icmp_len = ICMP_HLEN + PING_PAYLOAD;
  eth_header(f, p->peer_mac, p->n.mac, ETH_TYPE_IPV4);
  ipv4_header(f + ETH_HLEN, p->ip_id++, IP_PROTO_ICMP, p->ip, p->peer, icmp_len);
  uint8_t* icmp = f + ETH_HLEN + IPV4_HLEN;
  icmp[0] = ICMP_ECHO_REQUEST;
  icmp[1] = 0;
  be16_put(icmp + 2, 0);
  be16_put(icmp + 4, PING_IDENT);
  be16_put(icmp + 6, seq);
  for (int i = 0; i < PING_PAYLOAD; i++) icmp[ICMP_HLEN + i] = (uint8_t)(0x20 + i);
  be16_put(icmp + 2, inet_csum(icmp, icmp_len, 0));
  tx_end(p, id, ETH_HLEN + IPV4_HLEN + icmp_len);
}

// Echo reply to a request: the same frame with MACs, addresses and the type swapped.
static void send_echo_reply(struct ping* p, const uint8_t* req, uint32_t ihl, uint32_t ip_len) {
  uint32_t id;
  uint8_t* f = tx_begin(p, &id);
  if (!f) return;
  uint32_t icmp_len = ip_len - ihl;
  eth_header(f, req + 6, p->n.mac, ETH_TYPE_IPV4);
  ipv4_header(f + ETH_HLEN, p->ip_id++, IP_PROTO_ICMP, p->ip, req + ETH_HLEN + 12,
              (uint16_t)icmp_len);
  uint8_t* icmp = f + ETH_HLEN + IPV4_HLEN;
  memcpy(icmp, req + ETH_HLEN + ihl, icmp_len);
  icmp[0] = ICMP_ECHO_REPLY;
  be16_put(icmp + 2, 0);
  be16_put(icmp + 2, inet_csum(icmp, icmp_len, 0));
  tx_end(p, id, ETH_HLEN + IPV4_HLEN + icmp_len);
  p->answered++;
}

static void handle_arp(struct ping* p, const uint8_t* f, uint32_t len) {
  const uint8_t* a = f + ETH_HLEN;
  if (len < ETH_HLEN + ARP_LEN || be16_get(a) != 1 || be16_get(a + 2) != ETH_TYPE_IPV4 ||
      a[4] != 6 || a[5] != 4) {
    p->other++;
    return;
  }
  uint16_t op = be16_get(a + 6);
  if (memcmp(a + 14, p->peer, 4) == 0) {  // anything from the peer tells us its MAC
    memcpy(p->peer_mac, a + 8, 6);
    p->have_peer_mac = true;
  }
  if (op == ARP_REQUEST && memcmp(a + 24, p->ip, 4) == 0)
    send_arp(p, ARP_REPLY, a + 8, a + 8, a + 14);
}

static void handle_ipv4(struct ping* p, const struct net_frame* fr) {
  const uint8_t* f = fr->data;
  const uint8_t* ip = f + ETH_HLEN;
  uint32_t ihl = (uint32_t)(ip[0] & 0xF) * 4;
  if (fr->len < ETH_HLEN + IPV4_HLEN || (ip[0] >> 4) != 4 || ihl < IPV4_HLEN) {
    p->other++;
    return;
  }
  uint32_t ip_len = be16_get(ip + 2);
  if (ip_len < ihl || ip_len > fr->len - ETH_HLEN) {
    p->other++;
    return;
  }
  if (inet_csum(ip, ihl, 0) != 0) {
    p->bad_csum++;
    return;
  }
  // Only unfragmented ICMP to our address.
  if (memcmp(ip + 16, p->ip, 4) != 0 || ip[9] != IP_PROTO_ICMP || (be16_get(ip + 6) & 0x3FFF)) {
    p->other++;
    return;
  }
  const uint8_t* icmp = ip + ihl;
  uint32_t icmp_len = ip_len - ihl;
  bool offloaded = fr->hdr->flags & (VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID);
  if (icmp_len < ICMP_HLEN) {
    p->other++;
    return;
  }
  if (!offloaded && inet_csum(icmp, icmp_len, 0) != 0) {
    p->bad_csum++;
    return;
  }
  if (icmp[0] == ICMP_ECHO_REQUEST && icmp[1] == 0) {
    send_echo_reply(p, f, ihl, ip_len);
  } else if (icmp[0] == ICMP_ECHO_REPLY && be16_get(icmp + 4) == PING_IDENT &&
             memcmp(ip + 12, p->peer, 4) == 0 && be16_get(icmp + 6) == p->waiting_seq) {
    p->got_reply = true;
  } else {
    p->other++;
  }
}

// Handles every received frame, then gives the buffers back.
static const char* poll_rx(struct ping* p) {
  struct net_frame fr;
  while (net_rx(&p->n, &fr)) {
    uint16_t type = fr.len >= ETH_HLEN ? be16_get(fr.data + 12) : 0;
    if (type == ETH_TYPE_ARP) {
      handle_arp(p, fr.data, fr.len);
    } else if (type == ETH_TYPE_IPV4) {
      handle_ipv4(p, &fr);
    } else {
      p->other++;
    }
    net_rx_done(&p->n, &fr);
  }
  net_rx_kick(&p->n);
  net_tx_reclaim(&p->n);
  return p->n.error;
}

// Serves the network until `done` says so or `deadline` passes.
static const char* run_until(struct ping* p, uint64_t deadline, bool (*done)(struct ping*)) {
  for (;;) {
    const char* e = poll_rx(p);
    if (e) return e;
    if ((done && done(p)) || tsc_passed(deadline)) return NULL;
    vq_wait(&p->n.rx, deadline);
  }
}

static bool have_mac(struct ping* p) { return p->have_peer_mac; }
static bool have_reply(struct ping* p) { return p->got_reply; }

static const char* parse(struct ping* p, struct scenario_ctx* ctx, uint64_t* count,
                         uint64_t* serve_s, uint64_t* timeout_ms, struct net_options* o, int* nic) {
  const struct scenario_args* a = ctx->args;
  const char* ip = scenario_arg(a, "ip");
  const char* peer = scenario_arg(a, "peer");
  if (!ip || !inet_parse_ip(ip, p->ip)) return "ip=A.B.C.D is required";
  if (!peer || !inet_parse_ip(peer, p->peer)) return "peer=A.B.C.D is required";
  bool ok = true;
  uint64_t mask = scenario_arg_u64(a, "mask", 24, &ok);
  *count = scenario_arg_u64(a, "count", 3, &ok);
  *serve_s = scenario_arg_u64(a, "serve_s", 10, &ok);
  *timeout_ms = scenario_arg_u64(a, "timeout_ms", 1000, &ok);
  *nic = (int)scenario_arg_u64(a, "nic", 0, &ok);
  o->irq = scenario_arg_u64(a, "irq", 0, &ok) != 0;
  o->no_event_idx = scenario_arg_u64(a, "event_idx", 1, &ok) == 0;
  o->no_mrg_rxbuf = scenario_arg_u64(a, "mrg_rxbuf", 1, &ok) == 0;
  if (!ok) return "mask, count, serve_s, timeout_ms, nic, irq, event_idx, mrg_rxbuf take numbers";
  if (mask < 1 || mask > 30) return "mask must be 1-30";
  if (*count > 1000 || *serve_s > 3600) return "count must be at most 1000, serve_s 3600";
  p->mask = mask == 32 ? ~0u : ~0u << (32 - mask);
  uint32_t a32 = (uint32_t)p->ip[0] << 24 | p->ip[1] << 16 | p->ip[2] << 8 | p->ip[3];
  uint32_t b32 = (uint32_t)p->peer[0] << 24 | p->peer[1] << 16 | p->peer[2] << 8 | p->peer[3];
  if ((a32 & p->mask) != (b32 & p->mask) || a32 == b32)
    return "peer must be another address in ip's subnet (there is no gateway support)";
  inet_ip_text(p->peer, p->peer_text);
  return NULL;
}

static int run_net_ping(struct scenario_ctx* ctx) {
  static struct ping p;
  uint64_t count, serve_s, timeout_ms;
  struct net_options o = {0};
  int nic;
  const char* e = parse(&p, ctx, &count, &serve_s, &timeout_ms, &o, &nic);
  if (e) return scenario_fail(ctx, "%s", e);
  if ((e = net_open(&p.n, ctx->boot, nic, &o, p.err, sizeof(p.err))))
    return scenario_fail(ctx, "%s", e);
  uint64_t hz = tsc_hz();

  // Resolve the peer.
  uint64_t arp_deadline = tsc_deadline_us(ARP_TIMEOUT_US);
  static const uint8_t zero_mac[6];
  while (!e && !p.have_peer_mac && !tsc_passed(arp_deadline)) {
    send_arp(&p, ARP_REQUEST, kBroadcast, zero_mac, p.peer);
    e = run_until(&p, tsc_deadline_us(ARP_RETRY_US), have_mac);
  }
  if (!e && !p.have_peer_mac) e = "no ARP reply from the peer within 5 s";

  // Ping it.
  uint64_t got = 0, rtt_min = ~0ULL, rtt_max = 0;
  for (uint64_t seq = 1; !e && seq <= count; seq++) {
    p.waiting_seq = (uint16_t)seq;
    p.got_reply = false;
    uint64_t sent = rdtsc();
    send_echo_request(&p, (uint16_t)seq);
    e = run_until(&p, tsc_deadline_us(timeout_ms * 1000), have_reply);
    if (e || !p.got_reply) continue;
    uint64_t rtt_us = (rdtsc() - sent) * 1000000 / hz;
    rtt_min = rtt_us < rtt_min ? rtt_us : rtt_min;
    rtt_max = rtt_us > rtt_max ? rtt_us : rtt_max;
    got++;
    KT_LINE("net-ping reply from %s seq=%lu", p.peer_text, seq);
  }
  if (!e) {
    KT_LINE("net-ping %lu/%lu replies from %s rtt_min_us=%lu rtt_max_us=%lu", got, count,
            p.peer_text, got ? rtt_min : 0, rtt_max);
    // Keep serving, so the host can ping us.
    KT_LINE("net-ping serving %lu s", serve_s);
    e = run_until(&p, tsc_deadline_us(serve_s * 1000000), NULL);
  }
  KT_LINE("net-ping answered %lu echo requests", p.answered);
  KT_LINE("net-ping dropped bad_csum=%lu other=%lu rx_frames=%lu tx_frames=%lu irqs=%lu",
          p.bad_csum, p.other, p.n.rx_frames, p.n.tx_frames, p.n.dev.irqs);
  virtio_reset(&p.n.dev);
  if (e) return scenario_fail(ctx, "%s", e);
  if (got != count)
    return scenario_fail(ctx, "%lu of %lu echo requests to %s got no reply", count - got, count,
                         p.peer_text);
  return SCENARIO_PASS;
}
KEEL_SCENARIO(net_ping, "net-ping", run_net_ping);
