// Command line parsing (see cmdline.h).
#include "cmdline.h"

#include "lib.h"

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

const char* cmdline_find_next(const char** cursor, const char* prefix, size_t* len) {
  size_t plen = strlen(prefix);
  const char* p = *cursor;
  while (*p) {
    while (is_space(*p)) p++;
    const char* start = p;
    while (*p && !is_space(*p)) p++;
    if ((size_t)(p - start) >= plen && strncmp(start, prefix, plen) == 0) {
      *len = (size_t)(p - start) - plen;
      *cursor = p;
      return start + plen;
    }
  }
  *cursor = p;
  return NULL;
}

const char* cmdline_find(const char* cmdline, const char* prefix, size_t* len) {
  const char* cursor = cmdline;
  return cmdline_find_next(&cursor, prefix, len);
}

// Copies s[0..n) into dst (cap bytes); false if it does not fit.
static bool copy_field(char* dst, size_t cap, const char* s, size_t n) {
  if (n >= cap) return false;
  memcpy(dst, s, n);
  dst[n] = '\0';
  return true;
}

static size_t span_until(const char* s, size_t n, const char* stops) {
  size_t i = 0;
  for (; i < n; i++) {
    for (const char* c = stops; *c; c++) {
      if (s[i] == *c) return i;
    }
  }
  return i;
}

const char* scenario_args_parse(const char* spec, size_t n, struct scenario_args* out) {
  memset(out, 0, sizeof(*out));
  size_t name_len = span_until(spec, n, ":,");
  if (name_len == 0) return "empty scenario name";
  if (!copy_field(out->name, sizeof(out->name), spec, name_len)) return "scenario name too long";
  size_t i = name_len;
  if (i < n && spec[i] == ':') {
    i++;
    size_t plen = span_until(spec + i, n - i, ",");
    if (!copy_field(out->param, sizeof(out->param), spec + i, plen)) return "parameter too long";
    i += plen;
  }
  while (i < n) {
    i++;  // the ','
    size_t item = span_until(spec + i, n - i, ",");
    if (item == 0) continue;
    if (out->count == SCENARIO_ARGS_MAX) return "too many k=v arguments";
    size_t klen = span_until(spec + i, item, "=");
    if (!copy_field(out->kv[out->count].key, SCENARIO_NAME_MAX, spec + i, klen))
      return "argument name too long";
    if (klen < item) {
      if (!copy_field(out->kv[out->count].value, SCENARIO_ARG_MAX, spec + i + klen + 1,
                      item - klen - 1))
        return "argument value too long";
    }
    out->count++;
    i += item;
  }
  return NULL;
}

const char* scenario_arg(const struct scenario_args* a, const char* key) {
  for (int i = 0; i < a->count; i++) {
    if (strcmp(a->kv[i].key, key) == 0) return a->kv[i].value;
  }
  return NULL;
}

uint64_t scenario_arg_u64(const struct scenario_args* a, const char* key, uint64_t def, bool* ok) {
  const char* v = scenario_arg(a, key);
  if (!v) return def;
  uint64_t out;
  if (!parse_u64(v, strlen(v), &out)) {
    *ok = false;
    return def;
  }
  return out;
}

static int digit_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return 99;
}

bool parse_u64(const char* s, size_t n, uint64_t* out) {
  unsigned base = 10;
  if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    base = 16;
    s += 2;
    n -= 2;
  }
  if (n == 0) return false;
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    int d = digit_value(s[i]);
    if (d >= (int)base) return false;
    if (v > (UINT64_MAX - (uint64_t)d) / base) return false;
    v = v * base + (uint64_t)d;
  }
  *out = v;
  return true;
}

// <size>@<base>:<irq>[:<id>] (Linux drivers/virtio/virtio_mmio.c), the size with an
// optional K/M/G suffix.
bool cmdline_parse_virtio_mmio(const char* s, size_t n, uint64_t* size, uint64_t* base,
                               uint32_t* irq) {
  size_t at = span_until(s, n, "@");
  if (at == 0 || at == n) return false;
  uint64_t mult = 1;
  size_t digits = at;
  char suffix = s[at - 1];
  if (suffix == 'K' || suffix == 'k') mult = 1ULL << 10;
  if (suffix == 'M' || suffix == 'm') mult = 1ULL << 20;
  if (suffix == 'G' || suffix == 'g') mult = 1ULL << 30;
  if (mult != 1) digits--;
  uint64_t v;
  if (!parse_u64(s, digits, &v) || v == 0 || v > UINT64_MAX / mult) return false;
  *size = v * mult;
  const char* rest = s + at + 1;
  size_t rn = n - at - 1;
  size_t colon = span_until(rest, rn, ":");
  if (colon == rn || !parse_u64(rest, colon, base)) return false;
  rest += colon + 1;
  rn -= colon + 1;
  size_t end = span_until(rest, rn, ":");  // an optional ":<id>" follows
  uint64_t irq64;
  if (!parse_u64(rest, end, &irq64) || irq64 > UINT32_MAX) return false;
  *irq = (uint32_t)irq64;
  return *base + *size > *base;
}
