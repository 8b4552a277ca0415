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

/// Which input was wrong and why, in words fit for the client (users and chat; the answer is
/// `{"error":"<field> <message>","field":"<field>"}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid {
    pub field: &'static str,
    pub message: &'static str,
}

/// Free text a person types (a name, a group's name): 1–`max` characters, not blank, none of
/// them control characters (they break logs and clients alike).
pub fn text(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.chars().count())
        && !s.trim().is_empty()
        && !s.chars().any(char::is_control)
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

/// Property tests of the shared input helpers, and the strategies every domain's parser tests
/// draw from: arbitrary bytes, JSON values of every type, objects with a parser's field names,
/// query strings with hostile escapes. `ProptestConfig::with_cases(256)` keeps `cargo test --lib`
/// fast; no regression files are written into the tree.
#[cfg(test)]
pub(crate) mod proptests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// The configuration every parser property runs with: 256 cases, or `PROPTEST_CASES` for
    /// a longer hunt.
    pub(crate) fn config() -> ProptestConfig {
        let cases = std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok());
        ProptestConfig {
            cases: cases.unwrap_or(256),
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    /// Any bytes: invalid UTF-8, NULs, half a JSON document, nothing at all.
    pub(crate) fn bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..256)
    }

    /// Strings a hostile client sends: any Unicode, control characters and NUL, JSON's own
    /// metacharacters, SQL's, very long ones, email-ish and number-ish ones.
    pub(crate) fn string() -> impl Strategy<Value = String> {
        prop_oneof![
            ".{0,12}",
            "[a-zA-Z0-9 ._@-]{0,40}",
            "[\\x00-\\x1f\"\\\\/%_'; ]{0,6}",
            "[0-9+-]{0,22}",
            "[a-z0-9]{1,8}@[a-z0-9]{1,8}\\.[a-z]{2,3}",
            "\\PC{90,300}",
            Just(String::new()),
            Just("' OR 1=1 --".to_owned()),
            Just("\u{0}".to_owned()),
        ]
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof!["[a-zA-Z_]{1,10}", ".{0,4}"]
    }

    /// A JSON value of any type, nested a few levels.
    pub(crate) fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-3i64..=3).prop_map(Value::from),
            any::<f64>().prop_filter_map("finite", |f| {
                serde_json::Number::from_f64(f).map(Value::Number)
            }),
            string().prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(key(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A JSON object with each of `fields` absent, null, of any type, or drawn from its own
    /// strategy of good values (given with the name), plus maybe an unknown field.
    pub(crate) fn object_of(
        fields: Vec<(&'static str, BoxedStrategy<Value>)>,
    ) -> BoxedStrategy<Value> {
        let each: Vec<_> = fields
            .into_iter()
            .map(|(name, good)| {
                prop_oneof![
                    1 => Just(None),
                    1 => Just(Some(Value::Null)),
                    2 => value().prop_map(Some),
                    4 => good.prop_map(Some),
                ]
                .prop_map(move |v| v.map(|v| (name, v)))
            })
            .collect();
        (each, prop::option::of((key(), value())))
            .prop_map(|(fields, extra)| {
                let mut map = serde_json::Map::new();
                if let Some((k, v)) = extra {
                    map.insert(k, v);
                }
                for (name, v) in fields.into_iter().flatten() {
                    map.insert(name.to_owned(), v);
                }
                Value::Object(map)
            })
            .boxed()
    }

    /// `doc` as JSON bytes, sometimes damaged: a byte changed or inserted (invalid UTF-8
    /// among them), or the tail cut off.
    pub(crate) fn damaged(doc: impl Strategy<Value = Value>) -> impl Strategy<Value = Vec<u8>> {
        (
            doc,
            0u8..4,
            any::<prop::sample::Index>(),
            prop_oneof![
                Just(0xffu8),
                Just(0xc3),
                Just(0x80),
                Just(b'"'),
                Just(b'\\'),
                any::<u8>()
            ],
        )
            .prop_map(|(doc, how, at, byte)| {
                let mut raw = serde_json::to_vec(&doc).expect("a Value serialises");
                let i = at.index(raw.len() + 1);
                match how {
                    0 if i < raw.len() => raw[i] = byte,
                    1 => raw.insert(i, byte),
                    2 => raw.truncate(i),
                    _ => {}
                }
                raw
            })
    }

    /// A query string: pairs of hostile keys and values, percent-escaped or raw, with stray
    /// `%`, `&`, `=`, `+` and escapes of invalid UTF-8 (`%FF`, `%C3%28`).
    pub(crate) fn query() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            "[a-zA-Z_]{0,10}",
            "[0-9-]{0,21}",
            "[%&=+#;]{1,3}",
            "(%[0-9A-Fa-f]{2}){1,4}",
            Just("%FF".to_owned()),
            Just("%C3%28".to_owned()),
            Just("%".to_owned()),
            Just("%0".to_owned()),
            ".{0,6}",
        ];
        prop::collection::vec(piece, 0..8).prop_map(|p| p.concat())
    }

    /// `s` percent-encoded for a query string (every byte that is not unreserved).
    pub(crate) fn encode(s: &str) -> String {
        let mut out = String::with_capacity(s.len() * 3);
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    /// The deepest nesting of arrays and objects in `v`.
    fn depth(v: &Value) -> usize {
        match v {
            Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
            Value::Object(fields) => 1 + fields.values().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn screen_and_object_never_panic_on_any_bytes(mut raw in bytes(), max in 0usize..40) {
            let _ = screen(&raw, max);
            let _ = object(&mut raw);
        }

        #[test]
        fn screen_and_object_never_panic_on_damaged_json(mut raw in damaged(value())) {
            let _ = screen(&raw, MAX_DEPTH);
            if let Ok(fields) = object(&mut raw) {
                let _ = (opt_str(&fields, "a"), opt_id(&fields, "a"), opt_str_array(&fields, "a"));
            }
        }

        /// Whatever serde_json writes (escapes of control characters included) passes the screen
        /// when shallow enough, and is refused as too deep otherwise.
        #[test]
        fn serialised_json_passes_the_screen_exactly_when_shallow(v in value(), max in 0usize..5) {
            let raw = serde_json::to_vec(&v).unwrap();
            let want = if depth(&v) > max { Err(Refusal::TooDeep) } else { Ok(()) };
            prop_assert_eq!(screen(&raw, max), want);
        }

        /// `object` agrees with serde_json on what is an object, and reads its fields back.
        #[test]
        fn object_reads_back_what_serde_json_wrote(v in value()) {
            let mut raw = serde_json::to_vec(&v).unwrap();
            let read = object(&mut raw);
            match (&v, read) {
                (Value::Object(want), Ok(got)) => {
                    prop_assert_eq!(want.len(), got.len());
                    for (k, value) in want {
                        match value {
                            Value::String(s) => prop_assert_eq!(opt_str(&got, k), Ok(Some(s.as_str()))),
                            Value::Null => prop_assert_eq!(opt_str(&got, k), Ok(None)),
                            Value::Number(n) => match n.as_i64() {
                                Some(n) => prop_assert_eq!(opt_id(&got, k), Ok(Some(n))),
                                None => prop_assert_eq!(opt_id(&got, k), Err(WrongType)),
                            },
                            _ => prop_assert_eq!(opt_str(&got, k), Err(WrongType)),
                        }
                    }
                }
                (Value::Object(_), Err(e)) => prop_assert!(false, "an object refused: {e}"),
                (_, Ok(_)) => prop_assert!(false, "{v} read as an object"),
                (_, Err(e)) => prop_assert_eq!(e, "body is not a JSON object"),
            };
        }

        /// A lone `\uXXXX` escape is refused exactly when it is half a surrogate pair; a whole
        /// pair, or any other unit, decodes to its character.
        #[test]
        fn a_u_escape_is_refused_exactly_when_it_is_half_a_surrogate(unit in any::<u16>(), upper in any::<bool>()) {
            let hex = if upper { format!("{unit:04X}") } else { format!("{unit:04x}") };
            let mut raw = format!(r#"{{"a":"x\u{hex}y"}}"#).into_bytes();
            if (0xD800..=0xDFFF).contains(&unit) {
                prop_assert_eq!(screen(&raw, 1), Err(Refusal::LoneSurrogate));
                prop_assert!(object(&mut raw).is_err());
            } else {
                let want = format!("x{}y", char::from_u32(u32::from(unit)).unwrap());
                let fields = object(&mut raw).unwrap();
                prop_assert_eq!(opt_str(&fields, "a"), Ok(Some(want.as_str())));
            }
        }

        #[test]
        fn a_surrogate_pair_escape_decodes_to_its_character(c in (0x10000u32..=0x10FFFF).prop_map(|u| char::from_u32(u).unwrap())) {
            let mut units = [0u16; 2];
            c.encode_utf16(&mut units);
            let mut raw = format!(r#"{{"a":"\u{:04x}\u{:04x}"}}"#, units[0], units[1]).into_bytes();
            let fields = object(&mut raw).unwrap();
            let want = c.to_string();
            prop_assert_eq!(opt_str(&fields, "a"), Ok(Some(want.as_str())));
        }

        #[test]
        fn query_pairs_and_digits_never_panic(q in query(), s in string()) {
            let _ = query_pairs(&q);
            let _ = digits(&s);
        }

        /// Pairs percent-encoded by a client come back as they were sent.
        #[test]
        fn query_pairs_round_trip(pairs in prop::collection::vec(("[a-zA-Z_]{1,8}|.{1,6}", ".{0,12}"), 0..5)) {
            let q = pairs
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect::<Vec<_>>()
                .join("&");
            prop_assert_eq!(query_pairs(&q), Some(pairs));
        }

        #[test]
        fn digits_read_every_non_negative_i64_and_nothing_signed(n in 0..=i64::MAX) {
            prop_assert_eq!(digits(&n.to_string()), Some(n));
            prop_assert_eq!(digits(&format!("0{n}")), Some(n));
            prop_assert_eq!(digits(&format!("+{n}")), None);
            prop_assert_eq!(digits(&format!("-{n}")), None);
            prop_assert_eq!(digits(&format!(" {n}")), None);
            prop_assert_eq!(digits(&format!("{n}0000000000000000000")), None);
        }
    }
}
