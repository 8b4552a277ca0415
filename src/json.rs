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
//!
//! Also the small pieces of input and output every domain shares: a body read as one object
//! with typed field access ([`object`], [`opt_str`], [`opt_id`]), query pairs, ids written as
//! digits, SPEC's timestamp form, and a serialised JSON answer ([`respond`]).

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

/// `value` serialised as a JSON answer with `status` (answers that are plain structs; the hot
/// paths of people and accounts write their bytes themselves).
pub fn respond(
    status: ntex::http::StatusCode,
    value: &impl serde::Serialize,
) -> ntex::web::HttpResponse {
    let body = serde_json::to_vec(value).expect("BUG: answers are plain structs that serialise");
    ntex::web::HttpResponse::build(status)
        .content_type(crate::error::JSON)
        .body(body)
}

/// SPEC's timestamp form: RFC 3339, UTC, always six fraction digits (chrono's default prints
/// three, six or none depending on the value).
pub fn timestamp(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// [`timestamp`] as a serde `serialize_with`.
pub fn rfc3339_micros<S: serde::Serializer>(
    t: &chrono::DateTime<chrono::Utc>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&timestamp(t))
}

/// A request body read as one JSON object, for the domains that take a few named fields
/// (users, chat). `Err` carries the client-facing reason the body is not one (400).
pub fn object(body: &mut [u8]) -> Result<simd_json::borrowed::Object<'_>, &'static str> {
    screen(body, MAX_DEPTH).map_err(Refusal::message)?;
    match simd_json::to_borrowed_value(body) {
        Ok(simd_json::BorrowedValue::Object(fields)) => Ok(*fields),
        Ok(_) => Err("body is not a JSON object"),
        Err(_) => Err("body is not JSON"),
    }
}

/// A field of the wrong JSON type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrongType;

/// Field `key` as a string; `None` when absent or `null`.
pub fn opt_str<'v>(
    fields: &'v simd_json::borrowed::Object<'_>,
    key: &str,
) -> Result<Option<&'v str>, WrongType> {
    use simd_json::{BorrowedValue, StaticNode};
    match fields.get(key) {
        None | Some(BorrowedValue::Static(StaticNode::Null)) => Ok(None),
        Some(BorrowedValue::String(s)) => Ok(Some(s)),
        Some(_) => Err(WrongType),
    }
}

/// Field `key` as a database id: a whole number, or a string of digits (JavaScript clients
/// often send ids as strings); `None` when absent or `null`. Range is the caller's to check.
pub fn opt_id(
    fields: &simd_json::borrowed::Object<'_>,
    key: &str,
) -> Result<Option<i64>, WrongType> {
    use simd_json::{BorrowedValue, StaticNode};
    match fields.get(key) {
        None | Some(BorrowedValue::Static(StaticNode::Null)) => Ok(None),
        Some(BorrowedValue::Static(StaticNode::I64(n))) => Ok(Some(*n)),
        Some(BorrowedValue::Static(StaticNode::U64(n))) => {
            i64::try_from(*n).map(Some).map_err(|_| WrongType)
        }
        Some(BorrowedValue::String(s)) => digits(s).map(Some).ok_or(WrongType),
        Some(_) => Err(WrongType),
    }
}

/// Field `key` as an array of strings; `None` when absent or `null`.
pub fn opt_str_array<'v>(
    fields: &'v simd_json::borrowed::Object<'_>,
    key: &str,
) -> Result<Option<Vec<&'v str>>, WrongType> {
    use simd_json::{BorrowedValue, StaticNode};
    match fields.get(key) {
        None | Some(BorrowedValue::Static(StaticNode::Null)) => Ok(None),
        Some(BorrowedValue::Array(items)) => items
            .iter()
            .map(|item| match item {
                BorrowedValue::String(s) => Ok(&**s),
                _ => Err(WrongType),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(WrongType),
    }
}

/// A query string's `key=value` pairs, percent-decoded (`%31` is `1`, `+` a space) by the same
/// form decoder the people and accounts routes use; `None` when it does not decode.
pub fn query_pairs(query: &str) -> Option<Vec<(String, String)>> {
    ntex::web::types::Query::<Vec<(String, String)>>::from_query(query)
        .ok()
        .map(ntex::web::types::Query::into_inner)
}

/// ASCII digits only (no sign, no spaces), up to `i64::MAX`: how ids arrive in paths, queries
/// and string-typed fields.
pub fn digits(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_arrive_as_numbers_or_strings_of_digits() {
        let mut body = br#"{"a":7,"b":"42","c":"4x","d":null,"e":1.5,"f":-3}"#.to_vec();
        let fields = object(&mut body).unwrap();
        assert_eq!(opt_id(&fields, "a"), Ok(Some(7)));
        assert_eq!(opt_id(&fields, "b"), Ok(Some(42)));
        assert_eq!(opt_id(&fields, "c"), Err(WrongType));
        assert_eq!(opt_id(&fields, "d"), Ok(None));
        assert_eq!(opt_id(&fields, "missing"), Ok(None));
        assert_eq!(opt_id(&fields, "e"), Err(WrongType));
        assert_eq!(opt_id(&fields, "f"), Ok(Some(-3)));
    }

    #[test]
    fn a_body_that_is_not_one_json_object_is_refused_with_a_reason() {
        assert_eq!(
            object(&mut b"[1]".to_vec()).err(),
            Some("body is not a JSON object")
        );
        assert_eq!(object(&mut b"{".to_vec()).err(), Some("body is not JSON"));
        assert!(object(&mut br#"{"a":"\ud800"}"#.to_vec()).is_err());
    }

    #[test]
    fn timestamps_always_carry_six_fraction_digits() {
        let t = chrono::DateTime::parse_from_rfc3339("2025-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(timestamp(&t), "2025-01-02T03:04:05.000000Z");
    }

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
