// printf for the guest (see printf.h). Output goes through a small buffer that is flushed
// to its sink when full, so kprintf needs no line-length limit.
#include "printf.h"

#include <stdbool.h>
#include <stdint.h>

#include "arch.h"
#include "uart.h"

struct out {
  char* buf;
  size_t cap;
  size_t len;
  size_t total;
  void (*flush)(struct out* o);  // NULL: a fixed buffer (snprintf) that truncates
};

static void put(struct out* o, char c) {
  o->total++;
  if (o->len + 1 >= o->cap) {
    if (!o->flush) return;
    o->flush(o);
  }
  o->buf[o->len++] = c;
}

static void put_padded(struct out* o, const char* s, size_t n, int width, bool left, char pad) {
  size_t fill = width > 0 && (size_t)width > n ? (size_t)width - n : 0;
  if (!left) {
    while (fill--) put(o, pad);
  }
  for (size_t i = 0; i < n; i++) put(o, s[i]);
  if (left) {
    while (fill--) put(o, ' ');
  }
}

static void put_number(struct out* o, uint64_t v, bool negative, unsigned base, bool upper,
                       int width, bool left, bool zero) {
  char tmp[24];
  size_t n = 0;
  const char* digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  do {
    tmp[n++] = digits[v % base];
    v /= base;
  } while (v);
  if (negative && zero) {
    put(o, '-');
    if (width > 0) width--;
  } else if (negative) {
    tmp[n++] = '-';
  }
  char s[24];
  for (size_t i = 0; i < n; i++) s[i] = tmp[n - 1 - i];
  put_padded(o, s, n, width, left, zero && !left ? '0' : ' ');
}

static void format(struct out* o, const char* fmt, va_list ap) {
  for (; *fmt; fmt++) {
    if (*fmt != '%') {
      put(o, *fmt);
      continue;
    }
    fmt++;
    bool left = false, zero = false;
    for (;; fmt++) {
      if (*fmt == '-') {
        left = true;
      } else if (*fmt == '0') {
        zero = true;
      } else {
        break;
      }
    }
    int width = 0;
    if (*fmt == '*') {
      width = va_arg(ap, int);
      fmt++;
    }
    while (*fmt >= '0' && *fmt <= '9') width = width * 10 + (*fmt++ - '0');
    int precision = -1;
    if (*fmt == '.') {
      fmt++;
      precision = 0;
      if (*fmt == '*') {
        precision = va_arg(ap, int);
        fmt++;
      }
      while (*fmt >= '0' && *fmt <= '9') precision = precision * 10 + (*fmt++ - '0');
    }
    int longs = 0;
    for (;; fmt++) {
      if (*fmt == 'l' || *fmt == 'z') {
        longs++;
      } else if (*fmt != 'h') {
        break;
      }
    }
    switch (*fmt) {
      case 'd':
      case 'i': {
        int64_t v = longs ? va_arg(ap, int64_t) : va_arg(ap, int);
        uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
        put_number(o, mag, v < 0, 10, false, width, left, zero);
        break;
      }
      case 'u':
      case 'x':
      case 'X': {
        uint64_t v = longs ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
        put_number(o, v, false, *fmt == 'u' ? 10 : 16, *fmt == 'X', width, left, zero);
        break;
      }
      case 'p': {
        put(o, '0');
        put(o, 'x');
        put_number(o, (uint64_t)(uintptr_t)va_arg(ap, void*), false, 16, false, width, left, zero);
        break;
      }
      case 'c': {
        char c = (char)va_arg(ap, int);
        put_padded(o, &c, 1, width, left, ' ');
        break;
      }
      case 's': {
        const char* s = va_arg(ap, const char*);
        if (!s) s = "(null)";
        size_t n = 0;
        while ((precision < 0 || n < (size_t)precision) && s[n]) n++;
        put_padded(o, s, n, width, left, ' ');
        break;
      }
      case '%':
        put(o, '%');
        break;
      case '\0':
        return;
      default:  // unknown conversion: show it rather than guess
        put(o, '%');
        put(o, *fmt);
        break;
    }
  }
}

int fmt_vsnprintf(char* buf, size_t n, const char* fmt, va_list ap) {
  char dummy;
  struct out o = {n ? buf : &dummy, n ? n : 1, 0, 0, 0};
  format(&o, fmt, ap);
  o.buf[o.len] = '\0';
  return (int)o.total;
}

int fmt_snprintf(char* buf, size_t n, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int r = fmt_vsnprintf(buf, n, fmt, ap);
  va_end(ap);
  return r;
}

const char* fmt_error(char* buf, size_t n, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fmt_vsnprintf(buf, n, fmt, ap);
  va_end(ap);
  return buf;
}

// The console lock: held for a whole kprintf so lines from different CPUs never mix.
static int console_lock;

static void uart_flush(struct out* o) {
  uart_write(o->buf, o->len);
  o->len = 0;
}

void kvprintf(const char* fmt, va_list ap) {
  char buf[128];
  struct out o = {buf, sizeof(buf) + 1, 0, 0, uart_flush};  // +1: no NUL kept here
  while (__atomic_exchange_n(&console_lock, 1, __ATOMIC_ACQUIRE)) cpu_relax();
  format(&o, fmt, ap);
  uart_flush(&o);
  __atomic_store_n(&console_lock, 0, __ATOMIC_RELEASE);
}

void kprintf(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  kvprintf(fmt, ap);
  va_end(ap);
}
