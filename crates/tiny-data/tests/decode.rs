//! Tests of decoding to RGB, resizing, cropping, flipping, and errors that name bad files.

mod common;

use std::path::Path;

use common::{TempDir, jpeg_bytes, write};
use tiny_data::{
    Crop, DataError, ItemTransform, RandomResizedCrop, Rng, decode_rgb, decode_rgb_bytes, flip_horizontal,
};

fn png_bytes(img: image::DynamicImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[test]
fn greyscale_png_and_jpeg_become_three_equal_channels() {
    let grey = image::GrayImage::from_fn(5, 4, |x, y| image::Luma([(x * 40 + y) as u8]));
    let rgb = decode_rgb_bytes(&png_bytes(grey.into()), Path::new("g.png")).unwrap();
    assert_eq!((rgb.width, rgb.height, rgb.data.len()), (5, 4, 60));
    assert!(rgb.data.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]));
    assert_eq!(rgb.data[3 * 3], 120);

    let grey = image::GrayImage::from_fn(16, 16, |x, _| image::Luma([(x * 16) as u8]));
    let mut jpg = Vec::new();
    grey.write_with_encoder(image::codecs::jpeg::JpegEncoder::new(&mut jpg)).unwrap();
    let rgb = decode_rgb_bytes(&jpg, Path::new("g.jpg")).unwrap();
    assert_eq!(rgb.data.len(), 16 * 16 * 3);
    assert!(rgb.data.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]));
}

#[test]
fn palette_png_becomes_rgb() {
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, 2, 1);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_palette(vec![255u8, 0, 0, 0, 0, 255]);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&[1, 0]).unwrap();
    }
    let rgb = decode_rgb_bytes(&bytes, Path::new("p.png")).unwrap();
    assert_eq!(rgb.data, [0, 0, 255, 255, 0, 0]);
}

#[test]
fn rgba_and_sixteen_bit_pngs_become_rgb() {
    let rgba = image::RgbaImage::from_fn(3, 2, |x, _| image::Rgba([10 * x as u8, 20, 30, 0]));
    let rgb = decode_rgb_bytes(&png_bytes(rgba.into()), Path::new("a.png")).unwrap();
    assert_eq!(rgb.data.len(), 3 * 2 * 3);
    assert_eq!(&rgb.data[3..6], [10, 20, 30], "alpha is dropped as PIL's convert('RGB')");

    let la16 = image::ImageBuffer::<image::LumaA<u16>, _>::from_fn(2, 2, |_, _| image::LumaA([65535, 0]));
    let rgb = decode_rgb_bytes(&png_bytes(la16.into()), Path::new("la16.png")).unwrap();
    assert_eq!(rgb.data, [255; 12]);
}

#[test]
fn squash_and_center_crop_give_size_by_size() {
    // A 300 x 100 image: red, green and blue thirds.
    let src = decode_rgb_bytes(
        &png_bytes(
            image::RgbImage::from_fn(300, 100, |x, _| {
                image::Rgb(match x / 100 {
                    0 => [255, 0, 0],
                    1 => [0, 255, 0],
                    _ => [0, 0, 255],
                })
            })
            .into(),
        ),
        Path::new("thirds.png"),
    )
    .unwrap();
    let p = Path::new("thirds.png");
    let squashed = ItemTransform::squash(30).apply(&src, None, p).unwrap();
    assert_eq!(squashed.len(), 30 * 30 * 3);
    assert_eq!(&squashed[..3], [255, 0, 0], "left edge stays red when squashed");
    assert_eq!(&squashed[29 * 3..30 * 3], [0, 0, 255], "right edge stays blue");
    let cropped = ItemTransform::center_crop(30).apply(&src, None, p).unwrap();
    assert_eq!(cropped.len(), 30 * 30 * 3);
    // The resampling filter may reach a few source pixels past the crop's edge, so look inside.
    for row in cropped.chunks(30 * 3) {
        assert!(row[3 * 3..27 * 3].chunks(3).all(|px| px == [0, 255, 0]), "centre crop keeps the green third");
    }
}

#[test]
fn random_resized_crop_and_flip_are_seeded() {
    let src = decode_rgb_bytes(&jpeg_bytes(64, 48, |x, y| [x as u8 * 4, y as u8 * 5, 7]), Path::new("j.jpg")).unwrap();
    let tfm = ItemTransform::squash(16).with_augmentation();
    assert!(tfm.is_random());
    let p = Path::new("j.jpg");
    let a = tfm.apply(&src, Some(&mut Rng::from_parts(&[1, 2, 3])), p).unwrap();
    let b = tfm.apply(&src, Some(&mut Rng::from_parts(&[1, 2, 3])), p).unwrap();
    assert_eq!(a, b);
    let outs: Vec<_> = (0..8).map(|i| tfm.apply(&src, Some(&mut Rng::from_parts(&[i])), p).unwrap()).collect();
    assert!(outs.windows(2).any(|w| w[0] != w[1]), "different seeds differ");

    let rrc = RandomResizedCrop::default();
    for seed in 0..50 {
        let c = Crop::random(64, 48, &rrc, &mut Rng::new(seed));
        assert!(c.left >= 0.0 && c.top >= 0.0 && c.left + c.width <= 64.0 + 1e-9 && c.top + c.height <= 48.0 + 1e-9);
    }

    let mut px = vec![1, 1, 1, 2, 2, 2, 3, 3, 3];
    flip_horizontal(&mut px, 3);
    assert_eq!(px, [3, 3, 3, 2, 2, 2, 1, 1, 1]);
}

/// Asserts that decoding `path` fails with an error whose message names the file.
fn assert_names_file(path: &Path, check: impl Fn(&DataError) -> bool) {
    let err = decode_rgb(path).unwrap_err();
    assert!(check(&err), "unexpected error kind {err:?}");
    assert_eq!(err.path(), Some(path));
    assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
    assert!(err.is_bad_file());
}

#[test]
fn bad_files_give_errors_naming_the_file() {
    let dir = TempDir::new("bad");
    let good = jpeg_bytes(40, 30, |x, y| [x as u8, y as u8, 9]);

    let truncated = dir.path().join("truncated.JPEG");
    write(&truncated, &good[..good.len() / 2]);
    assert_names_file(&truncated, |e| matches!(e, DataError::TruncatedJpeg { .. }));

    let empty = dir.path().join("empty.JPEG");
    write(&empty, b"");
    assert_names_file(&empty, |e| matches!(e, DataError::EmptyFile { .. }));

    let text = dir.path().join("text.JPEG");
    write(&text, b"this is a text file with an image extension\n");
    assert_names_file(&text, |e| matches!(e, DataError::Decode { .. }));

    let mut corrupt = good.clone();
    for b in corrupt.iter_mut().skip(2).take(200) {
        *b = 0x5A;
    }
    let corrupt_path = dir.path().join("corrupt.jpg");
    write(&corrupt_path, &corrupt);
    assert_names_file(&corrupt_path, |e| matches!(e, DataError::Decode { .. }));

    let missing = dir.path().join("missing.jpg");
    assert_names_file(&missing, |e| matches!(e, DataError::Io { .. }));

    let ok = dir.path().join("ok.jpg");
    write(&ok, &good);
    assert_eq!(decode_rgb(&ok).unwrap().data.len(), 40 * 30 * 3);
}

#[test]
fn cmyk_jpeg_becomes_rgb() {
    let mut bytes = Vec::new();
    let cmyk = [0u8, 255, 255, 0].repeat(16 * 8);
    jpeg_encoder::Encoder::new(&mut bytes, 95).encode(&cmyk, 16, 8, jpeg_encoder::ColorType::Cmyk).unwrap();
    let rgb = decode_rgb_bytes(&bytes, Path::new("cmyk.jpg")).unwrap();
    assert_eq!((rgb.width, rgb.height, rgb.data.len()), (16, 8, 16 * 8 * 3));
}

/// `jpg` with its frame header (SOF0) claiming `width x height` pixels.
fn claiming(mut jpg: Vec<u8>, width: u16, height: u16) -> Vec<u8> {
    let sof = jpg.windows(2).position(|w| w == [0xFF, 0xC0]).expect("a baseline JPEG");
    jpg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    jpg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    jpg
}

#[test]
fn a_header_claiming_too_many_pixels_is_refused_before_decoding() {
    // A few hundred bytes whose header claims 16000x16000 (256M pixels, 768 MB of RGB), on the fast YCbCr path
    // and on the `image` path (greyscale): both refuse it, as PIL does past 178,956,970 pixels.
    let colour = image::RgbImage::from_fn(16, 16, |x, y| image::Rgb([(x * 16) as u8, (y * 16) as u8, 7]));
    let grey = image::GrayImage::from_fn(16, 16, |x, _| image::Luma([(x * 16) as u8]));
    for (name, img) in [("colour.jpg", image::DynamicImage::from(colour)), ("grey.jpg", grey.into())] {
        let mut jpg = Vec::new();
        img.write_with_encoder(image::codecs::jpeg::JpegEncoder::new(&mut jpg)).unwrap();
        let err = decode_rgb_bytes(&claiming(jpg.clone(), 16000, 16000), Path::new(name)).unwrap_err();
        assert!(matches!(err, DataError::TooManyPixels { width: 16000, height: 16000, .. }), "{name}: {err}");
        assert!(err.to_string().contains(name) && err.to_string().contains("16000x16000"), "{err}");
        assert!(err.is_bad_file(), "a bad file, which BadFilePolicy::Skip may skip");
        // The same bytes with their true 16x16 header still decode.
        assert!(decode_rgb_bytes(&claiming(jpg, 16, 16), Path::new(name)).is_ok());
    }
}
