#!/usr/bin/env bash
# Measures what a newcomer waits for: a clean clone, empty Go module and build caches and no
# ONNX Runtime, then `go tool task run` until http://localhost:8080/healthz answers.
# Prints the modules and bytes downloaded and the wall time, with each Task step timestamped.
#
#   scripts/fresh-machine.sh [--first] [REPO]    # REPO defaults to this checkout; its HEAD is cloned
#
# --first: on a machine shared with other work, put this run's process group first in line
# for the CPU (its scheduler autogroup at nice -20; needs root), so that the wall time is
# close to an idle machine's. The CPU seconds printed do not depend on it.
set -euo pipefail

first=
[ "${1:-}" != --first ] || { first=1; shift; }
repo=$(cd "${1:-$(dirname "$0")/..}" && pwd)
if curl -s -o /dev/null localhost:8080/healthz; then
  echo "fresh-machine: localhost:8080 is already serving; stop that server first" >&2
  exit 1
fi

work=$(mktemp -d /tmp/gibbon-fresh.XXXXXX)
git clone -q "$repo" "$work/repo"
export GOMODCACHE=$work/gomod GOCACHE=$work/gobuild GOFLAGS=-modcacherw XDG_CACHE_HOME=$work/cache
echo "fresh-machine: $(git -C "$work/repo" log --oneline -1) in $work; load average $(cut -d' ' -f1-3 /proc/loadavg)"

start=$(date +%s.%N)
elapsed() { echo "$(date +%s.%N) - $start" | bc; }
export -f elapsed
export start
# Its own session, so that stopping it stops Task and the server it started.
export first
setsid bash -c '[ -z "$first" ] || echo -20 >/proc/$$/autogroup
  cd "$0" && go tool task run 2>&1 |
  while IFS= read -r line; do printf "%7.1fs  %s\n" "$(elapsed)" "$line"; done' "$work/repo" &
runner=$!
stop() { kill -TERM -- "-$runner" 2>/dev/null || true; }

# CPU seconds spent so far by the processes of session $1, their waited-for children
# included (every compiler run is waited for by a go command still alive then): a load-independent
# measure beside the wall time, since the machine may be shared.
session_cpu() {
  local sid=$1 ticks=0 f rest
  for f in /proc/[0-9]*/stat; do
    rest=$(sed 's/^.*) //' "$f" 2>/dev/null) || continue
    set -- $rest
    # after the name: state ppid pgrp session ... utime(12) stime(13) cutime(14) cstime(15)
    [ "${4:-}" = "$sid" ] && ticks=$((ticks + ${12} + ${13} + ${14} + ${15}))
  done
  echo "scale=1; $ticks / $(getconf CLK_TCK)" | bc
}

deadline=$(($(date +%s) + 900))
until curl -sf -o /dev/null localhost:8080/healthz; do
  if [ "$(date +%s)" -gt "$deadline" ] || ! kill -0 "$runner" 2>/dev/null; then
    echo "fresh-machine: no answer on localhost:8080/healthz after $(elapsed) s" >&2
    stop
    exit 1
  fi
  sleep 0.25
done
first_page=$(elapsed)
cpu=$(session_cpu "$runner")
stop
wait "$runner" 2>/dev/null || true

zips=$(find "$GOMODCACHE/cache/download" -name '*.zip' | wc -l)
mods=$(find "$GOMODCACHE/cache/download" -name '*.mod' | wc -l)
fetched_mb=$(find "$GOMODCACHE/cache/download" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s / 1e6 }')
printf 'fresh-machine: first page after %.1f s (%.1f CPU s); Go modules: %d zips and %d go.mod files fetched, %s MB (%s unpacked); build cache %s; ONNX Runtime cache %s\n' \
  "$first_page" "$cpu" "$zips" "$mods" "$fetched_mb" "$(du -sh "$GOMODCACHE" | cut -f1)" "$(du -sh "$GOCACHE" | cut -f1)" "$(du -sh "$XDG_CACHE_HOME" | cut -f1)"
echo "fresh-machine: rm -rf $work when done"
