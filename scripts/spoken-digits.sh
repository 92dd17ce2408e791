#!/usr/bin/env bash
# Writes a small speech dataset with espeak-ng: the ten digits spoken in
# English by 6 accents x 5 voice variants x 4 speeds x 3 pitches, as WAV
# files in the layout of audio folders (docs/data.md, "Audio folders"):
#   OUT/train/<digit>/<accent>_<variant>_<speed>_<pitch>.wav
#   OUT/val/<digit>/...   (the variant f2: a speaker the training split never hears)
# 10 x 6 x 5 x 4 x 3 = 3600 files, about a minute on 2 cores.
# Usage: bash scripts/spoken-digits.sh OUT
set -euo pipefail
out=${1:?usage: spoken-digits.sh OUT}
command -v espeak-ng > /dev/null || { echo "spoken-digits.sh: espeak-ng not found (apt-get install espeak-ng)" >&2; exit 1; }
words=(zero one two three four five six seven eight nine)
accents=(en-us en-gb en-gb-scotland en-gb-x-rp en-029 en-gb-x-gbcwmd)
variants=(m1 m3 f1 f4 f2)
speeds=(120 150 180 210)
pitches=(35 50 65)
for d in "${!words[@]}"; do
  for split in train val; do mkdir -p "$out/$split/$d"; done
done
jobs=()
for accent in "${accents[@]}"; do
  for variant in "${variants[@]}"; do
    split=train
    [ "$variant" = f2 ] && split=val
    (
      for d in "${!words[@]}"; do
        for speed in "${speeds[@]}"; do
          for pitch in "${pitches[@]}"; do
            espeak-ng -v "$accent+$variant" -s "$speed" -p "$pitch" \
              -w "$out/$split/$d/${accent}_${variant}_${speed}_${pitch}.wav" "${words[$d]}"
          done
        done
      done
    ) &
    jobs+=($!)
    if [ "${#jobs[@]}" -ge 2 ]; then wait "${jobs[@]}"; jobs=(); fi
  done
done
wait
echo "spoken digits: $(find "$out/train" -name '*.wav' | wc -l) training and $(find "$out/val" -name '*.wav' | wc -l) validation files in $out"
