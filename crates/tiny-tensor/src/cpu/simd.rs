//! Runtime multiversioning: a kernel compiled a second time for AVX-512, chosen on each call.

/// Defines a function whose body is compiled twice, for AVX-512 and for the baseline x86-64 (SSE2), and
/// which runs the AVX-512 copy when the CPU has it.
///
/// The crate is built for the baseline, so plain loops vectorise four floats at a time at best; in the
/// AVX-512 copy the same loops use sixteen-float vectors and masked selects. The body is an
/// `#[inline(always)]` function called from a `#[target_feature]` one, which is what makes LLVM compile it
/// with the wider instructions (a closure passed in would stay a baseline function of its own). Generic
/// parameters may take one bound each, such as an op's `F: Fn(f32) -> f32`, whose small closure then inlines
/// into whichever copy runs.
macro_rules! vectorized {
    (
        $(#[$meta:meta])* $vis:vis fn $name:ident $(<$($g:ident: $bound:path),*>)?
        ($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block
    ) => {
        $(#[$meta])*
        $vis fn $name $(<$($g: $bound),*>)? ($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body $(<$($g: $bound),*>)? ($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx512f") {
                #[target_feature(enable = "avx512f")]
                fn avx512 $(<$($g: $bound),*>)? ($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                // SAFETY: the CPU has AVX-512F.
                return unsafe { avx512($($arg),*) };
            }
            body($($arg),*)
        }
    };
}
pub(crate) use vectorized;
