#!/usr/bin/env bash
# Installs a software Vulkan driver (Mesa's lavapipe) so that Dawn finds a
# WebGPU adapter on a machine with no GPU.
#
# Debian 12's own Mesa (22.x) is too old for Dawn: it exposes no adapter.
# Mesa 25 from Debian's <codename>-backports suite works, with subgroups,
# shader-f16 and timestamp queries. The backports source is derived from the
# machine's own apt sources (the mirror that already serves <codename>), so no
# mirror host is written here.
#
# Idempotent: does nothing when Dawn already finds an adapter, or when the
# backports driver is already installed.
#
# Usage: tools/install-software-gpu.sh [--check]
#   --check   only report whether an adapter exists (exit 0 yes, 1 no)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
say() { echo "[software-gpu] $*" >&2; }

# Asks Dawn (the `webgpu` package) whether an adapter exists.
have_adapter() {
  [ -d "$root/node_modules/webgpu" ] || return 1
  (cd "$root" && node --input-type=module -e '
    import { create, globals } from "webgpu";
    Object.assign(globalThis, globals);
    const gpu = create([]);
    const adapter = await gpu.requestAdapter();
    globalThis.__keep = gpu;
    process.exit(adapter ? 0 : 1);
  ' >/dev/null 2>&1)
}

if have_adapter; then
  say "a WebGPU adapter exists already; nothing to install"
  exit 0
fi
if [ "${1:-}" = "--check" ]; then
  say "no WebGPU adapter found"
  exit 1
fi

manual_help() {
  cat >&2 <<'HELP'
[software-gpu] Install a Vulkan driver that Dawn accepts, then retry:
  - with a GPU: your vendor's Vulkan driver (Mesa's radv/anv, or NVIDIA's) and libvulkan1;
  - without one: Mesa's lavapipe, version 24 or newer (Debian/Ubuntu package
    mesa-vulkan-drivers from a recent suite, e.g. Debian's <codename>-backports),
    plus the Vulkan loader (libvulkan1).
HELP
}

if [ ! -r /etc/os-release ] || ! grep -qi '^ID=debian' /etc/os-release; then
  say "this is not Debian; cannot install the driver automatically"
  manual_help
  exit 1
fi
if [ "$(id -u)" != 0 ]; then
  say "not root; cannot run apt-get"
  manual_help
  exit 1
fi

. /etc/os-release
codename="${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}"
backports="${codename}-backports"

# Finds the mirror URI that serves "$codename" (main archive, not security) in
# the machine's apt sources, in either format: deb822 (*.sources) or one-line.
mirror_uri() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    # deb822 stanzas are separated by blank lines.
    awk -v cn="$codename" '
      BEGIN { RS=""; FS="\n" }
      {
        uris=""; suites=""; types=""
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/)   { sub(/^URIs:[ \t]*/, "", $i); uris=$i }
          if ($i ~ /^Suites:/) { sub(/^Suites:[ \t]*/, "", $i); suites=" " $i " " }
          if ($i ~ /^Types:/)  { types=$i }
        }
        if (types ~ /deb([ \t]|$)/ && suites ~ (" " cn " ")) { split(uris, u, /[ \t]+/); print u[1]; exit }
      }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    awk -v cn="$codename" '
      $1 == "deb" {
        i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
        if ($(i+1) == cn) { print $i; exit }
      }' "$f"
  done
}

list=/etc/apt/sources.list.d/fisher-gpu-backports.list
if ! grep -rqs -- "$backports" /etc/apt/sources.list /etc/apt/sources.list.d/ ; then
  uri="$(mirror_uri | head -n1)"
  if [ -z "$uri" ]; then
    say "found no apt source for '$codename' to derive '$backports' from"
    manual_help
    exit 1
  fi
  say "adding $backports from the mirror already in use ($uri)"
  echo "deb $uri $backports main" > "$list"
fi

say "installing mesa-vulkan-drivers and libvulkan1 from $backports (a few minutes on first run)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq -o Dpkg::Use-Pty=0 >/dev/null
apt-get install -y -qq -o Dpkg::Use-Pty=0 -t "$backports" mesa-vulkan-drivers libvulkan1 >/dev/null

if [ -d "$root/node_modules/webgpu" ]; then
  if have_adapter; then
    say "done: Dawn finds an adapter"
  else
    say "installed, but Dawn still finds no adapter"
    manual_help
    exit 1
  fi
else
  say "installed; run 'npm ci' to get Dawn, then check with tools/install-software-gpu.sh --check"
fi
