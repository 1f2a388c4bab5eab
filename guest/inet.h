// Ethernet, ARP, IPv4, ICMP and UDP as the guest's network scenarios need them: header
// layouts as byte offsets (network byte order on the wire), the Internet checksum, and
// address parsing/printing.
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ETH_HLEN 14
#define ETH_TYPE_IPV4 0x0800
#define ETH_TYPE_ARP 0x0806
#define ARP_LEN 28  // Ethernet/IPv4 ARP (RFC 826)
#define ARP_REQUEST 1
#define ARP_REPLY 2
#define IPV4_HLEN 20  // without options
#define IP_PROTO_ICMP 1
#define IP_PROTO_UDP 17
#define ICMP_ECHO_REPLY 0
#define ICMP_ECHO_REQUEST 8
#define ICMP_HLEN 8
#define UDP_HLEN 8

static inline uint16_t be16_get(const uint8_t* p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline void be16_put(uint8_t* p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

// The Internet checksum (RFC 1071) of p[0..n), starting from a partial sum `sum`
// (inet_sum) and folded and complemented (inet_csum). A correct header sums to 0.
uint32_t inet_sum(const uint8_t* p, size_t n, uint32_t sum);
uint16_t inet_csum(const uint8_t* p, size_t n, uint32_t sum);

// "a.b.c.d" and "aa:bb:cc:dd:ee:ff". False when malformed.
bool inet_parse_ip(const char* s, uint8_t ip[4]);
bool inet_parse_mac(const char* s, uint8_t mac[6]);
// Formats into out (16 / 18 bytes).
void inet_ip_text(const uint8_t ip[4], char out[16]);

// Writes an Ethernet header at f.
void eth_header(uint8_t* f, const uint8_t dst[6], const uint8_t src[6], uint16_t type);
// Writes an IPv4 header (no options, DF, TTL 64) at p for `payload` bytes of `proto`,
// checksum included.
void ipv4_header(uint8_t* p, uint16_t id, uint8_t proto, const uint8_t src[4], const uint8_t dst[4],
                 uint16_t payload);
// Writes an Ethernet/IPv4 ARP packet at p.
void arp_packet(uint8_t* p, uint16_t op, const uint8_t sha[6], const uint8_t spa[4],
                const uint8_t tha[6], const uint8_t tpa[4]);
