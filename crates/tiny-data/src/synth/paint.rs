//! Painting one synthetic image: a noisy gradient, clutter, and class-patterned objects.

use std::f32::consts::{PI, TAU};

use crate::{RgbImage, Rng};

/// The kinds of texture that tell classes apart (class `c` uses kind `c % 5`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Stripes,
    Rings,
    Checker,
    Dots,
    Spokes,
}

/// A class's visual signature before per-image jitter.
#[derive(Debug, Clone, Copy)]
struct Signature {
    kind: Kind,
    /// Hue in degrees; classes `c` and `c + 5` are opposite on the colour wheel.
    hue: f32,
    /// Texture orientation in radians.
    angle: f32,
    /// Texture period in pixels of the 160-px image.
    period: f32,
    /// Number of spokes, for the spokes kind.
    spokes: f32,
}

/// Returns the signature of `class` (0..10; larger values wrap).
fn signature(class: usize) -> Signature {
    let kind = [Kind::Stripes, Kind::Rings, Kind::Checker, Kind::Dots, Kind::Spokes][class % 5];
    let variant = (class / 5) % 2;
    Signature {
        kind,
        hue: (class % 10) as f32 * 36.0,
        angle: if variant == 0 { 20f32.to_radians() } else { 110f32.to_radians() },
        period: if variant == 0 { 16.0 } else { 26.0 },
        spokes: if variant == 0 { 8.0 } else { 5.0 },
    }
}

/// Converts HSV (hue in degrees, saturation and value in [0, 1]) to RGB in [0, 255].
fn hsv(h: f32, s: f32, v: f32) -> [f32; 3] {
    let h = h.rem_euclid(360.0) / 60.0;
    let c = v * s;
    let x = c * (1.0 - ((h % 2.0) - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [(r + m) * 255.0, (g + m) * 255.0, (b + m) * 255.0]
}

/// Sharpens a value in [-1, 1] into a soft 0..1 step.
fn step(s: f32) -> f32 {
    (s * 2.5 * 0.5 + 0.5).clamp(0.0, 1.0)
}

/// One textured ellipse to paint.
struct Object {
    cx: f32,
    cy: f32,
    rx: f32,
    ry: f32,
    /// Cosine and sine of the texture angle.
    rot: (f32, f32),
    kind: Kind,
    period: f32,
    spokes: f32,
    light: [f32; 3],
    dark: [f32; 3],
    opacity: f32,
}

impl Object {
    /// Draws an object of `class`'s signature with random placement, size and colour jitter.
    fn new(class: usize, w: f32, h: f32, scale: f32, rng: &mut Rng) -> Self {
        let sig = signature(class);
        let side = w.min(h);
        let r = side * rng.uniform(0.16, 0.36) * scale;
        let aspect = rng.uniform(0.75, 1.33);
        let angle = sig.angle + rng.normal() * 12f32.to_radians();
        let hue = if rng.chance(0.35) { rng.uniform(0.0, 360.0) } else { sig.hue + rng.uniform(-40.0, 40.0) };
        let light = hsv(hue, rng.uniform(0.45, 1.0), rng.uniform(0.6, 1.0));
        let shade = rng.uniform(0.3, 0.7);
        Object {
            cx: w * rng.uniform(0.2, 0.8),
            cy: h * rng.uniform(0.2, 0.8),
            rx: r * aspect.sqrt(),
            ry: r / aspect.sqrt(),
            rot: (angle.cos(), angle.sin()),
            kind: sig.kind,
            period: sig.period * rng.uniform(0.85, 1.15),
            spokes: sig.spokes,
            light,
            dark: light.map(|c| c * shade),
            opacity: rng.uniform(0.75, 1.0),
        }
    }

    /// Returns the texture value in [0, 1] at offset (dx, dy) from the centre.
    fn texture(&self, dx: f32, dy: f32) -> f32 {
        let (c, s) = self.rot;
        let (u, v) = (dx * c + dy * s, -dx * s + dy * c);
        let k = TAU / self.period;
        match self.kind {
            Kind::Stripes => step((u * k).sin()),
            Kind::Rings => step((u.hypot(v) * k).sin()),
            Kind::Checker => step(((u * k).sin() * (v * k).sin()) * 3.0),
            Kind::Dots => {
                let (fu, fv) = (u / self.period, v / self.period);
                let d = (fu - fu.round()).hypot(fv - fv.round());
                (((0.3 - d) * 12.0) + 0.5).clamp(0.0, 1.0)
            }
            Kind::Spokes => step((v.atan2(u) * self.spokes).sin()),
        }
    }

    /// Paints the object onto `buf` (RGB f32, `w` wide), with a soft edge.
    fn paint(&self, buf: &mut [f32], w: usize, h: usize) {
        let reach = self.rx.max(self.ry) + 2.0;
        let x0 = (self.cx - reach).floor().max(0.0) as usize;
        let x1 = ((self.cx + reach).ceil().max(0.0) as usize).min(w);
        let y0 = (self.cy - reach).floor().max(0.0) as usize;
        let y1 = ((self.cy + reach).ceil().max(0.0) as usize).min(h);
        for y in y0..y1 {
            for x in x0..x1 {
                let (dx, dy) = (x as f32 + 0.5 - self.cx, y as f32 + 0.5 - self.cy);
                let e = (dx / self.rx).hypot(dy / self.ry);
                let edge = ((1.0 - e) * self.rx.min(self.ry) / 1.5).clamp(0.0, 1.0);
                if edge <= 0.0 {
                    continue;
                }
                let t = self.texture(dx, dy);
                let a = edge * self.opacity;
                let px = &mut buf[(y * w + x) * 3..][..3];
                for c in 0..3 {
                    let col = self.dark[c] + (self.light[c] - self.dark[c]) * t;
                    px[c] += (col - px[c]) * a;
                }
            }
        }
    }
}

/// Paints a filled circle or rectangle of a random colour: class-independent clutter.
fn clutter(buf: &mut [f32], w: usize, h: usize, rng: &mut Rng) {
    let side = w.min(h) as f32;
    let r = side * rng.uniform(0.05, 0.18);
    let (cx, cy) = (rng.uniform(0.0, w as f32), rng.uniform(0.0, h as f32));
    let col = hsv(rng.uniform(0.0, 360.0), rng.uniform(0.0, 0.8), rng.uniform(0.2, 1.0));
    let alpha = rng.uniform(0.3, 0.8);
    let round = rng.chance(0.5);
    let x0 = (cx - r).max(0.0) as usize;
    let x1 = ((cx + r).max(0.0) as usize).min(w);
    let y0 = (cy - r).max(0.0) as usize;
    let y1 = ((cy + r).max(0.0) as usize).min(h);
    for y in y0..y1 {
        for x in x0..x1 {
            let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
            if round && dx.hypot(dy) > r {
                continue;
            }
            let px = &mut buf[(y * w + x) * 3..][..3];
            for c in 0..3 {
                px[c] += (col[c] - px[c]) * alpha;
            }
        }
    }
}

/// Renders one `width x height` image of class `class` (an index into the Imagenette wnids).
///
/// The same arguments always give the same pixels.
///
/// ```
/// let a = tiny_data::synth::render(3, 213, 160, 7);
/// assert_eq!((a.width, a.height, a.data.len()), (213, 160, 213 * 160 * 3));
/// assert_eq!(a, tiny_data::synth::render(3, 213, 160, 7));
/// ```
pub fn render(class: usize, width: u32, height: u32, seed: u64) -> RgbImage {
    let mut rng = Rng::new(seed);
    let (w, h) = (width as usize, height as usize);
    let (wf, hf) = (width as f32, height as f32);
    let mut buf = vec![0.0f32; w * h * 3];

    // Background: a linear gradient between two random, muted colours.
    let c0 = hsv(rng.uniform(0.0, 360.0), rng.uniform(0.05, 0.6), rng.uniform(0.25, 0.9));
    let c1 = hsv(rng.uniform(0.0, 360.0), rng.uniform(0.05, 0.6), rng.uniform(0.25, 0.9));
    let theta = rng.uniform(0.0, 2.0 * PI);
    let (gx, gy) = (theta.cos() / wf.hypot(hf), theta.sin() / wf.hypot(hf));
    for y in 0..h {
        for x in 0..w {
            let t = ((x as f32 - wf / 2.0) * gx + (y as f32 - hf / 2.0) * gy + 0.5).clamp(0.0, 1.0);
            let px = &mut buf[(y * w + x) * 3..][..3];
            for c in 0..3 {
                px[c] = c0[c] + (c1[c] - c0[c]) * t;
            }
        }
    }
    for _ in 0..3 + rng.below(6) {
        clutter(&mut buf, w, h, &mut rng);
    }
    if rng.chance(0.6) {
        let other = (class + 1 + rng.below(9)) % 10;
        let mut o = Object::new(other, wf, hf, 0.7, &mut rng);
        o.opacity *= rng.uniform(0.4, 0.9);
        o.paint(&mut buf, w, h);
    }
    Object::new(class, wf, hf, 1.0, &mut rng).paint(&mut buf, w, h);

    // Luminance grain, the same on all three channels, keeps files near imagenette2-160's
    // average size (about 7 KB): per-channel noise would double it and slow decoding.
    let sigma = rng.uniform(2.0, 6.0);
    let mut data = Vec::with_capacity(buf.len());
    for px in buf.chunks_exact(3) {
        let grain = rng.normal() * sigma;
        data.extend(px.iter().map(|&v| (v + grain).round().clamp(0.0, 255.0) as u8));
    }
    RgbImage::opaque(width, height, data)
}
