#!/usr/bin/env bash
# Builds Portolan's images with no registry: a Debian 12 base made here from
# Debian's packages (mmdebstrap -> tarball -> docker import), then the collector
# and web images on it. Each step is skipped when its tag exists, so a second
# run (or CI on the same engine) costs seconds.
#   scripts/images.sh            base + collector + web + redis; prints the tags
#   scripts/images.sh base       only the base
#   PORTOLAN_IMAGE_TAG=dev       tag of the built images (default: latest)
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org}
# Docs, man pages and translations are never read in a container; leaving them
# out here also leaves them out of every package the Dockerfiles install.
dpkg_excludes=(
  '/usr/share/doc/*' '/usr/share/man/*' '/usr/share/info/*' '/usr/share/locale/*'
  '/usr/share/lintian/*' '/usr/share/linda/*'
)
base_include=ca-certificates
recipe="$suite|minbase|$base_include|${dpkg_excludes[*]}|merged-usr-hook|v2"
# The tag names the recipe: a changed recipe makes a new base, the same one is
# reused. Security updates come from rebuilding (docker rmi the tag).
base_tag="portolan/debian-base:12-$(printf %s "$recipe" | sha256sum | cut -c1-10)"
tag=${PORTOLAN_IMAGE_TAG:-latest}

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

make_base() {
  if have_image "$base_tag"; then
    echo "portolan: base $base_tag exists" >&2
    return
  fi
  command -v mmdebstrap >/dev/null || {
    echo "portolan: mmdebstrap missing (scripts/install-deps.sh test)" >&2; exit 1; }
  local dir tarball opts=()
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' RETURN
  tarball=$dir/base.tar
  for p in "${dpkg_excludes[@]}"; do opts+=("--dpkgopt=path-exclude=$p"); done
  # Keep the copyright files Debian's licences ask for.
  opts+=("--dpkgopt=path-include=/usr/share/doc/*/copyright")
  echo "portolan: making $base_tag with mmdebstrap" >&2
  # merged-usr the debootstrap way: the usrmerge package would pull in perl.
  mmdebstrap ${MMDEBSTRAP_VERBOSE:---quiet} --variant=minbase \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --include="$base_include" "${opts[@]}" \
    --aptopt='APT::Install-Recommends "false"' \
    --aptopt='APT::Install-Suggests "false"' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/*.log' \
    "$suite" "$tarball" \
    "deb $mirror/debian $suite main" \
    "deb $mirror/debian $suite-updates main" \
    "deb $mirror/debian-security $suite-security main"
  docker import --change 'CMD ["bash"]' "$tarball" "$base_tag" >/dev/null
}

fetch_wheels() {
  # The Python dependencies as wheels, fetched by the host's pip (its index,
  # proxy and CA settings) into the build context: the builds need no index.
  local dir=build/wheels stamp
  mkdir -p "$dir"
  python3 - "$dir" <<'PY'
import sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
base, web = project["dependencies"], project["optional-dependencies"]["web"]
for name, reqs in (("collector", base), ("web", base + web)):
    with open(f"{sys.argv[1]}/requirements-{name}.txt", "w") as f:
        f.write("\n".join(reqs) + "\n")
PY
  stamp=$( (cat "$dir"/requirements-*.txt; declare -f fetch_wheels) | sha256sum | cut -c1-16)
  [ "$(cat "$dir/.stamp" 2>/dev/null)" = "$stamp" ] && return
  echo "portolan: fetching wheels into $dir" >&2
  # pip evaluates markers (python_full_version < "3.11.3") with the interpreter
  # it runs on, whatever --python-version says: Debian 12's own Python is the
  # images' Python exactly.
  local pip=(/usr/bin/python3 -m pip)
  if ! /usr/bin/python3 -c 'import sys; sys.exit(sys.version_info[:3] != (3, 11, 2))' \
      2>/dev/null || ! "${pip[@]}" --version >/dev/null 2>&1; then
    echo "portolan: no Debian 12 python3 with pip here; markers follow this host's" >&2
    pip=(python3 -m pip)
  fi
  rm -f "$dir"/*.whl
  # For the images' interpreter, not the host's: Debian 12's Python is 3.11.2
  # (markers such as python_full_version < "3.11.3" differ) and glibc 2.36.
  local tags=() t
  for t in manylinux_2_36 manylinux_2_34 manylinux_2_28 manylinux_2_24 \
           manylinux_2_17 manylinux2014 manylinux_2_5 manylinux1; do
    tags+=(--platform "${t}_x86_64")
  done
  "${pip[@]}" download --quiet --disable-pip-version-check --dest "$dir" \
    --only-binary=:all: --implementation cp --python-version 3.11.2 --abi cp311 \
    "${tags[@]}" -r "$dir/requirements-web.txt"
  echo "$stamp" >"$dir/.stamp"
}

build() {  # build <dockerfile> <image>
  echo "portolan: building $2" >&2
  docker build --quiet --build-arg "BASE=$base_tag" -f "$1" -t "$2" . >/dev/null
}

make_base
[ "$what" = base ] && { echo "$base_tag"; exit 0; }
fetch_wheels
build Dockerfile.collector "portolan/collector:$tag"
build Dockerfile.web "portolan/web:$tag"
build Dockerfile.redis "portolan/redis:$tag"
printf '%s\n' "$base_tag" "portolan/collector:$tag" "portolan/web:$tag" \
  "portolan/redis:$tag"
