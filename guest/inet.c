// Protocol helpers (see inet.h).
#include "inet.h"

#include "cmdline.h"
#include "lib.h"
#include "printf.h"

uint32_t inet_sum(const uint8_t* p, size_t n, uint32_t sum) {
  size_t i = 0;
  for (; i + 1 < n; i += 2) sum += (uint32_t)(p[i] << 8 | p[i + 1]);
  if (i < n) sum += (uint32_t)p[i] << 8;
  return sum;
}

uint16_t inet_csum(const uint8_t* p, size_t n, uint32_t sum) {
  sum = inet_sum(p, n, sum);
  while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
  return (uint16_t)~sum;
}

// Parses `count` numbers separated by `sep`, each at most `max`, in base `base`.
static bool parse_fields(const char* s, char sep, int count, unsigned base, unsigned max,
                         uint8_t* out) {
  for (int i = 0; i < count; i++) {
    size_t n = 0;
    while (s[n] && s[n] != sep) n++;
    if (n == 0 || n > 3) return false;
    char buf[8] = "0x";
    uint64_t v;
    if (base == 16) {
      memcpy(buf + 2, s, n);
      if (!parse_u64(buf, n + 2, &v)) return false;
    } else if (!parse_u64(s, n, &v) || (n > 1 && s[0] == '0')) {
      return false;
    }
    if (v > max) return false;
    out[i] = (uint8_t)v;
    s += n;
    if (i + 1 < count && *s++ != sep) return false;
  }
  return *s == '\0';
}

bool inet_parse_ip(const char* s, uint8_t ip[4]) { return parse_fields(s, '.', 4, 10, 255, ip); }
bool inet_parse_mac(const char* s, uint8_t mac[6]) { return parse_fields(s, ':', 6, 16, 255, mac); }

void inet_ip_text(const uint8_t ip[4], char out[16]) {
  fmt_snprintf(out, 16, "%u.%u.%u.%u", ip[0], ip[1], ip[2], ip[3]);
}

void eth_header(uint8_t* f, const uint8_t dst[6], const uint8_t src[6], uint16_t type) {
  memcpy(f, dst, 6);
  memcpy(f + 6, src, 6);
  be16_put(f + 12, type);
}

// RFC 791: version/IHL @0, total length @2, identification @4, flags/fragment @6, TTL @8,
// protocol @9, header checksum @10, source @12, destination @16.
void ipv4_header(uint8_t* p, uint16_t id, uint8_t proto, const uint8_t src[4], const uint8_t dst[4],
                 uint16_t payload) {
  p[0] = 0x45;
  p[1] = 0;
  be16_put(p + 2, (uint16_t)(IPV4_HLEN + payload));
  be16_put(p + 4, id);
  be16_put(p + 6, 0x4000);  // don't fragment
  p[8] = 64;
  p[9] = proto;
  be16_put(p + 10, 0);
  memcpy(p + 12, src, 4);
  memcpy(p + 16, dst, 4);
  be16_put(p + 10, inet_csum(p, IPV4_HLEN, 0));
}

// RFC 826: hardware type @0, protocol type @2, lengths @4/@5, operation @6, sender MAC @8,
// sender IP @14, target MAC @18, target IP @24.
void arp_packet(uint8_t* p, uint16_t op, const uint8_t sha[6], const uint8_t spa[4],
                const uint8_t tha[6], const uint8_t tpa[4]) {
  be16_put(p, 1);
  be16_put(p + 2, ETH_TYPE_IPV4);
  p[4] = 6;
  p[5] = 4;
  be16_put(p + 6, op);
  memcpy(p + 8, sha, 6);
  memcpy(p + 14, spa, 4);
  memcpy(p + 18, tha, 6);
  memcpy(p + 24, tpa, 4);
}
