// The scenario registry and runner.
//
// A scenario is a named test the guest runs when the command line says
// `keeltest=NAME[:PARAM][,k=v...]`. Each lives in its own file under scenarios/ and
// registers itself with KEEL_SCENARIO; nothing else needs editing to add one (meson.build
// lists the file).
//
//   static int run_hello(struct scenario_ctx* ctx) { return SCENARIO_PASS; }
//   KEEL_SCENARIO(hello, "hello", run_hello);
//
// Output contract (what tests and benchmarks parse): every line about a scenario starts
// with "keeltest: "; a scenario ends with "keeltest: PASS <name>" and exit status
// ctx->exit_code (0 unless the scenario sets it), or "keeltest: FAIL <name>: <reason>"
// and exit status 1. Statuses leave through the debug-exit port (guest_exit).
#pragma once

#include "boot_info.h"
#include "cmdline.h"

#define SCENARIO_PASS 0
#define SCENARIO_FAILED 1

struct scenario_ctx {
  const struct boot_info* boot;
  const struct scenario_args* args;
  int exit_code;  // sent on PASS
};

struct scenario {
  const char* name;
  int (*run)(struct scenario_ctx* ctx);  // SCENARIO_PASS, or scenario_fail(...)'s result
};

#define KEEL_SCENARIO(id, name_str, fn)           \
  static const struct scenario keel_scenario_##id \
      __attribute__((used, section("keel_scenarios"), aligned(8))) = {name_str, fn}

// Prints "keeltest: FAIL <name>: <reason>" and returns SCENARIO_FAILED, for
// `return scenario_fail(ctx, "...", ...);`.
int scenario_fail(struct scenario_ctx* ctx, const char* fmt, ...)
    __attribute__((format(printf, 2, 3)));

// Prints the FAIL line for the running scenario (or "none") and exits with status 1.
// For code that cannot return (exception reports, fatal setup errors).
void scenario_fail_now(const char* fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

// Picks the scenario from the command line, runs it and exits. Never returns.
void scenario_main(const struct boot_info* boot) __attribute__((noreturn));
