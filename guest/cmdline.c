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
