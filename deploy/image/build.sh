#!/bin/sh
# build.sh: builds the streamer image with podman from deploy/Dockerfile
# without pulling any image, then checks it: its size, its user, and that
# `streamer version` and `streamer demo` run inside it. `make image` runs it.
#
# The Dockerfile's build stage needs a Go image, which a machine without a
# registry cannot pull; here deploy/image/rootfs.sh runs on the host instead
# (the same script that stage runs) and its output stands in for the stage
# (podman build --build-context build=DIR). The final stage is the same.
#
# Environment: TAGS (default nolanguage; empty builds the -language image),
# VERSION (default git describe), IMAGE (default localhost/streamer:VERSION,
# with -language when TAGS is empty), MAX_MB (default 60 with nolanguage,
# none otherwise), PODMAN (default podman).
set -eu
cd "$(dirname "$0")/../.."
podman=${PODMAN-podman}
tags=${TAGS-nolanguage}
version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
suffix=
[ -n "$tags" ] || suffix=-language
image=${IMAGE:-localhost/streamer:$version$suffix}
max_mb=${MAX_MB-60}
[ -n "$tags" ] || max_mb=${MAX_MB-}

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
deploy/image/rootfs.sh "$ctx/out" "$tags" "$version"
"$podman" build -q --build-context build="$ctx" -f deploy/Dockerfile -t "$image" . >/dev/null

size=$("$podman" image inspect "$image" --format '{{.Size}}')
user=$("$podman" image inspect "$image" --format '{{.Config.User}}')
echo "image $image: $size bytes ($((size / 1000000)) MB), user $user"
if [ "$user" != "65532:65532" ]; then
	echo "the image runs as $user, not the non-root 65532:65532" >&2
	exit 1
fi
if [ -n "$max_mb" ] && [ "$size" -gt $((max_mb * 1000000)) ]; then
	echo "the image is over $max_mb MB" >&2
	exit 1
fi

# Some sandboxes refuse crun's default limits and its cgroup setup
# ("setrlimit RLIMIT_NOFILE: Operation not permitted", "cgroups in hybrid
# mode not supported"): then run with runc, within the current limits.
run() {
	set -- ${PODMAN_VOLUME:+-v "$PODMAN_VOLUME"} "$image" "$@"
	rc=0
	"$podman" run --rm "$@" 2>"$ctx/err" || rc=$?
	[ $rc -ne 0 ] || return 0
	if [ $rc -ne 126 ] || ! command -v runc >/dev/null; then
		cat "$ctx/err" >&2
		return $rc
	fi
	echo "podman run failed: $(cat "$ctx/err"); retrying with runc within the current limits" >&2
	"$podman" --runtime runc run --rm --ulimit nofile="$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096 "$@"
}
got=$(run version)
echo "$got"
[ "$got" = "streamer $version" ] || { echo "streamer version said \"$got\"; want \"streamer $version\"" >&2; exit 1; }
run demo --duration 3s --rate 1000 >"$ctx/demo"
tail -7 "$ctx/demo"
grep -q 'every order accounted for, exactly once.' "$ctx/demo" || { echo "streamer demo did not check out" >&2; exit 1; }
# The language pipe: in the -language image it validates; in the default
# one validation names the build that has it.
cat >"$ctx/lang.yaml" <<'YAML'
name: lang
datasets:
  in: {topic: in, value: json}
  out: {topic: out}
pipes:
  detect:
    from: in
    to: out
    language: {text: message, output: lang}
YAML
chmod 644 "$ctx/lang.yaml"
rc=0
out=$(PODMAN_VOLUME="$ctx/lang.yaml:/lang.yaml:ro" run validate /lang.yaml 2>&1) || rc=$?
echo "$out" | tail -2
if [ -n "$tags" ]; then
	[ $rc -eq 3 ] && echo "$out" | grep -q 'not in this build.*-language' || { echo "validating a language pipe: exit $rc; want 3 and an error naming the -language image" >&2; exit 1; }
else
	[ $rc -eq 0 ] || { echo "validating a language pipe in the -language image: exit $rc" >&2; exit 1; }
fi
echo "ok: $image"
