#!/usr/bin/env bash
# Installs what the test suite needs, then runs COMMAND with the WebGPU test environment.
# `go tool task test` (and so .ci/run) runs the tests through it; with no COMMAND it only installs.
#
#   scripts/test-setup.sh [COMMAND [ARG...]]
#
# The tests need:
#   - Chromium, for the browser tests;
#   - PostgreSQL's server binaries (/usr/lib/postgresql/*/bin): the PostgreSQL tests start a
#     throw-away cluster of their own with initdb and pg_ctl, so no service is started here;
#   - Mesa 25 or newer's lavapipe Vulkan driver, so that the WebGPU tests run without a GPU
#     (bookworm's Mesa 22.3 lacks a feature Dawn needs; there it comes from bookworm-backports).
#     With it, COMMAND gets VK_ICD_FILENAMES, XDG_RUNTIME_DIR and GIBBON_WEBGPU_TEST=1, which
#     makes the WebGPU tests required rather than skipped.
# On Debian as root whatever is missing is installed with apt-get (quietly, no questions);
# when everything is there nothing is fetched. Otherwise the script fails in one line that
# says what to run.
set -euo pipefail

say() { echo "test-setup: $*" >&2; }

has_chromium() {
  local name
  for name in chromium chromium-browser google-chrome google-chrome-stable; do
    command -v "$name" >/dev/null 2>&1 && return 0
  done
  return 1
}
has_postgres() { compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; }
lavapipe_icd() { compgen -G '/usr/share/vulkan/icd.d/lvp_icd*.json' | head -1; }
has_mesa() {
  if command -v dpkg-query >/dev/null 2>&1; then
    [[ $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null) =~ ^(2[5-9]|[3-9][0-9])\. ]] &&
      [ -n "$(lavapipe_icd)" ]
  else
    [ -n "$(lavapipe_icd)" ] # no version to read; the WebGPU tests say so if it is too old
  fi
}

# Fills missing (Debian package names) and needs (the same, in words).
find_missing() {
  missing=() needs=()
  has_chromium || { missing+=(chromium) && needs+=("Chromium"); }
  has_postgres || { missing+=(postgresql) && needs+=("PostgreSQL's server"); }
  has_mesa || { missing+=(mesa-vulkan-drivers) && needs+=("Mesa 25+ lavapipe (Vulkan)"); }
}
find_missing
needs_words() { local IFS=, joined; joined="${needs[*]}"; echo "${joined//,/, }"; }

is_debian() { [ -r /etc/os-release ] && (. /etc/os-release && [[ "${ID:-} ${ID_LIKE:-}" =~ (^| )debian( |$) ]]); }

# bookworm ships Mesa 22.3: take mesa-vulkan-drivers and libvulkan1 from bookworm-backports
# (apt_target), adding that suite (same mirror as the base system's) when it is not configured.
apt_target=()
use_backports_on_bookworm() {
  local codename mirror
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  [ "$codename" = bookworm ] || return 0
  if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$mirror" >/etc/apt/sources.list.d/bookworm-backports.sources
  fi
  apt_target=(-t bookworm-backports)
}

install_missing() {
  local log plain=() pkg
  log=$(mktemp "${TMPDIR:-/tmp}/gibbon-test-setup.XXXXXX.log")
  for pkg in "${missing[@]}"; do [ "$pkg" = mesa-vulkan-drivers ] || plain+=("$pkg"); done
  # Debian's policy hook: packages are installed, their services (PostgreSQL's) are not started.
  local own_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && own_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  say "installing ${missing[*]} with apt-get (log: $log)"
  local ok=1
  {
    export DEBIAN_FRONTEND=noninteractive
    has_mesa || use_backports_on_bookworm
    apt-get update -qq &&
      { [ ${#plain[@]} -eq 0 ] || apt-get install -y -qq "${plain[@]}"; } &&
      { has_mesa || apt-get install -y -qq "${apt_target[@]}" mesa-vulkan-drivers libvulkan1; }
  } >"$log" 2>&1 || ok=
  [ -z "$own_policy" ] || { rm -f /usr/sbin/policy-rc.d && trap - EXIT; }
  if [ -z "$ok" ]; then
    say "apt-get could not install ${missing[*]} ($(grep -m1 -E '^(E|W):' "$log" | cut -c1-160)); fix that (network? apt sources?) and run $0"
    exit 1
  fi
  rm -f "$log"
}

if [ ${#missing[@]} -gt 0 ]; then
  if ! is_debian || ! command -v apt-get >/dev/null 2>&1; then
    say "the tests need $(needs_words); install them with this system's package manager"
    exit 1
  fi
  if [ "$(id -u)" -ne 0 ]; then
    say "the tests need ${missing[*]}; run: sudo $0"
    exit 1
  fi
  install_missing
  find_missing
  if [ ${#missing[@]} -gt 0 ]; then
    say "still missing after apt-get install ${missing[*]}: $(needs_words); install it by hand"
    exit 1
  fi
fi

[ $# -gt 0 ] || exit 0
VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-$(lavapipe_icd)}
XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-${TMPDIR:-/tmp}/gibbon-runtime-$(id -u)}
mkdir -p -m 700 "$XDG_RUNTIME_DIR"
export VK_ICD_FILENAMES XDG_RUNTIME_DIR GIBBON_WEBGPU_TEST=${GIBBON_WEBGPU_TEST:-1}
exec "$@"
