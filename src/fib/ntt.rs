//! Products of large numbers through a number-theoretic transform: 4–6× num-bigint's own
//! product at the sizes fib(1 000 000) multiplies (0.57 against 2.5 ms for two 347 000-bit
//! numbers on the reference machine), where num-bigint stops at Toom-3 and no
//! permissively licensed crate multiplies faster (README, "Fibonacci").
//!
//! A number is cut into 22-bit digits, the coefficients of a polynomial; `tfhe-ntt` transforms
//! both polynomials modulo one 62-bit prime, multiplies them point by point and transforms back.
//! The transform is negacyclic (modulo X^N + 1), so N is chosen above the product's length and
//! nothing wraps; and every coefficient of the product, a sum of at most `MAX_SHORT_DIGITS`
//! products of two digits, stays below the prime, so what comes back is the exact convolution,
//! which carrying turns into the product. Smaller or larger operands go to num-bigint.
use std::sync::OnceLock;

use num_bigint::BigUint;
use tfhe_ntt::prime64::Plan;

/// The largest prime below 2^62 that is 1 modulo 2^22: it has the 2N-th roots of unity a
/// negacyclic transform of length N needs for every N up to 2^21.
const PRIME: u64 = match tfhe_ntt::prime::largest_prime_in_arithmetic_progression64(
    1 << 22,
    1,
    1 << 61,
    (1 << 62) - 1,
) {
    Some(p) => p,
    None => panic!("no such prime"),
};
const MAX_LOG_LEN: usize = 21;
const DIGIT_BITS: u32 = 22;
const DIGIT_MAX: u64 = (1 << DIGIT_BITS) - 1;
/// A product's coefficient is at most (shorter operand's digits) · DIGIT_MAX², and must stay
/// below PRIME: about 262 000 digits, 5.7 million bits.
const MAX_SHORT_DIGITS: u64 = (PRIME - 1) / (DIGIT_MAX * DIGIT_MAX);
const _: () = assert!((PRIME - 1).is_multiple_of(2 << MAX_LOG_LEN) && MAX_SHORT_DIGITS >= 250_000);

/// Below these sizes (bits of the shorter operand) num-bigint's Karatsuba and Toom-3 are
/// faster: the crossovers measured on the reference machine.
const MUL_FROM_BITS: u64 = 30_000;
const SQUARE_FROM_BITS: u64 = 20_000;

/// a · b.
pub fn mul(a: &BigUint, b: &BigUint) -> BigUint {
    match transform_len(a, b) {
        Some(len) if a.bits().min(b.bits()) >= MUL_FROM_BITS => convolve(len, a, Some(b)),
        _ => a * b,
    }
}

/// a², with one forward transform instead of two.
pub fn square(a: &BigUint) -> BigUint {
    match transform_len(a, a) {
        Some(len) if a.bits() >= SQUARE_FROM_BITS => convolve(len, a, None),
        _ => a * a,
    }
}

/// a · b (a² without b) by a transform of length `len`.
fn convolve(len: usize, a: &BigUint, b: Option<&BigUint>) -> BigUint {
    let plan = plan(len);
    let mut x = digits(a, len);
    plan.fwd(&mut x);
    let y = match b {
        Some(b) => {
            let mut y = digits(b, len);
            plan.fwd(&mut y);
            y
        }
        None => x.clone(),
    };
    plan.mul_assign_normalize(&mut x, &y);
    plan.inv(&mut x);
    carry(&x)
}

/// The transform length for a · b, if the transform can take it: at least the product's
/// digit count (so the negacyclic wrap never happens), and coefficients below PRIME.
fn transform_len(a: &BigUint, b: &BigUint) -> Option<usize> {
    let (da, db) = (digit_count(a), digit_count(b));
    if da.min(db) > MAX_SHORT_DIGITS {
        return None;
    }
    let len = usize::try_from(da + db).ok()?.next_power_of_two().max(16);
    (len.trailing_zeros() as usize <= MAX_LOG_LEN).then_some(len)
}

fn digit_count(x: &BigUint) -> u64 {
    x.bits().div_ceil(u64::from(DIGIT_BITS))
}

/// The plan for length `len` (a power of two from 16 to 2^21), made on first use and kept:
/// 32 bytes per coefficient, 1 MiB for the largest fib(1 000 000) needs.
fn plan(len: usize) -> &'static Plan {
    static PLANS: [OnceLock<Plan>; MAX_LOG_LEN + 1] = [const { OnceLock::new() }; MAX_LOG_LEN + 1];
    PLANS[len.trailing_zeros() as usize].get_or_init(|| {
        Plan::try_new(len, PRIME).expect("PRIME has 2N-th roots of unity for every N ≤ 2^21")
    })
}

/// x's 22-bit digits, least significant first, zero-padded to `len`.
fn digits(x: &BigUint, len: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(len + 3);
    let mut acc = 0u128;
    let mut bits = 0;
    for limb in x.iter_u64_digits() {
        acc |= u128::from(limb) << bits;
        bits += 64;
        while bits >= DIGIT_BITS {
            out.push(acc as u64 & DIGIT_MAX);
            acc >>= DIGIT_BITS;
            bits -= DIGIT_BITS;
        }
    }
    out.push(acc as u64);
    // The top limb's leading zero bits may have made a few zero digits past `len`.
    out.resize(len, 0);
    out
}

/// Σ c_i · 2^(22·i) for coefficients c_i < 2^62, as a number: each step adds a coefficient at
/// its bit offset into a 128-bit carry and emits the full 32-bit words below that offset.
fn carry(coefficients: &[u64]) -> BigUint {
    let mut words: Vec<u32> = Vec::with_capacity(coefficients.len() * DIGIT_BITS as usize / 32 + 4);
    let mut acc = 0u128;
    let mut bits = 0;
    for &c in coefficients {
        // With bits < 32 here and c < 2^62, acc stays below 2^96.
        acc += u128::from(c) << bits;
        bits += DIGIT_BITS;
        while bits >= 32 {
            words.push(acc as u32);
            acc >>= 32;
            bits -= 32;
        }
    }
    while acc > 0 {
        words.push(acc as u32);
        acc >>= 32;
    }
    BigUint::new(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A number of `bits` bits whose 32-bit words follow a fixed pseudo-random sequence, with
    /// runs of all-one words (the largest digits, so the largest coefficients).
    fn number(bits: u64, seed: u32) -> BigUint {
        let mut state = seed.wrapping_mul(2_654_435_761) | 1;
        let words = (0..bits.div_ceil(32))
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                if i % 7 < 3 {
                    u32::MAX
                } else {
                    state
                }
            })
            .collect();
        let mut x = BigUint::new(words) >> (bits.div_ceil(32) * 32 - bits);
        x.set_bit(bits - 1, true);
        x
    }

    #[test]
    fn the_prime_is_the_known_one() {
        assert_eq!(PRIME, 4_611_686_018_326_724_609);
    }

    #[test]
    fn products_match_num_bigint_across_the_thresholds_and_lengths() {
        // Both sides of each threshold, operands filling their transform exactly and by one
        // digit more, unbalanced pairs, and fib(1 000 000)'s own size.
        for (a_bits, b_bits) in [
            (29_999, 29_999),
            (30_000, 30_000),
            (45_056, 45_056),
            (45_057, 45_056),
            (30_000, 200_000),
            (347_000, 347_000),
            (361_000, 180_000),
        ] {
            let (a, b) = (number(a_bits, 1), number(b_bits, 2));
            assert!(mul(&a, &b) == &a * &b, "{a_bits} × {b_bits} bits");
        }
    }

    #[test]
    fn squares_match_num_bigint() {
        for bits in [19_999, 20_000, 22_528, 22_529, 100_000, 347_000] {
            let a = number(bits, 3);
            assert!(square(&a) == &a * &a, "{bits} bits");
        }
    }

    #[test]
    fn all_ones_give_the_largest_coefficients_and_still_carry_right() {
        // (2^k − 1)² has every digit at DIGIT_MAX: each coefficient of the middle is the
        // largest its length allows.
        let a = (BigUint::from(1u8) << 400_000u32) - 1u8;
        assert!(square(&a) == &a * &a);
        assert!(mul(&a, &(&a >> 1u8)) == &a * (&a >> 1u8));
    }

    #[test]
    fn zero_and_small_operands_fall_back() {
        let big = number(100_000, 4);
        assert_eq!(mul(&big, &BigUint::ZERO), BigUint::ZERO);
        assert_eq!(mul(&BigUint::from(3u8), &big), &big * 3u8);
        assert_eq!(square(&BigUint::from(12u8)), BigUint::from(144u8));
    }
}
