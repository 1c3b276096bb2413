#!/usr/bin/env python3
"""Input parity: tiny's decode + resize against the reference's `Image.open(f).resize((s, s)).convert('RGB')`.

    cargo build --release -p tiny-data --example dump_pixels
    python parity/input_parity.py --data data/synth-imagenette [--n 200] [--size 64]

For each input path tiny has it takes up to --n files, runs tiny's loader transform on them
(`dump_pixels`) and PIL's, and reports the mean and largest absolute difference in grey levels (0-255):
  jpeg_ycbcr    colour JPEGs of --data (tiny's fast zune-jpeg path)
  jpeg_pil      the same images written by PIL (quality 75, 4:2:0 chroma), as the held-out set was
  jpeg_grey     greyscale JPEGs of --data (through the `image` crate)
  jpeg_cmyk     the colour images as PIL-written CMYK JPEGs
  png_rgb       the colour images as RGB PNGs
  png_palette   the colour images as palette PNGs (PIL resizes these with NEAREST, as it does every "P" image)
  png_rgba      the colour images as RGBA PNGs with an alpha ramp
  cache         jpeg_ycbcr again, through the dataset's resized-image cache
Prints one JSON line per path and a table.
"""
import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def pil_pixels(files, size):
    return np.stack([np.asarray(Image.open(f).resize((size, size)).convert("RGB")) for f in files])


def tiny_pixels(files, size, tool, tmp, cache=False):
    out, lst = Path(tmp) / "pixels.u8", Path(tmp) / "files.txt"
    lst.write_text("\n".join(str(f) for f in files))
    cmd = [str(tool), "--size", str(size), "--out", str(out), "--list", str(lst)] + (["--cache"] if cache else [])
    subprocess.run(cmd, check=True, capture_output=True)
    return np.fromfile(out, dtype=np.uint8).reshape(len(files), size, size, 3)


def derived(sources, tmp, kind):
    """Copies of colour images in another format, written by PIL."""
    d = Path(tmp) / kind
    d.mkdir()
    out = []
    for i, f in enumerate(sources):
        im = Image.open(f).convert("RGB")
        if kind == "jpeg_pil":
            p = d / f"{i}.jpg"
            im.save(p, format="JPEG")
        elif kind == "jpeg_cmyk":
            p = d / f"{i}.jpg"
            im.convert("CMYK").save(p, format="JPEG", quality=90)
        elif kind == "png_rgb":
            p = d / f"{i}.png"
            im.save(p)
        elif kind == "png_palette":
            p = d / f"{i}.png"
            im.convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(p)
        elif kind == "png_rgba":
            p = d / f"{i}.png"
            a = np.tile(np.linspace(0, 255, im.width, dtype=np.uint8), (im.height, 1))
            rgba = im.copy()
            rgba.putalpha(Image.fromarray(a))
            rgba.save(p)
        out.append(p)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--tool", type=Path, default=ROOT / "target" / "release" / "examples" / "dump_pixels")
    a = ap.parse_args()
    files = sorted(p for p in a.data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    colour, grey = [], []
    for f in files:
        with Image.open(f) as im:
            (grey if im.mode == "L" else colour).append(f)
    step = max(1, len(colour) // a.n)
    colour = colour[::step][: a.n]
    grey = grey[: a.n]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sets = {"jpeg_ycbcr": colour, "jpeg_grey": grey}
        for kind in ("jpeg_pil", "jpeg_cmyk", "png_rgb", "png_palette", "png_rgba"):
            sets[kind] = derived(colour, tmp, kind)
        sets["cache"] = colour
        for kind, fs in sets.items():
            if not fs:
                continue
            t = tiny_pixels(fs, a.size, a.tool, tmp, cache=kind == "cache").astype(np.int16)
            p = pil_pixels(fs, a.size).astype(np.int16)
            d = np.abs(t - p)
            per_image = d.reshape(len(fs), -1).mean(1)
            row = dict(path=kind, images=len(fs), size=a.size, mean_abs=float(d.mean()), max_abs=int(d.max()),
                       worst_image_mean=float(per_image.max()), share_differing=float((d > 0).mean()),
                       channel_mean_tiny=(t.mean((0, 1, 2)) / 255).round(5).tolist(),
                       channel_mean_pil=(p.mean((0, 1, 2)) / 255).round(5).tolist())
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"{'path':12} {'images':>6} {'mean |d|':>9} {'max |d|':>8} {'worst image':>12} {'differing':>10}")
    for r in rows:
        print(f"{r['path']:12} {r['images']:6} {r['mean_abs']:9.3f} {r['max_abs']:8} {r['worst_image_mean']:12.3f} "
              f"{r['share_differing']:10.3f}")


if __name__ == "__main__":
    main()
