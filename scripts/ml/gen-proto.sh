#!/usr/bin/env bash
# Regenerates the Go code for the KServe V2 (Open Inference Protocol) gRPC
# API in ml/internal/inferencepb from grpc_predict_v2.proto.
#
# The .proto is the public spec, kept verbatim (Apache-2.0 header included)
# from github.com/kserve/kserve docs/predict-api/v2/grpc_predict_v2.proto. It
# declares no go_package, so the Go import path is given here with M options
# instead of editing the file.
#
# Needs protoc (Debian: apt-get install protobuf-compiler). The two Go plugins
# are installed, at the versions pinned below, into the cache with `go install`.
#
# Usage: scripts/ml/gen-proto.sh
#
# Environment:
#   STREAMER_CACHE   cache root (default $HOME/.cache/streamer); the plugins go
#                    to $STREAMER_CACHE/protoc-plugins/bin
set -euo pipefail

PROTOC_GEN_GO=v1.36.12      # google.golang.org/protobuf, as in go.mod
PROTOC_GEN_GO_GRPC=v1.6.2   # google.golang.org/grpc/cmd/protoc-gen-go-grpc

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cache=${STREAMER_CACHE:-${HOME:?HOME is not set}/.cache/streamer}
bin=$cache/protoc-plugins/bin
pkgdir=ml/internal/inferencepb
pkg=github.com/streamerio/streamer/$pkgdir
proto=grpc_predict_v2.proto

die() { echo "gen-proto.sh: error: $*" >&2; exit 1; }

command -v protoc >/dev/null 2>&1 || die "protoc not found: apt-get install protobuf-compiler"
mkdir -p "$bin"
# The plugins print their version; reinstall when it is not the pinned one.
if [[ $("$bin/protoc-gen-go" --version 2>/dev/null) != *"${PROTOC_GEN_GO#v}"* ]]; then
  GOBIN=$bin go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO"
fi
if [[ $("$bin/protoc-gen-go-grpc" --version 2>/dev/null) != *"${PROTOC_GEN_GO_GRPC#v}"* ]]; then
  GOBIN=$bin go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC"
fi

cd "$root/$pkgdir"
PATH=$bin:$PATH protoc -I . \
  --go_out=. --go_opt=paths=source_relative --go_opt="M$proto=$pkg" \
  --go-grpc_out=. --go-grpc_opt=paths=source_relative --go-grpc_opt="M$proto=$pkg" \
  "$proto"
echo "gen-proto.sh: generated $pkgdir/grpc_predict_v2.pb.go and grpc_predict_v2_grpc.pb.go ($(protoc --version))"
