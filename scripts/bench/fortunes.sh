#!/bin/sh
# Fetches the text of the peers benchmark's W4 (issue 16): Debian's
# translated fortune cookies, with apt-get download (no root needed, no
# install), unpacked with dpkg-deb -x into DIR (default bin/peers-w4, not
# committed). Bookworm has no fortunes-fr. Idempotent: a DIR that already
# holds the texts is left as it is.
set -eu
dir=${1:-bin/peers-w4}
pkgs="fortunes-cs fortunes-de fortunes-es fortunes-it fortunes-pl fortunes-ru fortunes-br fortunes-min"
if [ -f "$dir/.complete" ]; then
	echo "fortunes.sh: $dir already holds the fortunes"
	exit 0
fi
mkdir -p "$dir/deb"
(cd "$dir/deb" && apt-get download $pkgs)
for f in "$dir"/deb/*.deb; do
	dpkg-deb -x "$f" "$dir"
done
ls "$dir"/deb/*.deb | xargs -n1 basename > "$dir/.complete"
echo "fortunes.sh: unpacked $(wc -l < "$dir/.complete") packages into $dir"
