#!/usr/bin/env bash
# Peak memory of `diffstride data` on a gzip bomb: Fashion-MNIST's files from
# Debian's package, with train-images replaced by a 60000 x 28 x 28 header
# followed by 2 GiB of zeros, gzip-compressed (about 2 MB). The reader stops
# at the first byte past what the header announces; prints the error and
# the maximum resident set size of the bomb and of the real dataset.
#   bash bench/gzip_bomb.sh [build/diffstride]
set -euo pipefail
tool=${1:-build/diffstride}
real=/usr/share/datasets/fashion-mnist
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$real"/* "$work"/
python3 - "$work/train-images-idx3-ubyte.gz" <<'PY'
import gzip, struct, sys
with gzip.open(sys.argv[1], "wb", compresslevel=9) as out:
    out.write(struct.pack(">IIII", 0x803, 60000, 28, 28))
    zeros = bytes(1 << 24)
    for _ in range(128):  # 2 GiB
        out.write(zeros)
PY
echo "bomb: $(stat -c %s "$work/train-images-idx3-ubyte.gz") bytes compressed"
for dir in "$work" "$real"; do
  echo "== $tool data --dataset fashion_mnist --data-dir $dir"
  /usr/bin/time -f "max resident set size: %M KiB, %e s" \
    "$tool" data --dataset fashion_mnist --data-dir "$dir" 2>&1 | tail -3 || true
done
