//! What every domain's JSON parser needs in front of simd-json, which trusts two things it
//! should not:
//! - nesting: it builds its value tree recursively with no depth limit, so a 40 KB body of
//!   `[[[[…` overflows a worker's stack and aborts the whole process — and nginx would replay
//!   that POST on the next replica. No body this service accepts nests deeper than two levels.
//! - `\u` escapes: an unpaired UTF-16 surrogate (`"\ud800"`) is decoded into garbage (a NUL
//!   among it) instead of being refused, so the same kind of mistake got a 422 or a 400
//!   depending on which half was missing.
//!
//! One cheap scan refuses both before any parsing.

/// Deepest nesting of arrays and objects a body may have. Far above what any endpoint needs
/// (people: 2), far below what overflows a stack.
pub const MAX_DEPTH: usize = 32;

/// Why a body was refused before parsing; the message names the fault for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TooDeep,
    LoneSurrogate,
    BadEscape,
}

impl Refusal {
    pub fn message(self) -> &'static str {
        match self {
            Self::TooDeep => "body nests too deep",
            Self::LoneSurrogate => "body has an unpaired UTF-16 surrogate escape",
            Self::BadEscape => "body has a malformed \\u escape",
        }
    }
}

/// Checks `body` for what simd-json mishandles: arrays and objects nested deeper than `max`
/// levels (brackets inside strings do not count) and `\u` escapes that are malformed or an
/// unpaired surrogate. Everything else it leaves to the parser that follows.
pub fn screen(body: &[u8], max: usize) -> Result<(), Refusal> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        i += 1;
        if in_string {
            match b {
                b'\\' if body.get(i) == Some(&b'u') => {
                    let unit = hex4(body, i + 1)?;
                    i += 5;
                    match unit {
                        // A high surrogate is valid only as the first half of a pair.
                        0xD800..=0xDBFF => {
                            if body.get(i..i + 2) != Some(b"\\u") {
                                return Err(Refusal::LoneSurrogate);
                            }
                            if !(0xDC00..=0xDFFF).contains(&hex4(body, i + 2)?) {
                                return Err(Refusal::LoneSurrogate);
                            }
                            i += 6;
                        }
                        0xDC00..=0xDFFF => return Err(Refusal::LoneSurrogate),
                        _ => {}
                    }
                }
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(Refusal::TooDeep);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// The four hex digits of a `\u` escape starting at `at`.
fn hex4(body: &[u8], at: usize) -> Result<u16, Refusal> {
    let digits = body.get(at..at + 4).ok_or(Refusal::BadEscape)?;
    digits.iter().try_fold(0u16, |unit, &d| {
        let v = (d as char).to_digit(16).ok_or(Refusal::BadEscape)?;
        Ok(unit << 4 | v as u16)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shallow_documents_pass() {
        assert_eq!(screen(br#"{"stack":["a","b"]}"#, 2), Ok(()));
        assert_eq!(screen(b"1", 0), Ok(()));
        assert_eq!(screen(b"", 0), Ok(()));
    }

    #[test]
    fn one_level_too_deep_fails() {
        assert_eq!(screen(br#"{"stack":[["a"]]}"#, 2), Err(Refusal::TooDeep));
        assert_eq!(screen(&[b'['; 20_000], MAX_DEPTH), Err(Refusal::TooDeep));
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        assert_eq!(screen(br#"{"nome":"[[[[{{{{"}"#, 1), Ok(()));
        assert_eq!(screen(br#"{"nome":"a\"[[[["}"#, 1), Ok(()));
        assert_eq!(screen(br#"{"nome":"a\\"}"#, 1), Ok(()));
        assert_eq!(screen(br#"{"nome":"a\\",[[]]}"#, 2), Err(Refusal::TooDeep));
        // An escaped quote after a \u escape still does not end the string.
        assert_eq!(screen(br#"{"nome":"\u00e9\"[["}"#, 1), Ok(()));
    }

    #[test]
    fn escapes_and_surrogate_pairs_pass() {
        assert_eq!(screen(br#"{"a":"\u00e9\u00E9\n\\u"}"#, 1), Ok(()));
        assert_eq!(screen(br#"{"a":"\ud83d\ude00"}"#, 1), Ok(()));
        assert_eq!(screen(br#"{"a":"\uD800\uDC00x"}"#, 1), Ok(()));
        // Outside strings there are no escapes to check.
        assert_eq!(screen(br#"\ud800"#, 1), Ok(()));
    }

    #[test]
    fn unpaired_surrogates_are_refused() {
        for body in [
            br#"{"a":"\ud800"}"#.as_slice(),
            br#"{"a":"\udc00"}"#,
            br#"{"a":"a\ud83d"}"#,
            br#"{"a":"\ud800x\udc00"}"#,
            br#"{"a":"\ud800\u0041"}"#,
            br#"{"a":"\ud800\ud800"}"#,
            br#"{"a":"\ude00\ud83d"}"#,
        ] {
            assert_eq!(
                screen(body, 1),
                Err(Refusal::LoneSurrogate),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn malformed_escapes_are_refused() {
        assert_eq!(screen(br#"{"a":"\u00g0"}"#, 1), Err(Refusal::BadEscape));
        assert_eq!(screen(br#"{"a":"\u00"#, 1), Err(Refusal::BadEscape));
        assert_eq!(screen(br#"{"a":"\ud800\u12"#, 1), Err(Refusal::BadEscape));
    }
}
