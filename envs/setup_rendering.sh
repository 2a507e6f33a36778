#!/usr/bin/env bash
# Installs what SAPIEN (ManiSkill's renderer) needs to render on a machine without a GPU:
# Mesa's lavapipe Vulkan driver + the Vulkan loader, from Debian bookworm-backports (Mesa 25.x;
# bookworm's own Mesa 22 lavapipe is too old for SAPIEN 3).
#
# Idempotent: does nothing when a lavapipe ICD and a system libvulkan are already present.
# Only acts when running as root on a Debian/apt system; otherwise it prints what to install and
# exits 0 (rendering tests then skip with the reason from vlmrl.envs.rendering.check_rendering()).
# Set VLMRL_SKIP_RENDER_DEPS=1 to skip it entirely.
set -euo pipefail

log() { echo "[render-deps] $*"; }

if [[ "${VLMRL_SKIP_RENDER_DEPS:-0}" == "1" ]]; then
    log "VLMRL_SKIP_RENDER_DEPS=1: skipping"; exit 0
fi

have_icd() { compgen -G "/usr/share/vulkan/icd.d/lvp_icd*.json" >/dev/null || compgen -G "/etc/vulkan/icd.d/lvp_icd*.json" >/dev/null; }
have_loader() { [[ -n "$(ldconfig -p 2>/dev/null | grep 'libvulkan\.so\.1' || true)" ]]; }  # no grep -q: SIGPIPE + pipefail
mesa_major() { dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | sed -E 's/^([0-9]+:)?([0-9]+).*/\2/'; }

if have_icd && have_loader && [[ "$(mesa_major || echo 0)" -ge 24 ]]; then
    log "lavapipe (Mesa $(mesa_major)) and libvulkan already installed"; exit 0
fi

if [[ "$(id -u)" != "0" ]] || ! command -v apt-get >/dev/null; then
    log "not root or no apt-get: cannot install. Install Mesa >= 24 lavapipe + the Vulkan loader yourself,"
    log "e.g. on Debian 12: apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1"
    exit 0
fi

. /etc/os-release
if [[ "${VERSION_CODENAME:-}" == "bookworm" ]]; then
    src=/etc/apt/sources.list.d/bookworm-backports.sources
    if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        # Reuse the Debian mirror this machine already uses for bookworm (deb822 or one-line format).
        mirror=$(awk '/^URIs:/{u=$2} /^Suites:/ && / bookworm( |$)/ {print u; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
        [[ -n "$mirror" ]] || mirror=$(awk '$1=="deb" && $3=="bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
        if [[ -z "$mirror" ]]; then
            log "no apt source for bookworm found: add the bookworm-backports suite yourself, then rerun"; exit 0
        fi
        log "adding $src (mirror $mirror)"
        cat >"$src" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    fi
    target=(-t bookworm-backports)
else
    target=()  # newer Debian/Ubuntu: the distribution's own Mesa is recent enough
fi

start=$(date +%s)
log "apt-get update"
apt-get update -qq
log "installing mesa-vulkan-drivers libvulkan1 ${target[*]}"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${target[@]}" \
    mesa-vulkan-drivers libvulkan1 >/dev/null
log "done in $(( $(date +%s) - start )) s: Mesa $(mesa_major)"
