//! fib(n) by fast doubling on `num-bigint` (its large products by `ntt`), its decimal digits by
//! divide and conquer, and the reply frame that carries them. Pure CPU work with no I/O: the
//! socket code decides whether it runs inline on the event loop (small n) or on the bounded
//! pool (large n).
use std::fmt::Write as _;
use std::sync::OnceLock;

use num_bigint::BigUint;

use super::ntt;

/// fib(n), with fib(0) = 0 and fib(1) = 1.
///
/// The pair (F(k), F(k−1)) for k = ⌊n/2⌋ comes from `pair` (two squarings per bit of k), then
/// one multiplication gives F(n):
/// F(2k) = F(k)·(F(k) + 2F(k−1)) and F(2k+1) = (2F(k) + F(k−1))·(2F(k) − F(k−1)) + 2(−1)^k.
/// The last step is the costliest (its operands are the largest), and it is one product here
/// where the plain (F(k), F(k+1)) doubling spends three: fib(1 000 000) takes half the time.
pub fn fib(n: u64) -> BigUint {
    if n < 2 {
        return BigUint::from(n);
    }
    let k = n / 2;
    let (f, g) = pair(k);
    if n.is_multiple_of(2) {
        ntt::mul(&f, &(&f + (&g << 1u8)))
    } else {
        let twice = &f << 1u8;
        plus_two_signed(ntt::mul(&(&twice + &g), &(twice - &g)), k)
    }
}

/// (F(k), F(k−1)) for k ≥ 1, walking the bits of k from the top with j = 1 first:
/// F(2j−1) = F(j)² + F(j−1)², F(2j+1) = 4F(j)² − F(j−1)² + 2(−1)^j, F(2j) = F(2j+1) − F(2j−1).
/// No intermediate goes negative: 4F(j)² − F(j−1)² ≥ 3F(j)² ≥ 3 for j ≥ 1.
fn pair(k: u64) -> (BigUint, BigUint) {
    debug_assert!(k >= 1);
    let mut f = BigUint::from(1u8); // F(j)
    let mut g = BigUint::ZERO; // F(j−1)
    let top = u64::BITS - 1 - k.leading_zeros(); // the leading bit is j = 1
    for bit in (0..top).rev() {
        let j = k >> (bit + 1);
        let f2 = ntt::square(&f);
        let g2 = ntt::square(&g);
        let below = &f2 + &g2; // F(2j−1)
        let above = plus_two_signed((f2 << 2u8) - g2, j); // F(2j+1)
        if (k >> bit) & 1 == 1 {
            g = &above - &below; // F(2j)
            f = above; // j becomes 2j + 1
        } else {
            f = above - &below; // F(2j): j becomes 2j
            g = below;
        }
    }
    (f, g)
}

/// x + 2(−1)^j.
fn plus_two_signed(mut x: BigUint, j: u64) -> BigUint {
    if j.is_multiple_of(2) {
        x += 2u8;
    } else {
        x -= 2u8;
    }
    x
}

/// The decimal digits of x, as `x.to_string()` writes them, in less than half its time for
/// fib(1 000 000) once the levels below are cached (never slower on small numbers).
/// num-bigint's own conversion also divides and conquers, but by plain division, with powers
/// of ten it recomputes on every call, and its own products.
///
/// x = q·10^h + r splits the digits in two at h = 19·2^k digits, the largest such h below the
/// number's length (so q is never the longer part); each part goes on the same way down to 16
/// chunks of 19 digits, which `leaf` writes.
/// 10^h = 5^h·2^h, so the division is a shift and a division by the smaller 5^h, done by
/// Barrett's method: multiplications (`ntt::mul`) by floor(2^(b+l)/5^h), cached for the
/// process's life with 5^h, one `Level` per k: about 220 KB up to fib(1 000 000), computed on
/// first use, so the first fib(1 000 000) of a process takes 20–50 ms longer.
pub fn decimal(x: &BigUint) -> String {
    if x.bits() == 0 {
        return "0".into();
    }
    // bits·log10(2) + 1 digits at most: room for all of them, zero-padded to whole chunks.
    let digits = (x.bits() as f64 * std::f64::consts::LOG10_2) as usize + 1;
    let mut out = vec![b'0'; digits.div_ceil(CHUNK) * CHUNK];
    split_into(x.clone(), &mut out);
    let first = out.iter().position(|&d| d != b'0').unwrap_or(out.len() - 1);
    out.drain(..first);
    String::from_utf8(out).expect("ASCII digits")
}

/// Decimal digits per u64 chunk: 10^19 < 2^64.
const CHUNK: usize = 19;
const TEN_19: u64 = 10_000_000_000_000_000_000;
const FIVE_19: u64 = 19_073_486_328_125;
/// Numbers of up to this many chunks are written by `leaf`, without splitting.
const LEAF_CHUNKS: usize = 16;

/// What splitting at h = 19·2^k digits needs.
struct Level {
    h: usize,
    five: BigUint,
    /// five.bits().
    b: u64,
    /// A quotient q < 10^h has fewer than `l` bits.
    l: u64,
    /// floor(2^(b+l) / five).
    inverse: BigUint,
}

/// Bits that hold any number below 10^digits.
fn bits_below_ten_to(digits: usize) -> u64 {
    (digits as f64 * std::f64::consts::LOG2_10).ceil() as u64 + 1
}

/// The cached level k, computed with the levels below it on first use. 40 levels reach
/// 19·2^40 digits, far past any number that fits in memory.
fn level(k: usize) -> &'static Level {
    static LEVELS: [OnceLock<Level>; 40] = [const { OnceLock::new() }; 40];
    LEVELS[k].get_or_init(|| {
        let h = CHUNK << k;
        let five = match k {
            0 => BigUint::from(FIVE_19),
            _ => {
                let half = &level(k - 1).five;
                ntt::square(half)
            }
        };
        let b = five.bits();
        let l = bits_below_ten_to(h);
        let inverse = (BigUint::from(1u8) << (b + l)) / &five;
        Level {
            h,
            five,
            b,
            l,
            inverse,
        }
    })
}

/// Writes x < 10^out.len() into `out` (a whole number of chunks), zero-padded on the left.
fn split_into(x: BigUint, out: &mut [u8]) {
    let chunks = out.len() / CHUNK;
    if chunks <= LEAF_CHUNKS {
        leaf(&x, out);
        return;
    }
    // The largest 2^k below `chunks`: the high part is never longer than the low one.
    let k = (usize::BITS - 1 - (chunks - 1).leading_zeros()) as usize;
    let level = level(k);
    let (high, low) = out.split_at_mut(out.len() - level.h);
    let (q, r) = divide(&x, level, high.len());
    split_into(q, high);
    split_into(r, low);
}

/// (x / 10^h, x % 10^h) for x < 10^(h + high_digits), high_digits ≤ h.
fn divide(x: &BigUint, level: &Level, high_digits: usize) -> (BigUint, BigUint) {
    let h = level.h;
    let y = x >> h;
    // x mod 2^h.
    let below = x - (&y << h);
    // q = y / 5^h < 10^high_digits < 2^l. Barrett: with y1 = y / 2^b and m = floor(2^(b+l)/5^h),
    // y1·m / 2^l is at most y/5^h and more than y/5^h − 3, so q is at most 3 above it.
    let l = bits_below_ten_to(high_digits).min(level.l);
    let m = &level.inverse >> (level.l - l); // floor(2^(b+l)/5^h), floors nest
    let mut q = ntt::mul(&(&y >> level.b), &m) >> l;
    // r = y − q·5^h < 4·5^h < 2^w: the low w bits of each side are enough.
    let w = level.b + 2;
    let product = low_bits(&ntt::mul(&low_bits(&q, w), &level.five), w);
    let y = low_bits(&y, w);
    let mut r = if y >= product {
        y - product
    } else {
        (y + (BigUint::from(1u8) << w)) - product
    };
    while r >= level.five {
        r -= &level.five;
        q += 1u8;
    }
    (q, (r << h) + below)
}

/// x mod 2^w.
fn low_bits(x: &BigUint, w: u64) -> BigUint {
    if x.bits() <= w {
        x.clone()
    } else {
        x - ((x >> w) << w)
    }
}

/// Writes x < 10^out.len() into `out` chunk by chunk from the right: each pass divides the
/// limbs by 10^19 in place.
fn leaf(x: &BigUint, out: &mut [u8]) {
    let mut limbs = x.to_u64_digits();
    let mut end = out.len();
    while !limbs.is_empty() {
        let mut rem = 0;
        for limb in limbs.iter_mut().rev() {
            (*limb, rem) = div_by_ten_19(rem, *limb);
        }
        if limbs.last() == Some(&0) {
            limbs.pop();
        }
        write_chunk(rem, &mut out[end - CHUNK..end]);
        end -= CHUNK;
    }
}

/// (hi·2^64 + lo) divided by 10^19, for hi < 10^19: Möller and Granlund's division by an
/// invariant normalised divisor ("Improved division by invariant integers", 2011, algorithm 4),
/// a multiplication by its precomputed reciprocal instead of a hardware division.
fn div_by_ten_19(hi: u64, lo: u64) -> (u64, u64) {
    const D: u64 = TEN_19; // its top bit is set: normalised
    const V: u64 = (u128::MAX / D as u128 - (1 << 64)) as u64;
    let p = (V as u128 * hi as u128).wrapping_add(((hi as u128) << 64) | lo as u128);
    let mut q = ((p >> 64) as u64).wrapping_add(1);
    let mut r = lo.wrapping_sub(q.wrapping_mul(D));
    if r > p as u64 {
        q = q.wrapping_sub(1);
        r = r.wrapping_add(D);
    }
    if r >= D {
        q += 1;
        r -= D;
    }
    (q, r)
}

/// "00".."99".
static PAIRS: [[u8; 2]; 100] = {
    let mut t = [[0; 2]; 100];
    let mut i = 0;
    while i < 100 {
        t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    t
};

/// The 19 digits of v < 10^19, zero-padded.
fn write_chunk(v: u64, out: &mut [u8]) {
    let top = (v / 10_000_000_000_000_000) as usize; // < 1000
    let rest = v % 10_000_000_000_000_000;
    out[0] = b'0' + (top / 100) as u8;
    out[1..3].copy_from_slice(&PAIRS[top % 100]);
    for (i, mut part) in [(rest / 100_000_000) as u32, (rest % 100_000_000) as u32]
        .into_iter()
        .enumerate()
    {
        for j in (0..4).rev() {
            let at = 3 + 8 * i + 2 * j;
            out[at..at + 2].copy_from_slice(&PAIRS[(part % 100) as usize]);
            part /= 100;
        }
    }
}

/// The whole reply frame `{"type":"fib","n":…,"value":"…"}`, written once into one buffer
/// (decimal digits need no JSON escaping).
pub fn reply(n: u64) -> String {
    let value = decimal(&fib(n));
    let mut out = String::with_capacity(value.len() + 48);
    // Writing into a String cannot fail.
    let _ = write!(out, r#"{{"type":"fib","n":{n},"value":""#);
    out.push_str(&value);
    out.push_str("\"}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_values_are_the_known_sequence() {
        let known = [
            0u64, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610,
        ];
        for (n, want) in known.iter().enumerate() {
            assert_eq!(fib(n as u64), BigUint::from(*want), "fib({n})");
        }
    }

    #[test]
    fn the_first_thousand_values_match_plain_addition() {
        let (mut a, mut b) = (BigUint::ZERO, BigUint::from(1u8));
        for n in 0..=1000u64 {
            assert_eq!(fib(n), a, "fib({n})");
            let next = &a + &b;
            a = std::mem::replace(&mut b, next);
        }
    }

    #[test]
    fn fib_93_is_the_largest_that_fits_in_a_u64() {
        assert_eq!(fib(93).to_string(), "12200160415121876738");
        assert_eq!(fib(94).to_string(), "19740274219868223167");
    }

    #[test]
    fn fib_1000_matches_its_published_decimal() {
        const FIB_1000: &str =
            "43466557686937456435688527675040625802564660517371780402481729089536555417949051\
            89040387984007925516929592259308032263477520968962323987332247116164299644090653\
            3187938298969649928516003704476137795166849228875";
        assert_eq!(fib(1000).to_string(), FIB_1000);
    }

    #[test]
    fn consecutive_values_add_up_across_the_doubling_steps() {
        // Every parity of n and of n / 2, and bit patterns of all ones and a single one.
        for n in [
            2u64, 3, 63, 64, 65, 127, 128, 1023, 1024, 4097, 65_535, 65_536, 100_000, 100_001,
            100_002, 100_003,
        ] {
            assert_eq!(fib(n), fib(n - 1) + fib(n - 2), "fib({n})");
        }
    }

    #[test]
    fn fib_of_a_million_has_208_988_digits() {
        let value = fib(1_000_000);
        let digits = decimal(&value);
        assert_eq!(digits, value.to_string());
        assert_eq!(digits.len(), 208_988);
        assert!(
            digits.starts_with("19532821287077577316"),
            "{}",
            &digits[..20]
        );
        assert!(
            digits.ends_with("68996526838242546875"),
            "{}",
            &digits[digits.len() - 20..]
        );
    }

    #[test]
    fn powers_of_ten_and_their_neighbours_convert_like_num_bigint() {
        // Every length up to 2 500 digits: chunk, leaf and level boundaries, remainders that
        // are zero (10^k) and that are one short of the divisor (10^k − 1).
        let mut p = BigUint::from(1u8);
        for k in 0..2_500 {
            for x in [&p - 1u8, p.clone(), &p + 1u8] {
                assert_eq!(decimal(&x), x.to_string(), "10^{k} and neighbours");
            }
            p *= 10u8;
        }
    }

    #[test]
    fn a_chunk_is_written_with_its_zeros() {
        for v in [0, 1, 9, 10, 99, 100, 12_345_678_901_234_567, TEN_19 - 1] {
            let mut out = [b'x'; CHUNK];
            write_chunk(v, &mut out);
            assert_eq!(std::str::from_utf8(&out).unwrap(), format!("{v:019}"));
        }
    }

    #[test]
    fn division_by_ten_19_matches_u128_division() {
        for (hi, lo) in [
            (0, 0),
            (0, u64::MAX),
            (TEN_19 - 1, u64::MAX),
            (TEN_19 - 1, 0),
            (1, 7),
        ] {
            let x = ((hi as u128) << 64) | lo as u128;
            let want = ((x / TEN_19 as u128) as u64, (x % TEN_19 as u128) as u64);
            assert_eq!(div_by_ten_19(hi, lo), want, "{hi} {lo}");
        }
    }

    #[test]
    fn a_reply_is_the_json_the_spec_names() {
        assert_eq!(reply(10), r#"{"type":"fib","n":10,"value":"55"}"#);
        assert_eq!(reply(0), r#"{"type":"fib","n":0,"value":"0"}"#);
        let v: serde_json::Value = serde_json::from_str(&reply(300)).unwrap();
        assert_eq!(v["value"].as_str().unwrap(), fib(300).to_string());
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::json::proptests::config;
    use proptest::prelude::*;

    /// Random numbers of every size up to ~40 000 bits (600 chunks: five levels of splits),
    /// with runs of zero and all-one limbs, which put zeros and nines in the digits.
    fn number() -> impl Strategy<Value = BigUint> {
        let limb = prop_oneof![any::<u32>(), Just(0), Just(u32::MAX)];
        prop::collection::vec(limb, 0..1_300).prop_map(BigUint::new)
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn decimal_is_num_bigints_own_decimal(x in number()) {
            prop_assert_eq!(decimal(&x), x.to_string());
        }

        #[test]
        fn division_by_ten_19_is_u128_division(hi in 0..TEN_19, lo in any::<u64>()) {
            let x = ((hi as u128) << 64) | lo as u128;
            let want = ((x / TEN_19 as u128) as u64, (x % TEN_19 as u128) as u64);
            prop_assert_eq!(div_by_ten_19(hi, lo), want);
        }
    }
}
