#!/usr/bin/env python3
"""Copies an image folder with every JPEG re-encoded by PIL (its defaults: quality 75, 4:2:0 chroma), so that
tiny's decoder can be measured on files written the way the held-out Imagenette-shaped set was.

    python parity/reencode.py --src data/synth-imagenette --dst /tmp/synth-pil
"""
import argparse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image


def one(pair):
    src, dst = pair
    dst.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(src) as im:
        if src.suffix.lower() in (".jpg", ".jpeg"):
            im.save(dst, format="JPEG")
        else:
            im.save(dst)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", type=Path, required=True)
    ap.add_argument("--dst", type=Path, required=True)
    a = ap.parse_args()
    pairs = [(p, a.dst / p.relative_to(a.src)) for p in sorted(a.src.rglob("*")) if p.is_file()
             and p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    with ProcessPoolExecutor() as ex:
        list(ex.map(one, pairs, chunksize=64))
    print(f"re-encoded {len(pairs)} files into {a.dst}")


if __name__ == "__main__":
    main()
