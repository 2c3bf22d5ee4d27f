#!/usr/bin/env bash
# Build the cairn container image (Containerfile) with podman; print the image's name as the last line of
# stdout (everything else goes to stderr), so `image=$(scripts/image.sh | tail -n1)` works.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/image.sh [--help]

Builds the cairn container image with podman (installed with apt-get if missing) and prints its name,
localhost/cairn:<version>, as the last line of stdout.

  CAIRN_BIN=/path/to/cairn   package this binary instead of running
                             `cargo build --release --locked --bin cairn` (CARGO_TARGET_DIR, else target/)
  CAIRN_IMAGE=name:tag       image name (default localhost/cairn:<the binary's --version>)
  CAIRN_CA_BUNDLE=file       CA bundle to ship (default /etc/ssl/certs/ca-certificates.crt)

The image is FROM scratch: the stripped binary, the shared libraries `ldd` lists for it and the loader,
the CA bundle, /etc/passwd with uid 65532, and /tmp (mode 1777). Test it with scripts/check-image.sh IMAGE.
EOF
}
case "${1:-}" in
    -h|--help) usage; exit 0 ;;
    "") ;;
    *) usage >&2; exit 2 ;;
esac

repo=$(cd "$(dirname "$0")/.." && pwd)
exec 3>&1 1>&2          # fd 3 is the real stdout: only the image name goes there
t0=$(date +%s)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v podman >/dev/null; then
    echo "image.sh: installing podman (apt-get)"
    # apt-get update only when the package lists are too old to install from.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman \
        || { as_root apt-get update -q && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman; }
fi

if [ -n "${CAIRN_BIN:-}" ]; then
    bin=$CAIRN_BIN
else
    (cd "$repo" && cargo build --release --locked --bin cairn)
    target=${CARGO_TARGET_DIR:-target}
    case "$target" in /*) ;; *) target=$repo/$target ;; esac
    bin=$target/release/cairn
fi
[ -x "$bin" ] || { echo "image.sh: no executable at $bin" >&2; exit 1; }

# The version the binary reports is the one the image holds (the workspace's, from Cargo.toml).
version=$("$bin" --version | awk '{print $2}')
[ -n "$version" ] || { echo "image.sh: $bin --version printed no version" >&2; exit 1; }
image=${CAIRN_IMAGE:-localhost/cairn:$version}

stage=$(mktemp -d "${TMPDIR:-/tmp}/cairn-image.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/rootfs
mkdir -p "$root"

# The binary, stripped: the release build carries debug info (~225 MB); the image needs none of it.
if command -v strip >/dev/null; then strip --strip-all -o "$stage/cairn" "$bin"
else objcopy --strip-all "$bin" "$stage/cairn"; fi
chmod 0755 "$stage/cairn"

# Its shared libraries and the loader, each at the path ldd resolved (symlinks followed, so the image holds
# real files there). A static binary (musl) lists none and needs none.
ldd_out=$(ldd "$bin" 2>&1 || true)
if grep -q 'not found' <<<"$ldd_out"; then echo "image.sh: unresolved libraries:"$'\n'"$ldd_out" >&2; exit 1; fi
libs=$(awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' <<<"$ldd_out" | sort -u)
for lib in $libs; do
    install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
done
echo "image.sh: libraries: ${libs//$'\n'/ }"

ca=${CAIRN_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
[ -s "$ca" ] || { echo "image.sh: no CA bundle at $ca (apt-get install ca-certificates)" >&2; exit 1; }
install -D -m 0644 "$ca" "$root/etc/ssl/certs/ca-certificates.crt"

# Names for uid/gid 65532 (what the image runs as), for tools that look them up; no login shell exists.
mkdir -p "$root/etc"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:cairn:/tmp:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
chmod 0644 "$root/etc/passwd" "$root/etc/group"
mkdir -p "$root/tmp" && chmod 1777 "$root/tmp"     # COPY keeps the mode: a /tmp anyone may write, no RUN
cp "$repo/.containerignore" "$stage/.containerignore"

revision=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)
# Reproducible: every file's time and the image's creation time are the commit's (SOURCE_DATE_EPOCH wins),
# so rebuilding the same binary at the same commit gives the same image ID (measured), and a push of an
# unchanged build uploads nothing. --layers=false: no intermediate images left behind (the build cache would
# not hit anyway: staged files are new each time), one layer.
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 0)}
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }
echo "image.sh: building $image from $bin ($(mb "$(stat -c %s "$bin")"), stripped $(mb "$(stat -c %s "$stage/cairn")"))"
podman build -q --layers=false --timestamp "$epoch" -f "$repo/Containerfile" -t "$image" \
    --build-arg VERSION="$version" --build-arg REVISION="$revision" \
    --build-arg CREATED="$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)" "$stage" >/dev/null

size=$(podman image inspect --format '{{.Size}}' "$image")
echo "image.sh: built $image: $(mb "$size"), $(( $(date +%s) - t0 )) s"
echo "$image" >&3
