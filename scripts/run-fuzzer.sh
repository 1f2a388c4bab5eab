#!/bin/sh
# Runs one libFuzzer target for a few seconds over a copy of its seed corpus (so the source
# tree is never written to). Usage: run-fuzzer.sh FUZZER CORPUS_DIR SECONDS
# Exits with the fuzzer's status: non-zero when it found a crash, leak or timeout.
set -eu
fuzzer=$1
corpus=$2
seconds=$3
work=$(mktemp -d /tmp/keel-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM
mkdir "$work/corpus"
cp -r "$corpus"/. "$work/corpus"/ 2>/dev/null || true
status=0
# libFuzzer's own default status for a finding is 77, which meson reads as "skipped".
"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -error_exitcode=1 -timeout_exitcode=1 \
  -artifact_prefix="$work/" "$work/corpus" >"$work/log" 2>&1 || status=$?
tail -n 30 "$work/log"
exit "$status"
