#!/bin/sh
# rootfs.sh OUT [TAGS] [VERSION]: everything the streamer image holds, in OUT.
#
# The Dockerfile's build stage runs it, and so does deploy/image/build.sh,
# which builds the image on a machine that cannot pull a Go image. Run it
# from the repository's root. TAGS defaults to nolanguage (see the README:
# lingua's models would triple the image).
#
# The image is FROM scratch: a static binary (CGO_ENABLED=0), CA
# certificates for TLS to Kafka, the registry and model servers, an
# /etc/passwd that names the non-root user 65532, a state directory it owns
# and a /tmp.
set -eu
out=$1
tags=${2-nolanguage}
version=${3-dev}
mkdir -p "$out/etc/ssl/certs" "$out/var/lib/streamer" "$out/tmp"
CGO_ENABLED=0 go build -trimpath -tags "$tags" \
	-ldflags "-s -w -X github.com/streamerio/streamer/cli.Version=$version" \
	-o "$out/streamer" ./cmd/streamer
printf 'root:x:0:0:root:/:/sbin/nologin\nstreamer:x:65532:65532:streamer:/var/lib/streamer:/sbin/nologin\n' >"$out/etc/passwd"
printf 'root:x:0:\nstreamer:x:65532:\n' >"$out/etc/group"
cp /etc/ssl/certs/ca-certificates.crt "$out/etc/ssl/certs/ca-certificates.crt"
chmod 1777 "$out/tmp"
