//! Decoding image files to RGB and turning them into `size x size` crops: squash, centre crop,
//! random resized crop and horizontal flip.

use std::cell::RefCell;
use std::io::Cursor;
use std::path::Path;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::pil_modes::{self, SourceKind};
use crate::{DataError, Result, Rng};

/// A decoded 8-bit RGB image in row-major HWC order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `height * width * 3` bytes, RGB interleaved, rows top to bottom.
    pub data: Vec<u8>,
    /// What the file held before it became RGB, where that changes how it is resized (see [`SourceKind`]).
    pub kind: SourceKind,
}

impl RgbImage {
    /// An RGB image of ordinary (opaque, non-palette) origin.
    pub fn opaque(width: u32, height: u32, data: Vec<u8>) -> Self {
        RgbImage { width, height, data, kind: SourceKind::Opaque }
    }
}

/// The most pixels an image may claim before decoding: PIL's limit, past which `Image.open` raises
/// `DecompressionBombError` (twice `Image.MAX_IMAGE_PIXELS`). A 9 KB JPEG can claim 16000x16000 pixels; decoding
/// it would take 768 MB for garbage.
pub const MAX_IMAGE_PIXELS: u64 = 178_956_970;

/// An error when a header claims more than [`MAX_IMAGE_PIXELS`], checked before any pixel is decoded.
fn check_pixels(path: &Path, width: u32, height: u32) -> Result<()> {
    if u64::from(width) * u64::from(height) > MAX_IMAGE_PIXELS {
        return Err(DataError::TooManyPixels { path: path.to_path_buf(), width, height, limit: MAX_IMAGE_PIXELS });
    }
    Ok(())
}

/// Reads and decodes an image file to 3-channel RGB.
///
/// Greyscale, palette, alpha and CMYK inputs all come out as RGB (alpha is dropped, as PIL's
/// `convert('RGB')` does), with what they were kept in [`RgbImage::kind`] so that resizing treats them as PIL
/// does. The format is recognised from the bytes, not the extension.
///
/// # Errors
/// Every error names `path`: [`DataError::Io`], [`DataError::EmptyFile`],
/// [`DataError::TruncatedJpeg`], [`DataError::TooManyPixels`], [`DataError::Decode`] or
/// [`DataError::EmptyImage`].
pub fn decode_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_rgb_bytes(&bytes, path)
}

/// Reads the file at `path` and its image header without decoding a pixel, and returns the image's size: a check
/// that finds, before any training, the bad files a decode would find later (empty, a cut-off JPEG, not an image,
/// an image too large), though not damage in the middle of the compressed data.
///
/// # Errors
/// As [`decode_rgb`], except a [`DataError::Decode`] that only the pixels would show.
pub fn probe_image(path: &Path) -> Result<(u32, u32)> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    check_complete(&bytes, path)?;
    let (width, height) = image::ImageReader::new(Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?
        .into_dimensions()
        .map_err(|source| DataError::Decode { path: path.to_path_buf(), source })?;
    check_pixels(path, width, height)?;
    if width == 0 || height == 0 {
        return Err(DataError::EmptyImage { path: path.to_path_buf(), width, height });
    }
    Ok((width, height))
}

/// Decodes image bytes to RGB; `path` is only used to name the file in errors.
pub fn decode_rgb_bytes(bytes: &[u8], path: &Path) -> Result<RgbImage> {
    check_complete(bytes, path)?;
    if bytes.starts_with(&[0xFF, 0xD8])
        && let Some(img) = decode_ycbcr_jpeg(bytes, path)?
    {
        return Ok(img);
    }
    let decode_err = |source| DataError::Decode { path: path.to_path_buf(), source };
    // One header parse: the claimed size is checked before the decoder reads any pixel.
    let decoder = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?
        .into_decoder()
        .map_err(decode_err)?;
    let (claimed_w, claimed_h) = image::ImageDecoder::dimensions(&decoder);
    check_pixels(path, claimed_w, claimed_h)?;
    let img = image::DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    let (width, height) = (img.width(), img.height());
    if width == 0 || height == 0 {
        return Err(DataError::EmptyImage { path: path.to_path_buf(), width, height });
    }
    let indexed = pil_modes::png_is_indexed(bytes) || pil_modes::bmp_is_indexed(bytes);
    if img.color().has_alpha() && !indexed {
        let rgba = img.into_rgba8().into_raw();
        let data = rgba.chunks_exact(4).flat_map(|px| [px[0], px[1], px[2]]).collect();
        let alpha = rgba.chunks_exact(4).map(|px| px[3]).collect();
        return Ok(RgbImage { width, height, data, kind: SourceKind::Alpha(alpha) });
    }
    let kind = if indexed { SourceKind::Indexed } else { SourceKind::Opaque };
    Ok(RgbImage { width, height, data: img.into_rgb8().into_raw(), kind })
}

/// Refuses an empty file and a cut-off JPEG, the checks both [`decode_rgb_bytes`] and [`probe_image`] make first.
/// zune-jpeg is lenient and pads a cut-off scan with grey, so a truncated download would otherwise decode
/// "successfully". A complete JPEG ends with an EOI marker (FF D9), a byte pair that cannot occur inside
/// entropy-coded data, so looking near the end is enough.
fn check_complete(bytes: &[u8], path: &Path) -> Result<()> {
    if bytes.is_empty() {
        return Err(DataError::EmptyFile { path: path.to_path_buf() });
    }
    if bytes.starts_with(&[0xFF, 0xD8]) && !has_jpeg_eoi(bytes) {
        return Err(DataError::TruncatedJpeg { path: path.to_path_buf() });
    }
    Ok(())
}

/// Decodes a three-component (YCbCr) JPEG straight to RGB with zune-jpeg, the decoder `image` uses inside,
/// without `image`'s format sniffing and buffer conversions (about 7% of the decode time). `None` for any
/// other JPEG (greyscale, CMYK) or any failure: the caller then goes through `image`, which converts those
/// and reports errors. A header that claims more than [`MAX_IMAGE_PIXELS`] is an error before anything is decoded.
fn decode_ycbcr_jpeg(bytes: &[u8], path: &Path) -> Result<Option<RgbImage>> {
    use zune_core::bytestream::ZCursor;
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    let opts = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), opts);
    if decoder.decode_headers().is_err() {
        return Ok(None);
    }
    let (Some(info), Some((width, height))) = (decoder.info(), decoder.dimensions()) else { return Ok(None) };
    check_pixels(path, u32::try_from(width).unwrap_or(u32::MAX), u32::try_from(height).unwrap_or(u32::MAX))?;
    if info.components != 3 {
        return Ok(None);
    }
    let Ok(data) = decoder.decode() else { return Ok(None) };
    let ok = width > 0 && height > 0 && data.len() == width * height * 3;
    Ok(ok.then(|| RgbImage::opaque(width as u32, height as u32, data)))
}

/// Tells whether a JPEG's last bytes hold the end-of-image marker (trailing padding allowed).
fn has_jpeg_eoi(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// How an image is fitted into the `size x size` square when not augmenting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResizeMethod {
    /// Resize the whole image to `size x size`, ignoring its aspect ratio (the chapter's choice).
    #[default]
    Squash,
    /// Take the largest centred square and resize it.
    CenterCrop,
}

/// torchvision-style random resized crop: a random area fraction and aspect ratio, then resize.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomResizedCrop {
    /// Smallest fraction of the image area kept.
    pub min_scale: f32,
    /// Largest fraction of the image area kept.
    pub max_scale: f32,
    /// Smallest aspect ratio (width / height) of the crop.
    pub min_ratio: f32,
    /// Largest aspect ratio (width / height) of the crop.
    pub max_ratio: f32,
}

impl Default for RandomResizedCrop {
    /// Returns fastai's usual setting: 35% to 100% of the area, ratios 3/4 to 4/3.
    fn default() -> Self {
        RandomResizedCrop { min_scale: 0.35, max_scale: 1.0, min_ratio: 3.0 / 4.0, max_ratio: 4.0 / 3.0 }
    }
}

/// A crop rectangle in source pixels, fractional coordinates allowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Crop {
    /// Left edge.
    pub left: f64,
    /// Top edge.
    pub top: f64,
    /// Width.
    pub width: f64,
    /// Height.
    pub height: f64,
}

impl Crop {
    /// The whole `width x height` image.
    pub fn full(width: u32, height: u32) -> Self {
        Crop { left: 0.0, top: 0.0, width: width as f64, height: height as f64 }
    }

    /// The largest centred square of a `width x height` image.
    pub fn center_square(width: u32, height: u32) -> Self {
        let side = width.min(height) as f64;
        Crop { left: (width as f64 - side) / 2.0, top: (height as f64 - side) / 2.0, width: side, height: side }
    }

    /// A random crop of a `width x height` image as `rrc` describes.
    pub fn random(width: u32, height: u32, rrc: &RandomResizedCrop, rng: &mut Rng) -> Self {
        let (w, h) = (width as f64, height as f64);
        let (lo, hi) = ((rrc.min_ratio as f64).ln(), (rrc.max_ratio as f64).ln());
        for _ in 0..10 {
            let area = w * h * rng.uniform(rrc.min_scale, rrc.max_scale) as f64;
            let ratio = (lo + (hi - lo) * rng.next_f64()).exp();
            let (cw, ch) = ((area * ratio).sqrt(), (area / ratio).sqrt());
            if cw >= 1.0 && ch >= 1.0 && cw <= w && ch <= h {
                return Crop { left: (w - cw) * rng.next_f64(), top: (h - ch) * rng.next_f64(), width: cw, height: ch };
            }
        }
        Crop::center_square(width, height)
    }
}

/// What happens to each decoded image before it is batched.
///
/// ```
/// let tfm = tiny_data::ItemTransform::squash(64);
/// assert_eq!(tfm.size, 64);
/// assert!(!tfm.is_random());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ItemTransform {
    /// Output side length in pixels.
    pub size: u32,
    /// How to fit the image without augmentation.
    pub method: ResizeMethod,
    /// A random resized crop, for training only; replaces `method` when set.
    pub random_resized_crop: Option<RandomResizedCrop>,
    /// Flip horizontally with probability one half, for training only.
    pub flip: bool,
}

impl ItemTransform {
    /// Squashes to `size x size`, as the chapter does, with no augmentation.
    pub fn squash(size: u32) -> Self {
        ItemTransform { size, method: ResizeMethod::Squash, random_resized_crop: None, flip: false }
    }

    /// Centre-crops to `size x size`, with no augmentation.
    pub fn center_crop(size: u32) -> Self {
        ItemTransform { method: ResizeMethod::CenterCrop, ..Self::squash(size) }
    }

    /// Adds training augmentation: random resized crop and horizontal flip.
    pub fn with_augmentation(self) -> Self {
        ItemTransform { random_resized_crop: Some(RandomResizedCrop::default()), flip: true, ..self }
    }

    /// Tells whether the transform draws random numbers.
    pub fn is_random(&self) -> bool {
        self.random_resized_crop.is_some() || self.flip
    }

    /// The same transform without its random parts, as used for validation.
    pub fn deterministic(&self) -> Self {
        ItemTransform { random_resized_crop: None, flip: false, ..*self }
    }

    /// Turns `src` into `size * size * 3` bytes; `rng` drives augmentation when present.
    ///
    /// Without `rng` (or without augmentation) the output depends on `src` alone.
    pub fn apply(&self, src: &RgbImage, rng: Option<&mut Rng>, path: &Path) -> Result<Vec<u8>> {
        let (crop, flip) = match rng {
            Some(rng) => {
                let crop = match &self.random_resized_crop {
                    Some(rrc) => Crop::random(src.width, src.height, rrc, rng),
                    None => self.base_crop(src),
                };
                (crop, self.flip && rng.chance(0.5))
            }
            None => (self.base_crop(src), false),
        };
        let mut out = resize_crop(src, crop, self.size, path)?;
        if flip {
            flip_horizontal(&mut out, self.size as usize);
        }
        Ok(out)
    }

    /// The crop used without augmentation.
    fn base_crop(&self, src: &RgbImage) -> Crop {
        match self.method {
            ResizeMethod::Squash => Crop::full(src.width, src.height),
            ResizeMethod::CenterCrop => Crop::center_square(src.width, src.height),
        }
    }
}

thread_local! {
    /// One resizer per thread, so its scratch buffers are reused across images.
    static RESIZER: RefCell<Resizer> = RefCell::new(Resizer::new());
}

/// Resizes the `crop` of `src` to `size x size` as PIL's `resize` would resize the file's image: with bicubic
/// (Catmull-Rom) filtering, its default; by nearest neighbour for palette and 1-bit images; premultiplied by
/// alpha for images with alpha, the alpha then dropped as `convert('RGB')` drops it.
pub fn resize_crop(src: &RgbImage, crop: Crop, size: u32, path: &Path) -> Result<Vec<u8>> {
    let is_identity = crop == Crop::full(src.width, src.height) && src.width == size && src.height == size;
    if is_identity {
        return Ok(src.data.clone());
    }
    match &src.kind {
        SourceKind::Opaque => bicubic(&src.data, PixelType::U8x3, src, crop, size, path),
        SourceKind::Indexed => Ok(pil_modes::nearest(&src.data, src.width, src.height, crop, size)),
        SourceKind::Alpha(alpha) => {
            let rgba = pil_modes::premultiply(&src.data, alpha);
            Ok(pil_modes::unpremultiply_to_rgb(&bicubic(&rgba, PixelType::U8x4, src, crop, size, path)?))
        }
    }
}

/// Bicubic resize of the `crop` of `src`'s geometry over `data` (3 or 4 channels, each resized alone).
fn bicubic(data: &[u8], pixel: PixelType, src: &RgbImage, crop: Crop, size: u32, path: &Path) -> Result<Vec<u8>> {
    let resize_err = |source| DataError::Resize { path: path.to_path_buf(), source };
    let view = ImageRef::new(src.width, src.height, data, pixel)
        .map_err(|source| DataError::ResizeBuffer { path: path.to_path_buf(), source })?;
    let mut dst = Image::new(size, size, pixel);
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::CatmullRom))
        .use_alpha(false)
        .crop(crop.left, crop.top, crop.width, crop.height);
    RESIZER.with_borrow_mut(|r| r.resize(&view, &mut dst, &options)).map_err(resize_err)?;
    Ok(dst.into_vec())
}

/// Mirrors an RGB image of `width` pixels per row left to right, in place.
pub fn flip_horizontal(pixels: &mut [u8], width: usize) {
    for row in pixels.chunks_exact_mut(width * 3) {
        for x in 0..width / 2 {
            let (a, b) = (x * 3, (width - 1 - x) * 3);
            for c in 0..3 {
                row.swap(a + c, b + c);
            }
        }
    }
}
