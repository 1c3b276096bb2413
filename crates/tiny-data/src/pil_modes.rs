//! PIL's resize rules by image mode, which the chapter's `Image.open(f).resize(..).convert('RGB')` applies
//! before the RGB conversion: NEAREST for palette and 1-bit images, premultiplied alpha for images with alpha.

use crate::decode::Crop;

/// What a decoded image was before it became RGB, where that changes how PIL's `resize` treats it.
///
/// The chapter resizes first and converts to RGB after, so the file's mode decides the filter:
/// `Image.resize` uses NEAREST for `"P"` and `"1"` images whatever filter is asked for, and resizes
/// `"RGBA"` and `"LA"` images premultiplied by their alpha, dividing it back out before `convert('RGB')`
/// drops it. tiny keeps this much of the mode beside the RGB pixels so that its input matches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SourceKind {
    /// Colour, grey or CMYK without alpha: resized with the bicubic filter.
    #[default]
    Opaque,
    /// A palette or 1-bit image: resized by nearest neighbour, as PIL does.
    Indexed,
    /// An image with alpha, one byte per pixel: resized premultiplied, as PIL does.
    Alpha(Vec<u8>),
}

/// Tells whether PNG bytes hold a palette image (colour type 3) or a 1-bit greyscale one (PIL's mode `"1"`),
/// from the IHDR chunk that every PNG starts with.
pub(crate) fn png_is_indexed(bytes: &[u8]) -> bool {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    // Signature (8), chunk length (4), "IHDR" (4), width (4), height (4), bit depth (1), colour type (1).
    if bytes.len() < 26 || !bytes.starts_with(SIGNATURE) || &bytes[12..16] != b"IHDR" {
        return false;
    }
    let (depth, colour) = (bytes[24], bytes[25]);
    colour == 3 || (colour == 0 && depth == 1)
}

/// Tells whether BMP bytes hold an image PIL opens as mode `"P"` or `"1"`: 1 to 8 bits a pixel with a palette that
/// is not the grey ramp PIL's BMP reader turns into mode `"L"` (entry `i` grey level `i`, or black and white for two
/// colours, which is mode `"1"`: still resized by nearest neighbour).
pub(crate) fn bmp_is_indexed(bytes: &[u8]) -> bool {
    let word = |at: usize, n: usize| -> Option<usize> {
        let b = bytes.get(at..at + n)?;
        Some(b.iter().rev().fold(0usize, |v, &x| v << 8 | usize::from(x)))
    };
    if !bytes.starts_with(b"BM") {
        return false;
    }
    let Some(header) = word(14, 4) else { return false };
    // The 12-byte OS/2 core header keeps its bit count at 24 and palette entries of 3 bytes; the others at 28 and 4.
    let (bpp, entry) = if header == 12 { (word(24, 2), 3) } else { (word(28, 2), 4) };
    let Some(bpp) = bpp.filter(|&b| (1..=8).contains(&b)) else { return false };
    let colours = match if header == 12 { None } else { word(46, 4) } {
        Some(n) if n > 0 => n,
        _ => 1 << bpp,
    };
    if colours == 2 {
        return true;
    }
    let palette = 14 + header;
    let grey = (0..colours).all(|i| {
        let v = i.min(255) as u8;
        bytes.get(palette + i * entry..palette + i * entry + 3).is_some_and(|rgb| rgb == [v, v, v])
    });
    !grey
}

/// PIL's `MULDIV255(a, b)`: `a * b / 255`, rounded as its integer arithmetic does.
fn muldiv255(a: u8, b: u8) -> u8 {
    let t = u32::from(a) * u32::from(b) + 128;
    (((t >> 8) + t) >> 8) as u8
}

/// RGB and alpha into premultiplied RGBa, as PIL's `convert("RGBa")`.
pub(crate) fn premultiply(rgb: &[u8], alpha: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(alpha.len() * 4);
    for (px, &a) in rgb.chunks_exact(3).zip(alpha) {
        out.extend([muldiv255(px[0], a), muldiv255(px[1], a), muldiv255(px[2], a), a]);
    }
    out
}

/// Premultiplied RGBa back to RGB (the alpha dropped), as PIL's `convert("RGBA")` then `convert("RGB")`:
/// each colour becomes `min(255, 255 * c / a)`, and is kept as it is where alpha is 0 or 255.
pub(crate) fn unpremultiply_to_rgb(rgba: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rgba.len() / 4 * 3);
    for px in rgba.chunks_exact(4) {
        let a = u32::from(px[3]);
        for &c in &px[..3] {
            out.push(if a == 0 || a == 255 { c } else { (255 * u32::from(c) / a).min(255) as u8 });
        }
    }
    out
}

/// Nearest-neighbour resize of the `crop` of an RGB image to `size x size`, sampling as PIL's affine NEAREST
/// resize does: the source column of output column `x` is `floor(left + step / 2 + x * step)`, the sum taken
/// step by step in double precision as Pillow's `ImagingScaleAffine` accumulates it (rows likewise).
pub(crate) fn nearest(rgb: &[u8], width: u32, height: u32, crop: Crop, size: u32) -> Vec<u8> {
    let positions = |start: f64, extent: f64, limit: u32| -> Vec<usize> {
        let step = extent / f64::from(size);
        let mut at = start + step * 0.5;
        (0..size)
            .map(|_| {
                let i = if at < 0.0 { 0 } else { (at as usize).min(limit as usize - 1) };
                at += step;
                i
            })
            .collect()
    };
    let xs = positions(crop.left, crop.width, width);
    let ys = positions(crop.top, crop.height, height);
    let mut out = Vec::with_capacity((size * size * 3) as usize);
    for &y in &ys {
        let row = &rgb[y * width as usize * 3..][..width as usize * 3];
        for &x in &xs {
            out.extend_from_slice(&row[x * 3..x * 3 + 3]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn premultiplying_rounds_as_pil() {
        // Values read from PIL 13: Image.fromarray(px, "RGBA").convert("RGBa").
        let rgb = [200, 100, 50, 200, 100, 50, 200, 100, 50, 255, 255, 255, 10, 20, 30];
        let alpha = [0, 1, 128, 254, 255];
        assert_eq!(
            premultiply(&rgb, &alpha),
            [0, 0, 0, 0, 1, 0, 0, 1, 100, 50, 25, 128, 254, 254, 254, 254, 10, 20, 30, 255]
        );
        // And back: Image.frombytes("RGBa", ...).convert("RGBA").
        assert_eq!(
            unpremultiply_to_rgb(&[100, 50, 25, 128, 0, 0, 0, 0, 1, 1, 1, 1, 200, 0, 0, 100]),
            [199, 99, 49, 0, 0, 0, 255, 255, 255, 255, 0, 0]
        );
    }

    #[test]
    fn nearest_samples_the_centre_of_each_step() {
        // A 5-pixel row to 2: steps of 2.5, samples at 1.25 and 3.75, so source columns 1 and 3.
        let rgb: Vec<u8> = (0..5).flat_map(|v| [v, v, v]).collect();
        let out = nearest(&rgb, 5, 1, Crop::full(5, 1), 2);
        assert_eq!(out.len(), 2 * 2 * 3);
        assert_eq!(&out[..6], &[1, 1, 1, 3, 3, 3]);
    }

    #[test]
    fn indexed_pngs_are_told_from_their_header() {
        let header = |depth: u8, colour: u8| {
            let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\0\0\0\x10\0\0\0\x10".to_vec();
            b.extend([depth, colour, 0, 0, 0]);
            b
        };
        assert!(png_is_indexed(&header(8, 3)));
        assert!(png_is_indexed(&header(1, 0)));
        assert!(!png_is_indexed(&header(8, 0)));
        assert!(!png_is_indexed(&header(8, 6)));
        assert!(!png_is_indexed(b"\xff\xd8\xff"));
    }
}
