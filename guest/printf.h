// Formatting for the guest: a small printf supporting %d %i %u %x %X %p %c %s %%, the
// flags '0' and '-', a field width, a precision (".N" or ".*") for strings, and the
// length modifiers l, ll, z and h.
#pragma once

#include <stdarg.h>
#include <stddef.h>

// Formats into buf (always NUL-terminated when n > 0). Returns the full length the output
// would have had, like C's snprintf.
int fmt_vsnprintf(char* buf, size_t n, const char* fmt, va_list ap);
int fmt_snprintf(char* buf, size_t n, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
// Formats into buf like fmt_snprintf and returns buf, for error messages:
//   return fmt_error(err, err_len, "queue %u is not available", index);
const char* fmt_error(char* buf, size_t n, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));

// Prints to COM1. One call's output is never interleaved with another CPU's.
void kprintf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void kvprintf(const char* fmt, va_list ap);

// A result line: "keeltest: " + the formatted text + newline.
#define KT_LINE(fmt, ...) kprintf("keeltest: " fmt "\n", ##__VA_ARGS__)
