#!/usr/bin/env bash
# Test a cairn image (scripts/image.sh) without running a container: `podman run` cannot create one on this
# machine (crun and runc cannot set rlimits here; ../shared/notes/containers-and-fleet.md). Instead: check the
# image's config, copy its filesystem out of `podman image mount`, and run its own /cairn from that copy with
# chroot as uid 65532 and the image's environment: --version, then `serve` of the example data answering
# GETs byte for byte. Everything listens on 127.0.0.1 only. Exits non-zero, saying what, on any failure.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/check-image.sh IMAGE [DATA]

  IMAGE  e.g. localhost/cairn:0.1.0 (the last line scripts/image.sh prints)
  DATA   `<key> <value>` lines to serve (default $CAIRN_EXAMPLE_DATA, else examples/example.data)
EOF
}
case "${1:-}" in -h|--help) usage; exit 0 ;; "") usage >&2; exit 2 ;; esac
image=$1
repo=$(cd "$(dirname "$0")/.." && pwd)
data=${2:-${CAIRN_EXAMPLE_DATA:-$repo/examples/example.data}}
[ -s "$data" ] || { echo "check-image: no data file at $data" >&2; exit 2; }
data=$(readlink -f "$data")

for tool in podman chroot curl readelf cmp; do
    command -v "$tool" >/dev/null || { echo "check-image: FAIL: $tool not installed (podman: scripts/image.sh installs it)" >&2; exit 1; }
done

# Mounting an image needs root, or (rootless podman) its user namespace, where we are root.
if [ "$(id -u)" != 0 ]; then exec podman unshare "$0" "$image" "$data"; fi

fail() { echo "check-image: FAIL: $*" >&2; exit 1; }
ok() { echo "check-image: ok: $*" >&2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/cairn-check-image.XXXXXX")
root=$work/root
pid="" mounted=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    if [ -n "$mounted" ]; then podman image unmount "$image" >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# --- the image's configuration -------------------------------------------------------------------------------
podman image exists "$image" || fail "no image $image (build it: scripts/image.sh)"
inspect() { podman image inspect --format "$1" "$image"; }
user=$(inspect '{{.Config.User}}')
[ "${user%%:*}" = 65532 ] || fail "image runs as '$user', not uid 65532"
[ "$(inspect '{{json .Config.Entrypoint}}')" = '["/cairn"]' ] || fail "entrypoint is $(inspect '{{json .Config.Entrypoint}}')"
inspect '{{range $p, $v := .Config.ExposedPorts}}{{$p}} {{end}}' | grep -qw 7878/tcp || fail "port 7878 not exposed"
mapfile -t image_env < <(inspect '{{range .Config.Env}}{{println .}}{{end}}' | sed '/^$/d')
printf '%s\n' "${image_env[@]}" | grep -qx 'SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' || fail "SSL_CERT_FILE not set"
printf '%s\n' "${image_env[@]}" | grep -qx 'CAIRN_HOST=0.0.0.0' || fail "CAIRN_HOST=0.0.0.0 not set"
version=$(inspect '{{index .Config.Labels "org.opencontainers.image.version"}}')
[ -n "$version" ] && [ "$version" != "<no value>" ] || fail "no org.opencontainers.image.version label"
ok "config: user $user, entrypoint /cairn, 7878/tcp, SSL_CERT_FILE, version label $version"

# --- its filesystem: a private copy (chroot needs the data inside, and the image must stay untouched) ----------
mnt=$(podman image mount "$image"); mounted=1
mkdir "$root" && cp -a "$mnt/." "$root/"
podman image unmount "$image" >/dev/null; mounted=""

# Exactly: the binary, shared libraries, passwd/group, the CA bundle. So no shell, no compiler, no tools.
unexpected=$(cd "$root" && find . -mindepth 1 \( -type f -o -type l \) | sort | grep -vxE \
    '\./cairn|\./etc/(passwd|group)|\./etc/ssl/certs/ca-certificates\.crt|\./lib(64)?/([a-z0-9_-]+/)?[A-Za-z0-9_.+-]+\.so(\.[0-9]+)*' || true)
[ -z "$unexpected" ] || fail "files the image should not hold:"$'\n'"$unexpected"
for sh in bin/sh bin/bash bin/busybox usr/bin/env; do [ ! -e "$root/$sh" ] || fail "image has /$sh"; done
[ -z "$(cd "$root" && find . -type l)" ] || fail "image has symlinks (libraries should be real files)"
interp=$(readelf -l "$root/cairn" | sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p')
[ -z "$interp" ] || [ -f "$root$interp" ] || fail "the binary's loader $interp is not in the image"
# (.debug_gdb_scripts is a loaded section strip keeps; the symbol table and DWARF must be gone.)
if readelf -S -W "$root/cairn" | grep -qE '\.symtab|\.debug_(info|line|str) '; then fail "/cairn is not stripped"; fi
ca=$root/etc/ssl/certs/ca-certificates.crt
[ "$(grep -c 'BEGIN CERTIFICATE' "$ca" 2>/dev/null || echo 0)" -ge 50 ] || fail "CA bundle missing or nearly empty"
[ "$(stat -c %a "$root/tmp")" = 1777 ] || fail "/tmp is not mode 1777"
ok "filesystem: $(cd "$root" && find . -type f | wc -l) files, no shell, stripped /cairn ($(du -m "$root/cairn" | cut -f1) MB), loader ${interp:-none (static)}, $(grep -c 'BEGIN CERTIFICATE' "$ca") CA certificates, /tmp 1777"

# --- run its binary, as the image would: uid 65532, the image's environment, on loopback only ----------------
# An array, not a function: `"${cairn[@]}" ... &` then execs env -> chroot -> cairn in one process, so $! is
# the server's pid (a backgrounded function would be a bash subshell, and signals would go to it instead).
cairn=(env -i "${image_env[@]}" CAIRN_HOST=127.0.0.1 "$(command -v chroot)" --userspec=65532:65532 "$root" /cairn)
got=$("${cairn[@]}" --version) || fail "/cairn --version failed"
[ "$got" = "cairn $version" ] || fail "/cairn --version printed '$got', the label says $version"
ok "chroot /cairn --version: $got"

mkdir "$root/data" && cp "$data" "$root/data/input.data" && chmod 0644 "$root/data/input.data"
"${cairn[@]}" serve --store /tmp/store --port 0 /data/input.data >"$work/serve.log" 2>&1 &
pid=$!
port=""
for _ in $(seq 1 600); do       # up to 60 s: it ingests the file first
    port=$(sed -n 's|.*serving on http://127\.0\.0\.1:\([0-9][0-9]*\).*|\1|p' "$work/serve.log" | head -n1)
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || fail "serve exited before listening:"$'\n'"$(cat "$work/serve.log")"
    sleep 0.1
done
[ -n "$port" ] || fail "serve did not listen within 60 s:"$'\n'"$(cat "$work/serve.log")"
base=http://127.0.0.1:$port
ok "chroot /cairn serve (uid 65532) ingested $(wc -l <"$data") lines and listens on $base"

# GET returns the value's exact bytes: the rest of the line after the first space (docs/API.md).
check_key() {   # LINE
    local key=${1%% *} value=${1#* } code
    printf '%s' "$value" >"$work/want"
    code=$(curl -sS -o "$work/got" -w '%{http_code}' "$base/v1/keyspaces/default/keys/$key") || fail "GET $key: curl failed"
    [ "$code" = 200 ] || fail "GET $key answered $code: $(head -c 300 "$work/got")"
    cmp -s "$work/want" "$work/got" || fail "GET $key: the value differs from the file's (want '$value', got '$(head -c 300 "$work/got")')"
}
check_key "$(head -n1 "$data")"
check_key "$(tail -n1 "$data")"
code=$(curl -sS -o /dev/null -w '%{http_code}' "$base/v1/keyspaces/default/keys/no-such-key-in-the-data") || fail "GET absent key: curl failed"
[ "$code" = 404 ] || fail "an absent key answered $code, not 404"
ok "GET of the first and last keys byte-exact, absent key 404"

# The HPA's requests-per-second metric is derived from this counter (infra/k8s/base/hpa.yaml).
curl -sS "$base/metrics" | grep -q '^cairn_http_requests_total{' || fail "/metrics has no cairn_http_requests_total"
ok "/metrics exports cairn_http_requests_total"

# The probes infra/k8s uses, enforced as soon as the binary's API document lists them.
paths=$(curl -sS "$base/v1/openapi.json")
for probe in /v1/live /v1/ready; do
    if grep -q "\"$probe\"" <<<"$paths"; then
        code=$(curl -sS -o /dev/null -w '%{http_code}' "$base$probe") || fail "GET $probe: curl failed"
        [ "$code" = 200 ] || fail "GET $probe answered $code once the data was served"
        ok "GET $probe 200"
    else
        echo "check-image: NOTE: this build's API has no $probe (infra/k8s probes it); not checked" >&2
    fi
done

# SIGTERM: drain and exit 0, well within Kubernetes' terminationGracePeriodSeconds (35).
kill -TERM "$pid"
for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "serve still running 30 s after SIGTERM"
status=0; wait "$pid" || status=$?; pid=""
[ "$status" = 0 ] || fail "serve exited $status after SIGTERM, not 0:"$'\n'"$(tail -n 20 "$work/serve.log")"
ok "SIGTERM: serve exited 0"
echo "check-image: $image passed" >&2
