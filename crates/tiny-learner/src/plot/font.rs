//! The plots' font: DejaVu Sans embedded in the binary and rasterised by ab_glyph, so that no system font is needed.

use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, PxScale, ScaleFont, point};

use super::DrawResult;

/// The embedded font, parsed once per process; `None` if it does not parse (it always does: a test checks).
fn get() -> Option<&'static FontRef<'static>> {
    static FONT: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(dejavu::sans::regular()).ok()).as_ref()
}

/// An error unless the embedded font parses; every picture checks this before it draws text.
pub(crate) fn check() -> DrawResult<()> {
    get().map(|_| ()).ok_or_else(|| "the embedded DejaVu Sans font does not parse".to_string())
}

/// Text rasterised into coverage values: `width x height` of them, row-major, with the baseline at row `baseline`.
pub(crate) struct Mask {
    pub width: usize,
    pub height: usize,
    pub baseline: usize,
    /// The height of a capital letter above the baseline, for centring text on its capitals.
    pub cap: usize,
    pub alpha: Vec<f32>,
}

/// The width in pixels of `text` at `px` (the height from the font's lowest descender to its highest ascender).
pub(crate) fn text_width(text: &str, px: f32) -> u32 {
    let Some(font) = get() else { return 0 };
    let f = font.as_scaled(PxScale::from(px));
    let mut caret = 0.0f32;
    let mut prev = None;
    for c in text.chars() {
        let id = f.glyph_id(c);
        if let Some(p) = prev {
            caret += f.kern(p, id);
        }
        caret += f.h_advance(id);
        prev = Some(id);
    }
    caret.ceil() as u32
}

/// `text` rasterised at `px`, each glyph at its advance with its side bearings and kerning.
pub(crate) fn rasterize(text: &str, px: f32) -> Mask {
    let empty = Mask { width: 0, height: 0, baseline: 0, cap: 0, alpha: Vec::new() };
    let Some(font) = get() else { return empty };
    let f = font.as_scaled(PxScale::from(px));
    let baseline = f.ascent().ceil() as usize;
    let height = baseline + (-f.descent()).ceil() as usize + 1;
    let cap = f.outline_glyph(f.scaled_glyph('H')).map_or(px * 0.7, |g| -g.px_bounds().min.y).round().max(0.0) as usize;
    // One pixel of room on each side for bearings that reach past the advance.
    let width = text_width(text, px) as usize + 2;
    let mut alpha = vec![0.0f32; width * height];
    let mut caret = 1.0f32;
    let mut prev = None;
    for c in text.chars() {
        let id = f.glyph_id(c);
        if let Some(p) = prev {
            caret += f.kern(p, id);
        }
        let glyph = id.with_scale_and_position(PxScale::from(px), point(caret, baseline as f32));
        if let Some(outline) = f.outline_glyph(glyph) {
            let b = outline.px_bounds();
            outline.draw(|x, y, cov| {
                let (x, y) = (b.min.x as i64 + x as i64, b.min.y as i64 + y as i64);
                if x >= 0 && y >= 0 && (x as usize) < width && (y as usize) < height {
                    let a = &mut alpha[y as usize * width + x as usize];
                    *a = (*a + cov).min(1.0);
                }
            });
        }
        caret += f.h_advance(id);
        prev = Some(id);
    }
    Mask { width, height, baseline, cap, alpha }
}

/// `text` cut to at most `max_width` pixels at `px`, ending in an ellipsis when something was cut.
pub(crate) fn ellipsize(text: &str, px: f32, max_width: u32) -> String {
    if text_width(text, px) <= max_width {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    for n in (0..chars.len()).rev() {
        let cut: String = chars[..n].iter().collect::<String>().trim_end().to_string() + "…";
        if text_width(&cut, px) <= max_width {
            return cut;
        }
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_font_parses_and_measures() {
        assert!(check().is_ok());
        assert!(text_width("golf ball", 14.0) > 40 && text_width("golf ball", 14.0) < 90);
        assert_eq!(text_width("", 14.0), 0);
        let m = rasterize("Hg", 20.0);
        assert_eq!(m.alpha.len(), m.width * m.height);
        assert!(m.cap > 10 && m.cap < m.baseline && m.baseline < m.height);
        assert!(m.alpha.iter().any(|&a| a > 0.9), "some pixels are fully inked");
        assert_eq!(ellipsize("n03445777", 14.0, 1000), "n03445777");
        assert!(ellipsize("English springer", 14.0, 60).ends_with('…'));
    }
}
