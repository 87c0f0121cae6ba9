#!/usr/bin/env bash
# Fetches the ONNX Runtime shared library once into a cache and prints the
# absolute path of libonnxruntime.so on stdout, for ml.LoadONNX:
#
#   STREAMER_ONNXRUNTIME_LIB=$(scripts/ml/onnxruntime.sh) go test ./ml/
#
# The library comes out of the onnxruntime wheel on PyPI (the CPU build, which
# bundles everything it needs), since the GitHub release tarballs are not
# reachable from the build machines. The wheel is checked against a pinned
# sha256 before anything is unpacked.
#
# The version must match the C API headers that github.com/yalue/onnxruntime_go
# was built against: v1.27.0 ships the 1.24.1 headers (ORT_API_VERSION 24).
# Bump both together.
#
# Environment:
#   STREAMER_CACHE   cache root (default $HOME/.cache/streamer); the library
#                    goes to $STREAMER_CACHE/onnxruntime-<version>/
#
# A second run finds the cache, prints the path and nothing else.
set -euo pipefail

ORT_VERSION=1.24.1
CACHE_ROOT=${STREAMER_CACHE:-${HOME:?HOME is not set}/.cache/streamer}
DIR=$CACHE_ROOT/onnxruntime-$ORT_VERSION
LIB=$DIR/libonnxruntime.so

die() { echo "onnxruntime.sh: error: $*" >&2; exit 1; }
say() { echo "onnxruntime.sh: $*" >&2; }

if [[ -f $DIR/libonnxruntime.so.$ORT_VERSION && -L $LIB ]]; then
  echo "$LIB"
  exit 0
fi

# The cp311 wheels: the library inside does not depend on Python, so any
# interpreter version's wheel would do; these are pinned by hash.
case "$(uname -s)/$(uname -m)" in
  Linux/x86_64)
    WHEEL=onnxruntime-$ORT_VERSION-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl
    PLATFORM=manylinux_2_28_x86_64
    URL=https://files.pythonhosted.org/packages/94/d6/d273b75fe7825ea3feed321dd540aef33d8a1380ddd8ac3bb70a8ed000fe/$WHEEL
    SHA256=1cabe71ca14dcfbf812d312aab0a704507ac909c137ee6e89e4908755d0fc60e
    ;;
  Linux/aarch64)
    WHEEL=onnxruntime-$ORT_VERSION-cp311-cp311-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl
    PLATFORM=manylinux_2_28_aarch64
    URL=https://files.pythonhosted.org/packages/7b/61/b3305c39144e19dbe8791802076b29b4b592b09de03d0e340c1314bfd408/$WHEEL
    SHA256=86bc43e922b1f581b3de26a3dc402149c70e5542fceb5bec6b3a85542dbeb164
    ;;
  *)
    die "no pinned onnxruntime wheel for $(uname -s)/$(uname -m); install ONNX Runtime $ORT_VERSION yourself and set STREAMER_ONNXRUNTIME_LIB to its libonnxruntime.so"
    ;;
esac

command -v unzip >/dev/null || die "unzip is needed to unpack the wheel (apt-get install unzip)"
mkdir -p "$CACHE_ROOT"
TMP=$(mktemp -d "$CACHE_ROOT/.onnxruntime-$ORT_VERSION.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# pip first, so that a configured index or mirror is honoured; the platform
# flags make it fetch the cp311 manylinux wheel whatever the local Python is.
# curl straight from files.pythonhosted.org otherwise.
say "fetching $WHEEL"
got=
if command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1; then
  if python3 -m pip download -q --no-deps --only-binary=:all: \
      --platform "$PLATFORM" --python-version 3.11 --implementation cp --abi cp311 \
      -d "$TMP" "onnxruntime==$ORT_VERSION" >&2; then
    got=$TMP/$WHEEL
  else
    say "pip download failed; trying files.pythonhosted.org"
  fi
fi
if [[ -z $got || ! -f $got ]]; then
  command -v curl >/dev/null || die "neither pip nor curl could fetch the wheel; download $URL and unpack onnxruntime/capi/libonnxruntime.so.$ORT_VERSION into $DIR"
  curl -fsSL --retry 3 -o "$TMP/$WHEEL" "$URL" || die "could not download $URL"
  got=$TMP/$WHEEL
fi

echo "$SHA256  $got" | sha256sum -c --quiet - >&2 || die "$WHEEL does not have the pinned sha256 $SHA256"

unzip -q -j "$got" "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" -d "$TMP/lib" ||
  die "$WHEEL holds no onnxruntime/capi/libonnxruntime.so.$ORT_VERSION"
# The unversioned name is what callers get; it points at the real file, as
# in the official release tarballs.
ln -s "libonnxruntime.so.$ORT_VERSION" "$TMP/lib/libonnxruntime.so"

# Rename into place in one step, so that a concurrent run sees either no
# cache or a complete one.
if ! mv -T "$TMP/lib" "$DIR" 2>/dev/null; then
  [[ -f $DIR/libonnxruntime.so.$ORT_VERSION && -L $LIB ]] ||
    die "could not create $DIR (remove it if it holds a broken earlier attempt)"
fi
say "cached in $DIR"
echo "$LIB"
