// Kernel command line parsing: finding `key=value` tokens and splitting a scenario spec
// `keeltest=NAME[:PARAM][,k=v...]` into its parts.
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Finds the first whitespace-separated token of `cmdline` that starts with `prefix`
// (e.g. "keeltest="); returns the text after the prefix and its length in *len, or NULL.
const char* cmdline_find(const char* cmdline, const char* prefix, size_t* len);

// Like cmdline_find, but resumes at *cursor and advances it past the token found, for
// prefixes that may repeat:
//   const char* cur = cmdline;
//   while ((v = cmdline_find_next(&cur, "virtio_mmio.device=", &n))) ...
const char* cmdline_find_next(const char** cursor, const char* prefix, size_t* len);

// Parses the whole of s[0..n) as an unsigned number: decimal, or hex with a 0x prefix.
// Returns false on an empty string, a stray character or overflow.
bool parse_u64(const char* s, size_t n, uint64_t* out);

// Parses the value of a `virtio_mmio.device=` token, `<size>@<base>:<irq>[:<id>]` (size
// decimal or 0x hex with an optional K, M or G suffix). False when malformed, zero-sized
// or wrapping.
bool cmdline_parse_virtio_mmio(const char* s, size_t n, uint64_t* size, uint64_t* base,
                               uint32_t* irq);

#define SCENARIO_NAME_MAX 32
#define SCENARIO_ARG_MAX 64
#define SCENARIO_ARGS_MAX 8

struct scenario_args {
  char name[SCENARIO_NAME_MAX];
  char param[SCENARIO_ARG_MAX];  // the text after ':' in NAME:PARAM ("" when absent)
  int count;
  struct {
    char key[SCENARIO_NAME_MAX];
    char value[SCENARIO_ARG_MAX];  // "" for a bare key
  } kv[SCENARIO_ARGS_MAX];
};

// Parses `spec` (spec_len bytes, not NUL-terminated). Returns NULL on success, or a
// message saying what is wrong with the spec.
const char* scenario_args_parse(const char* spec, size_t spec_len, struct scenario_args* out);

// The value of `key`, or NULL when it was not given.
const char* scenario_arg(const struct scenario_args* a, const char* key);

// The value of `key` as a number (decimal or 0x hex); `def` when absent. Sets *ok to false
// (and leaves it alone otherwise) when the value is present but not a number.
uint64_t scenario_arg_u64(const struct scenario_args* a, const char* key, uint64_t def, bool* ok);

#ifdef __cplusplus
}
#endif
