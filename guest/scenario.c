// Scenario registry and runner (see scenario.h).
#include "scenario.h"

#include <stdarg.h>

#include "guest.h"
#include "lib.h"
#include "printf.h"

// link.ld gathers every KEEL_SCENARIO into this array.
extern const struct scenario __start_keel_scenarios[], __stop_keel_scenarios[];

static const char* running_name = "none";

static void print_fail(const char* fmt, va_list ap) {
  char reason[256];
  fmt_vsnprintf(reason, sizeof(reason), fmt, ap);
  KT_LINE("FAIL %s: %s", running_name, reason);
}

int scenario_fail(struct scenario_ctx* ctx, const char* fmt, ...) {
  (void)ctx;
  va_list ap;
  va_start(ap, fmt);
  print_fail(fmt, ap);
  va_end(ap);
  return SCENARIO_FAILED;
}

void scenario_fail_now(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  print_fail(fmt, ap);
  va_end(ap);
  guest_exit(1);
}

static const struct scenario* find(const char* name) {
  for (const struct scenario* s = __start_keel_scenarios; s < __stop_keel_scenarios; s++) {
    if (strcmp(s->name, name) == 0) return s;
  }
  return NULL;
}

static void list_names(char* buf, size_t cap) {
  size_t n = 0;
  buf[0] = '\0';
  for (const struct scenario* s = __start_keel_scenarios; s < __stop_keel_scenarios; s++) {
    int w = fmt_snprintf(buf + n, cap - n, "%s%s", n ? " " : "", s->name);
    if (w < 0 || (size_t)w >= cap - n) break;
    n += (size_t)w;
  }
}

void scenario_main(const struct boot_info* boot) {
  if (boot->error) scenario_fail_now("cannot read the boot information: %s", boot->error);
  size_t len;
  const char* spec = cmdline_find(boot->cmdline, "keeltest=", &len);
  if (!spec) scenario_fail_now("no keeltest=NAME on the command line");

  static struct scenario_args args;
  const char* err = scenario_args_parse(spec, len, &args);
  if (err) scenario_fail_now("bad keeltest= spec '%.*s': %s", (int)len, spec, err);
  running_name = args.name;

  const struct scenario* s = find(args.name);
  if (!s) {
    char names[256];
    list_names(names, sizeof(names));
    scenario_fail_now("unknown scenario (known: %s)", names);
  }
  struct scenario_ctx ctx = {boot, &args, 0};
  if (s->run(&ctx) != SCENARIO_PASS) guest_exit(1);
  KT_LINE("PASS %s", args.name);
  guest_exit((uint32_t)ctx.exit_code);
}
