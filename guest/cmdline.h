// Kernel command line parsing: finding `key=value` tokens and splitting a scenario spec
// `keeltest=NAME[:PARAM][,k=v...]` into its parts.
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Finds the first whitespace-separated token of `cmdline` that starts with `prefix`
// (e.g. "keeltest="); returns the text after the prefix and its length in *len, or NULL.
const char* cmdline_find(const char* cmdline, const char* prefix, size_t* len);

// Like cmdline_find, but resumes at *cursor and advances it past the token found, for
// prefixes that may repeat:
//   const char* cur = cmdline;
//   while ((v = cmdline_find_next(&cur, "virtio_mmio.device=", &n))) ...
const char* cmdline_find_next(const char** cursor, const char* prefix, size_t* len);

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
