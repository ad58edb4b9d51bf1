#!/usr/bin/env bash
# Installs the Debian packages Portolan needs, only those missing, and prepares
# the kernel side for bcc (headers link, tracefs). Quick when all is there.
#   scripts/install-deps.sh run    what `make run` needs
#   scripts/install-deps.sh test   plus what the test suite needs
set -euo pipefail
what=${1:-run}
arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)

want=(redis-server redis-tools python3-bpfcc "linux-headers-$arch" iproute2)
command -v node >/dev/null && command -v npm >/dev/null || want+=(nodejs npm)
if [ "$what" = test ]; then
  want+=(docker.io busybox-static chromium iptables wrk bpfcc-tools bpftool linux-perf prometheus)
  # images (scripts/images.sh) and the compose file of the deploy tests
  want+=(mmdebstrap docker-compose python3-pip)
  # a throwaway PostgreSQL cluster for the shared accounts database's tests
  want+=(postgresql)
fi
python3 -c 'import ensurepip, venv' 2>/dev/null || want+=(python3-venv)

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "portolan: missing Debian packages: ${missing[*]} (run as root to install)" >&2
  else
    echo "portolan: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The tests start their own Prometheus on a free loopback port; the
    # package's service (all interfaces, port 9090) was not asked for.
    if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
      systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
  fi
fi

[ "$(id -u)" = 0 ] || exit 0
# bcc compiles against kernel headers; a kernel without its own package works
# for tracepoint programs with the distribution's generic headers linked in.
mods=/lib/modules/$(uname -r)
if [ ! -e "$mods/build" ]; then
  hdr=$(ls -d /usr/src/linux-headers-*-"$arch" 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$hdr" ]; then
    mkdir -p "$mods"
    ln -sfn "$hdr" "$mods/build"
    common=${hdr%-"$arch"}-common
    [ -d "$common" ] && ln -sfn "$common" "$mods/source"
    echo "portolan: linked $hdr as $mods/build" >&2
  fi
fi
if [ ! -e /sys/kernel/tracing/events ]; then
  mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true
fi
