//! fib(n) by fast doubling on `num-bigint`, and the reply frame that carries it in decimal.
//! Pure CPU work with no I/O: the socket code decides whether it runs inline on the event loop
//! (small n) or on the bounded pool (large n).
use std::fmt::Write as _;

use num_bigint::BigUint;

/// fib(n), with fib(0) = 0 and fib(1) = 1.
///
/// Fast doubling walks the bits of n from the top, keeping (F(k), F(k+1)):
/// F(2k) = F(k)·(2·F(k+1) − F(k)) and F(2k+1) = F(k)² + F(k+1)². That is O(log n)
/// big multiplications, so the cost is that of the last few (Karatsuba/Toom-3 in num-bigint).
pub fn fib(n: u64) -> BigUint {
    let mut a = BigUint::ZERO; // F(k)
    let mut b = BigUint::from(1u8); // F(k+1)
    for bit in (0..u64::BITS - n.leading_zeros()).rev() {
        let c = &a * ((&b << 1u8) - &a); // F(2k)
        let d = &a * &a + &b * &b; // F(2k+1)
        if (n >> bit) & 1 == 1 {
            b = &c + &d;
            a = d;
        } else {
            a = c;
            b = d;
        }
    }
    a
}

/// The whole reply frame `{"type":"fib","n":…,"value":"…"}`, written once into one buffer
/// (decimal digits need no JSON escaping).
pub fn reply(n: u64) -> String {
    let value = fib(n).to_string();
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
        for n in [2u64, 63, 64, 65, 127, 128, 1023, 1024, 4097] {
            assert_eq!(fib(n), fib(n - 1) + fib(n - 2), "fib({n})");
        }
    }

    #[test]
    fn fib_of_a_million_has_208_988_digits() {
        let digits = fib(1_000_000).to_string();
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
    fn a_reply_is_the_json_the_spec_names() {
        assert_eq!(reply(10), r#"{"type":"fib","n":10,"value":"55"}"#);
        assert_eq!(reply(0), r#"{"type":"fib","n":0,"value":"0"}"#);
        let v: serde_json::Value = serde_json::from_str(&reply(300)).unwrap();
        assert_eq!(v["value"].as_str().unwrap(), fib(300).to_string());
    }
}
