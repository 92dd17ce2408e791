#!/usr/bin/env python3
"""Writes a CIFAR-10-shaped dataset of random images in CIFAR's binary format
(data_batch_1.bin .. data_batch_5.bin, test_batch.bin: records of 1 label
byte and 3 x 32 x 32 pixel bytes) for speed measurements where the real data
cannot be downloaded. Usage: write_synthetic_cifar.py FOLDER [PER_FILE]"""
import os
import sys

folder = sys.argv[1]
per_file = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
os.makedirs(folder, exist_ok=True)
for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
    records = bytearray(os.urandom(per_file * 3073))
    for r in range(per_file):
        records[r * 3073] %= 10  # the label byte: a class in 0..9
    with open(os.path.join(folder, name), "wb") as f:
        f.write(records)
print(f"{folder}: 6 files of {per_file} random examples")
