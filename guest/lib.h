// The little of libc the guest needs (the compiler may also emit calls to memcpy, memset,
// memmove and memcmp on its own). Number parsing is in cmdline.h.
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void* memcpy(void* dst, const void* src, size_t n);
void* memmove(void* dst, const void* src, size_t n);
void* memset(void* dst, int c, size_t n);
int memcmp(const void* a, const void* b, size_t n);
size_t strlen(const char* s);
size_t strnlen(const char* s, size_t max);
int strcmp(const char* a, const char* b);
int strncmp(const char* a, const char* b, size_t n);

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
