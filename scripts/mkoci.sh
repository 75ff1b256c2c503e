#!/bin/bash
# Used by the Debian-image client test (tests/it/clients.rs) and handy for hand testing.
# usage: mkoci.sh ROOTFS LAYOUT TAG   -> single-layer OCI image layout, reproducible for identical rootfs
set -euo pipefail
ROOTFS=$1 OUT=$2 TAG=$3
mkdir -p "$OUT/blobs/sha256"; echo '{"imageLayoutVersion":"1.0.0"}' > "$OUT/oci-layout"
put() { local d; d=$(sha256sum "$1" | cut -d' ' -f1); mv "$1" "$OUT/blobs/sha256/$d"; echo "$d"; }
tar --sort=name --mtime=@0 --numeric-owner --xattrs --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime -C "$ROOTFS" -cf "$OUT/layer.tar" .
DIFF=$(sha256sum "$OUT/layer.tar" | cut -d' ' -f1)
gzip -n -1 "$OUT/layer.tar"; LSZ=$(stat -c %s "$OUT/layer.tar.gz"); LD=$(put "$OUT/layer.tar.gz")
jq -cn --arg diff "sha256:$DIFF" '{architecture:"amd64",os:"linux",config:{Env:["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],Cmd:["/bin/bash"]},rootfs:{type:"layers",diff_ids:[$diff]}}' > "$OUT/c.json"
CSZ=$(stat -c %s "$OUT/c.json"); CD=$(put "$OUT/c.json")
jq -cn --arg cd "sha256:$CD" --argjson csz $CSZ --arg ld "sha256:$LD" --argjson lsz $LSZ '{schemaVersion:2,mediaType:"application/vnd.oci.image.manifest.v1+json",config:{mediaType:"application/vnd.oci.image.config.v1+json",digest:$cd,size:$csz},layers:[{mediaType:"application/vnd.oci.image.layer.v1.tar+gzip",digest:$ld,size:$lsz}]}' > "$OUT/m.json"
MSZ=$(stat -c %s "$OUT/m.json"); MD=$(put "$OUT/m.json")
jq -cn --arg md "sha256:$MD" --argjson msz $MSZ --arg tag "$TAG" '{schemaVersion:2,manifests:[{mediaType:"application/vnd.oci.image.manifest.v1+json",digest:$md,size:$msz,annotations:{"org.opencontainers.image.ref.name":$tag}}]}' > "$OUT/index.json"
echo "sha256:$MD"
