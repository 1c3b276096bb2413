//! A small seeded PRNG (SplitMix64) whose streams are derived from (seed, epoch, index).
//!
//! Hand-rolled rather than taken from `rand` so that shuffles, augmentations and the
//! synthetic data set's bytes stay identical across `rand` releases.

/// One SplitMix64 step: a fast, well-mixed 64-bit hash of `x`.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Mixes several words into one seed, so that every (seed, epoch, index) has its own stream.
pub fn mix(words: &[u64]) -> u64 {
    words.iter().fold(0x243F_6A88_85A3_08D3, |acc, &w| splitmix64(acc ^ splitmix64(w)))
}

/// A deterministic random number generator (the SplitMix64 sequence).
///
/// ```
/// use tiny_data::Rng;
/// let mut a = Rng::from_parts(&[42, 0, 7]);
/// let mut b = Rng::from_parts(&[42, 0, 7]);
/// assert_eq!(a.next_u64(), b.next_u64());
/// ```
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// Creates a generator from one seed.
    pub fn new(seed: u64) -> Self {
        Rng { state: splitmix64(seed) }
    }

    /// Creates a generator whose stream is determined by all of `parts`, such as
    /// `[seed, epoch, index]`.
    pub fn from_parts(parts: &[u64]) -> Self {
        Rng { state: mix(parts) }
    }

    /// Returns the next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Returns a uniform `f32` in `[0, 1)`.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Returns a uniform `f64` in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Returns a uniform `f32` in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next_f32()
    }

    /// Returns a uniform integer in `0..n` (`0` when `n` is `0`).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        // Lemire's multiply-shift; the tiny bias for huge `n` does not matter here.
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Returns `true` with probability `p`.
    pub fn chance(&mut self, p: f32) -> bool {
        self.next_f32() < p
    }

    /// Returns an approximately standard normal sample (sum of four uniforms, rescaled).
    pub fn normal(&mut self) -> f32 {
        let s: f32 = (0..4).map(|_| self.next_f32()).sum();
        (s - 2.0) * (3.0f32).sqrt()
    }

    /// Shuffles `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_stays_in_range_and_differs_by_parts() {
        let mut r = Rng::from_parts(&[1, 2, 3]);
        for _ in 0..1000 {
            let x = r.next_f32();
            assert!((0.0..1.0).contains(&x));
            assert!(r.below(7) < 7);
        }
        assert_ne!(Rng::from_parts(&[1, 2, 3]).next_u64(), Rng::from_parts(&[1, 3, 2]).next_u64());
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut v: Vec<usize> = (0..100).collect();
        Rng::new(5).shuffle(&mut v);
        let mut s = v.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_ne!(v, s);
    }
}
