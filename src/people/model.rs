//! A person as the contract defines it, parsed once at the edge. `NewPerson::parse` turns a
//! request body into a value that cannot be invalid; `Person` adds its id and carries the JSON
//! it was serialised to once (cached in Redis, published, stored in PostgreSQL, served as is).
//! The 400-vs-422 rule lives here: a body that is not JSON or a field of the wrong JSON type is
//! `Malformed` (400); a null/missing required field, a length out of range or an impossible
//! date is `Unprocessable` (422). Type errors win when a body has both.
use chrono::NaiveDate;
use simd_json::borrowed::{Object, Value};
use simd_json::StaticNode;
use uuid::Uuid;

/// SPEC §2 limits, in Unicode characters.
const APELIDO_MAX: usize = 32;
const NOME_MAX: usize = 100;
const STACK_ITEM_MAX: usize = 32;

/// Why a field was refused; `field` is echoed in the error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid {
    pub kind: InvalidKind,
    pub field: &'static str,
    pub reason: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidKind {
    /// Not JSON, or a field of the wrong JSON type → 400.
    Malformed,
    /// Well-typed but not acceptable (null, missing, length, date) → 422.
    Unprocessable,
}

impl Invalid {
    const fn malformed(field: &'static str, reason: &'static str) -> Self {
        Self {
            kind: InvalidKind::Malformed,
            field,
            reason,
        }
    }

    const fn unprocessable(field: &'static str, reason: &'static str) -> Self {
        Self {
            kind: InvalidKind::Unprocessable,
            field,
            reason,
        }
    }
}

/// A unique nickname: 1–32 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Apelido(String);

/// A name: 1–100 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nome(String);

/// A real calendar date written `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nascimento(NaiveDate);

/// One technology of a stack: 1–32 characters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Tecnologia(String);

/// A person before it has an id, as a POST body describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPerson {
    pub apelido: Apelido,
    pub nome: Nome,
    pub nascimento: Nascimento,
    pub stack: Option<Vec<Tecnologia>>,
}

/// A person with its id and its JSON, serialised exactly once.
#[derive(Debug, Clone)]
pub struct Person {
    pub id: Uuid,
    pub person: NewPerson,
    pub json: Vec<u8>,
}

/// Text a string field must not hold: PostgreSQL's `text` cannot store NUL, so accepting one
/// would be a 201 for a person the inserter can never write.
fn has_nul(s: &str) -> bool {
    s.as_bytes().contains(&0)
}

fn length_within(s: &str, max: usize) -> bool {
    // Bytes bound characters from above: most values skip the count.
    !s.is_empty() && (s.len() <= max || s.chars().count() <= max)
}

fn bounded(
    s: &str,
    field: &'static str,
    max: usize,
    too_long: &'static str,
) -> Result<String, Invalid> {
    if s.is_empty() {
        return Err(Invalid::unprocessable(field, "must not be empty"));
    }
    if !length_within(s, max) {
        return Err(Invalid::unprocessable(field, too_long));
    }
    if has_nul(s) {
        return Err(Invalid::unprocessable(field, "must not contain NUL"));
    }
    Ok(s.to_owned())
}

impl Apelido {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        bounded(s, "apelido", APELIDO_MAX, "longer than 32 characters").map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Nome {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        bounded(s, "nome", NOME_MAX, "longer than 100 characters").map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Tecnologia {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        bounded(
            s,
            "stack",
            STACK_ITEM_MAX,
            "has an element longer than 32 characters",
        )
        .map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Nascimento {
    /// Exactly `YYYY-MM-DD` (chrono's `%Y-%m-%d` would also take `2000-1-1` and `+2000-…`).
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        const BAD: Invalid = Invalid::unprocessable("nascimento", "not a date YYYY-MM-DD");
        let b = s.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(BAD);
        }
        if !(digits(0..4) && digits(5..7) && digits(8..10)) {
            return Err(BAD);
        }
        let num =
            |r: std::ops::Range<usize>| b[r].iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
        let year = i32::try_from(num(0..4)).map_err(|_| BAD)?;
        NaiveDate::from_ymd_opt(year, num(5..7), num(8..10))
            .map(Self)
            .ok_or(Invalid::unprocessable(
                "nascimento",
                "not a real calendar date",
            ))
    }

    pub fn date(&self) -> NaiveDate {
        self.0
    }
}

impl std::fmt::Display for Nascimento {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d"))
    }
}

/// A required string field: missing or null → 422, another type → 400.
fn required_str<'v>(obj: &'v Object<'_>, field: &'static str) -> Result<&'v str, Invalid> {
    match obj.get(field) {
        None | Some(Value::Static(StaticNode::Null)) => {
            Err(Invalid::unprocessable(field, "is required"))
        }
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Invalid::malformed(field, "must be a string")),
    }
}

fn parse_stack(obj: &Object<'_>) -> Result<Option<Vec<Tecnologia>>, Invalid> {
    let items = match obj.get("stack") {
        None | Some(Value::Static(StaticNode::Null)) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(Invalid::malformed(
                "stack",
                "must be an array of strings or null",
            ))
        }
    };
    // Every element's type is checked before any length, so `[<40 chars>, 1]` is a 400.
    let strings = items
        .iter()
        .map(|v| match v {
            Value::String(s) => Ok(&**s),
            _ => Err(Invalid::malformed("stack", "must be an array of strings")),
        })
        .collect::<Result<Vec<&str>, _>>()?;
    strings
        .into_iter()
        .map(Tecnologia::parse)
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Picks the error to report: any type error (400) before any value error (422).
fn first_error(results: [Option<Invalid>; 4]) -> Option<Invalid> {
    let mut errors = results.into_iter().flatten();
    let first = errors.clone().next()?;
    Some(
        errors
            .find(|e| e.kind == InvalidKind::Malformed)
            .unwrap_or(first),
    )
}

impl NewPerson {
    /// Parses a POST body. simd-json rewrites `body` in place (it unescapes into it).
    pub fn parse(body: &mut [u8]) -> Result<Self, Invalid> {
        crate::json::screen(body, crate::json::MAX_DEPTH)
            .map_err(|refusal| Invalid::malformed("body", refusal.message()))?;
        let value = simd_json::borrowed::to_value(body)
            .map_err(|_| Invalid::malformed("body", "body is not valid JSON"))?;
        let Value::Object(obj) = value else {
            return Err(Invalid::malformed("body", "body must be a JSON object"));
        };
        Self::from_object(&obj)
    }

    fn from_object(obj: &Object<'_>) -> Result<Self, Invalid> {
        let apelido = required_str(obj, "apelido").and_then(Apelido::parse);
        let nome = required_str(obj, "nome").and_then(Nome::parse);
        let nascimento = required_str(obj, "nascimento").and_then(Nascimento::parse);
        let stack = parse_stack(obj);
        match (apelido, nome, nascimento, stack) {
            (Ok(apelido), Ok(nome), Ok(nascimento), Ok(stack)) => Ok(Self {
                apelido,
                nome,
                nascimento,
                stack,
            }),
            (a, n, d, s) => Err(first_error([a.err(), n.err(), d.err(), s.err()])
                .expect("BUG: one of the four results is an error")),
        }
    }

    /// Gives the person an id and serialises it, once.
    pub fn with_id(self, id: Uuid) -> Person {
        let json = serde_json::to_vec(&PersonJson {
            id: &id,
            apelido: self.apelido.as_str(),
            nome: self.nome.as_str(),
            nascimento: &self.nascimento.to_string(),
            stack: self.stack.as_deref(),
        })
        .expect("BUG: strings and a uuid always serialise");
        Person {
            id,
            person: self,
            json,
        }
    }

    /// The lowercase text search runs over: apelido, nome and every stack element, separated by
    /// newlines so a term cannot match across two fields by accident.
    pub fn search_text(&self) -> String {
        let mut text = String::with_capacity(64);
        text.push_str(&self.apelido.0.to_lowercase());
        text.push('\n');
        text.push_str(&self.nome.0.to_lowercase());
        for t in self.stack.iter().flatten() {
            text.push('\n');
            text.push_str(&t.0.to_lowercase());
        }
        text
    }
}

impl Person {
    /// Decodes a queue message (the person's own JSON, with its id) back into a person; the
    /// inserter uses it, so a message that would not have passed the API is poison.
    pub fn from_message(data: &[u8]) -> Result<Self, Invalid> {
        crate::json::screen(data, crate::json::MAX_DEPTH)
            .map_err(|refusal| Invalid::malformed("body", refusal.message()))?;
        let mut buf = data.to_vec();
        let value = simd_json::borrowed::to_value(&mut buf)
            .map_err(|_| Invalid::malformed("body", "message is not valid JSON"))?;
        let Value::Object(obj) = value else {
            return Err(Invalid::malformed("body", "message must be a JSON object"));
        };
        let id = required_str(&obj, "id")?;
        let id = Uuid::try_parse(id).map_err(|_| Invalid::unprocessable("id", "not a uuid"))?;
        let person = NewPerson::from_object(&obj)?;
        Ok(Self {
            id,
            person,
            json: data.to_vec(),
        })
    }
}

/// A person as every answer shows it (the one serialiser; also its OpenAPI schema, `Pessoa`).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = Pessoa)]
pub struct PersonJson<'a> {
    #[schema(value_type = String, example = "8b0f3c6e-2f4a-4c1e-9d3a-5f6b7c8d9e0a")]
    id: &'a Uuid,
    #[schema(example = "josé")]
    apelido: &'a str,
    #[schema(example = "José Roberto")]
    nome: &'a str,
    #[schema(format = Date, example = "2000-10-01")]
    nascimento: &'a str,
    #[schema(value_type = Option<Vec<String>>, example = json!(["C#", "Node"]))]
    stack: Option<&'a [Tecnologia]>,
}

/// `POST /pessoas` body, for the OpenAPI document only: [`NewPerson::parse`] reads the body
/// by hand (so a wrong JSON type is 400 and a bad value 422).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct NewPersonBody {
    /// Unique across replicas.
    #[schema(min_length = 1, max_length = 32, example = "josé")]
    apelido: String,
    #[schema(min_length = 1, max_length = 100, example = "José Roberto")]
    nome: String,
    /// A real calendar date.
    #[schema(format = Date, example = "2000-10-01")]
    nascimento: String,
    /// Each element 1–32 characters.
    #[schema(example = json!(["C#", "Node"]))]
    stack: Option<Vec<String>>,
}

/// A search term: non-empty, turned into a `LIKE` pattern over the lowercase search text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchTerm(String);

impl SearchTerm {
    /// `MissingTerm` for a missing or empty `t`; `Malformed` for one holding NUL, which
    /// PostgreSQL refuses in text (it would answer an error, not "no match"). Both are 400s.
    pub fn parse(t: Option<&str>) -> Result<Self, super::PeopleError> {
        let t = t
            .filter(|t| !t.is_empty())
            .ok_or(super::PeopleError::MissingTerm)?;
        if t.contains('\0') {
            return Err(super::PeopleError::Malformed(Invalid::malformed(
                "t",
                "must not contain NUL",
            )));
        }
        let mut pattern = String::with_capacity(t.len() + 2);
        pattern.push('%');
        for c in t.to_lowercase().chars() {
            if matches!(c, '%' | '_' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('%');
        Ok(Self(pattern))
    }

    pub fn like_pattern(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use InvalidKind::{Malformed, Unprocessable};

    fn parse(body: &str) -> Result<NewPerson, Invalid> {
        NewPerson::parse(&mut body.as_bytes().to_vec())
    }

    const VALID: &str = r#"{"apelido":"josé","nome":"José Roberto","nascimento":"2000-10-01","stack":["C#","Node","Oracle"]}"#;

    #[test]
    fn the_spec_example_is_a_valid_person() {
        let p = parse(VALID).unwrap();
        assert_eq!(p.apelido.as_str(), "josé");
        assert_eq!(p.nome.as_str(), "José Roberto");
        assert_eq!(p.nascimento.to_string(), "2000-10-01");
        assert_eq!(p.stack.unwrap().len(), 3);
    }

    #[test]
    fn a_deeply_nested_body_is_malformed_not_a_stack_overflow() {
        let body = format!(
            r#"{{"apelido":"a","nome":"n","nascimento":"2000-01-01","stack":{}"#,
            "[".repeat(20_000)
        );
        assert_eq!(parse(&body).unwrap_err().kind, Malformed);
        let message = format!(r#"{{"id":{}"#, "{\"a\":".repeat(20_000));
        assert_eq!(
            Person::from_message(message.as_bytes()).unwrap_err().kind,
            Malformed
        );
    }

    #[test]
    fn a_null_or_missing_stack_is_no_stack() {
        let p = parse(
            r#"{"apelido":"ana","nome":"Ana Barbosa","nascimento":"1985-01-01","stack":null}"#,
        )
        .unwrap();
        assert_eq!(p.stack, None);
        let p =
            parse(r#"{"apelido":"ana","nome":"Ana Barbosa","nascimento":"1985-01-01"}"#).unwrap();
        assert_eq!(p.stack, None);
    }

    #[test]
    fn lengths_are_unicode_characters_not_bytes() {
        let apelido = "é".repeat(32); // 64 bytes, 32 characters
        let nome = "ç".repeat(100);
        let item = "ü".repeat(32);
        let body = format!(
            r#"{{"apelido":"{apelido}","nome":"{nome}","nascimento":"2000-01-01","stack":["{item}"]}}"#
        );
        assert!(parse(&body).is_ok());
    }

    #[test]
    fn a_person_serialises_to_the_contract_shape() {
        let id = Uuid::new_v4();
        let p = parse(VALID).unwrap().with_id(id);
        let v: serde_json::Value = serde_json::from_slice(&p.json).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id": id.to_string(), "apelido": "josé", "nome": "José Roberto",
                "nascimento": "2000-10-01", "stack": ["C#", "Node", "Oracle"]})
        );
        let again = Person::from_message(&p.json).unwrap();
        assert_eq!(again.id, id);
        assert_eq!(again.person, p.person);
    }

    #[test]
    fn invalid_bodies_get_the_contract_status_and_field() {
        let long = |n: usize| "a".repeat(n);
        let cases: Vec<(String, InvalidKind, &str)> = vec![
            // Not JSON, not an object → 400.
            ("not json".into(), Malformed, "body"),
            ("".into(), Malformed, "body"),
            ("[1,2]".into(), Malformed, "body"),
            (r#"{"apelido":"a","#.into(), Malformed, "body"),
            // An unpaired surrogate escape is no string at all, whichever half is missing.
            (
                r#"{"apelido":"\ud800","nome":"a","nascimento":"2000-01-01"}"#.into(),
                Malformed,
                "body",
            ),
            (
                r#"{"apelido":"\udc00","nome":"a","nascimento":"2000-01-01"}"#.into(),
                Malformed,
                "body",
            ),
            // Wrong types → 400 (SPEC examples included).
            (
                r#"{"apelido":"a","nome":1,"nascimento":"2000-01-01"}"#.into(),
                Malformed,
                "nome",
            ),
            (
                r#"{"apelido":1,"nome":"a","nascimento":"2000-01-01"}"#.into(),
                Malformed,
                "apelido",
            ),
            (
                r#"{"apelido":"a","nome":"a","nascimento":10}"#.into(),
                Malformed,
                "nascimento",
            ),
            (
                r#"{"apelido":"a","nome":"a","nascimento":"2000-01-01","stack":[1,"PHP"]}"#.into(),
                Malformed,
                "stack",
            ),
            (
                r#"{"apelido":"a","nome":"a","nascimento":"2000-01-01","stack":"x"}"#.into(),
                Malformed,
                "stack",
            ),
            (
                r#"{"apelido":"a","nome":"a","nascimento":"2000-01-01","stack":1}"#.into(),
                Malformed,
                "stack",
            ),
            (
                r#"{"apelido":"a","nome":"a","nascimento":"2000-01-01","stack":{"a":"b"}}"#.into(),
                Malformed,
                "stack",
            ),
            (
                r#"{"apelido":["a"],"nome":"a","nascimento":"2000-01-01"}"#.into(),
                Malformed,
                "apelido",
            ),
            // A type error wins over a value error elsewhere in the body.
            (
                r#"{"apelido":null,"nome":1,"nascimento":"2000-01-01"}"#.into(),
                Malformed,
                "nome",
            ),
            // Null or missing required fields → 422.
            (
                r#"{"apelido":null,"nome":"a","nascimento":"2000-01-01"}"#.into(),
                Unprocessable,
                "apelido",
            ),
            (
                r#"{"nome":"a","nascimento":"2000-01-01"}"#.into(),
                Unprocessable,
                "apelido",
            ),
            (
                r#"{"apelido":"a","nome":null,"nascimento":"2000-01-01"}"#.into(),
                Unprocessable,
                "nome",
            ),
            (
                r#"{"apelido":"a","nascimento":"2000-01-01"}"#.into(),
                Unprocessable,
                "nome",
            ),
            (
                r#"{"apelido":"a","nome":"a","nascimento":null}"#.into(),
                Unprocessable,
                "nascimento",
            ),
            (
                r#"{"apelido":"a","nome":"a"}"#.into(),
                Unprocessable,
                "nascimento",
            ),
            ("{}".into(), Unprocessable, "apelido"),
            // Lengths → 422.
            (
                format!(
                    r#"{{"apelido":"{}","nome":"a","nascimento":"2000-01-01"}}"#,
                    long(33)
                ),
                Unprocessable,
                "apelido",
            ),
            (
                format!(
                    r#"{{"apelido":"{}","nome":"a","nascimento":"2000-01-01"}}"#,
                    long(35)
                ),
                Unprocessable,
                "apelido",
            ),
            (
                r#"{"apelido":"","nome":"a","nascimento":"2000-01-01"}"#.into(),
                Unprocessable,
                "apelido",
            ),
            (
                format!(
                    r#"{{"apelido":"a","nome":"{}","nascimento":"2000-01-01"}}"#,
                    long(101)
                ),
                Unprocessable,
                "nome",
            ),
            (
                format!(
                    r#"{{"apelido":"a","nome":"{}","nascimento":"2000-01-01"}}"#,
                    "é".repeat(101)
                ),
                Unprocessable,
                "nome",
            ),
            (
                r#"{"apelido":"a","nome":"","nascimento":"2000-01-01"}"#.into(),
                Unprocessable,
                "nome",
            ),
            (
                format!(
                    r#"{{"apelido":"a","nome":"a","nascimento":"2000-01-01","stack":["{}"]}}"#,
                    "1".repeat(40)
                ),
                Unprocessable,
                "stack",
            ),
            (
                r#"{"apelido":"a","nome":"a","nascimento":"2000-01-01","stack":[""]}"#.into(),
                Unprocessable,
                "stack",
            ),
            // Impossible or misshapen dates → 422 (SPEC examples included).
            (
                r#"{"apelido":"a","nome":"a","nascimento":"2000-13-01"}"#.into(),
                Unprocessable,
                "nascimento",
            ),
            (
                r#"{"apelido":"a","nome":"a","nascimento":"2001-02-29"}"#.into(),
                Unprocessable,
                "nascimento",
            ),
            (
                r#"{"apelido":"a","nome":"a","nascimento":"2000-04-31"}"#.into(),
                Unprocessable,
                "nascimento",
            ),
            (
                r#"{"apelido":"a","nome":"a","nascimento":"2000-00-10"}"#.into(),
                Unprocessable,
                "nascimento",
            ),
            (
                r#"{"apelido":"a","nome":"a","nascimento":"12-12-2000"}"#.into(),
                Unprocessable,
                "nascimento",
            ),
            (
                r#"{"apelido":"a","nome":"a","nascimento":"?!?!?"}"#.into(),
                Unprocessable,
                "nascimento",
            ),
            (
                r#"{"apelido":"a","nome":"a","nascimento":"2000-1-01"}"#.into(),
                Unprocessable,
                "nascimento",
            ),
            (
                r#"{"apelido":"a","nome":"a","nascimento":"2000-01-01T00:00:00Z"}"#.into(),
                Unprocessable,
                "nascimento",
            ),
            (
                r#"{"apelido":"a","nome":"a","nascimento":""}"#.into(),
                Unprocessable,
                "nascimento",
            ),
            // NUL cannot be stored by PostgreSQL.
            (
                r#"{"apelido":"a\u0000b","nome":"a","nascimento":"2000-01-01"}"#.into(),
                Unprocessable,
                "apelido",
            ),
        ];
        for (body, kind, field) in cases {
            let err = parse(&body).expect_err(&body);
            assert_eq!((err.kind, err.field), (kind, field), "{body}");
        }
    }

    #[test]
    fn a_leap_day_in_a_leap_year_is_a_real_date() {
        assert!(Nascimento::parse("2000-02-29").is_ok());
        assert!(Nascimento::parse("2024-02-29").is_ok());
        assert!(Nascimento::parse("1900-02-29").is_err());
    }

    #[test]
    fn an_apelido_of_32_characters_is_accepted_and_33_rejected() {
        assert!(Apelido::parse(&"x".repeat(32)).is_ok());
        assert!(Apelido::parse(&"x".repeat(33)).is_err());
    }

    #[test]
    fn a_nome_of_100_characters_is_accepted_and_101_rejected() {
        assert!(Nome::parse(&"x".repeat(100)).is_ok());
        assert!(Nome::parse(&"x".repeat(101)).is_err());
    }

    #[test]
    fn unknown_fields_are_ignored() {
        assert!(parse(r#"{"apelido":"a","nome":"a","nascimento":"2000-01-01","extra":1}"#).is_ok());
    }

    #[test]
    fn a_message_without_a_valid_id_is_poison() {
        for msg in [
            "garbage",
            r#"{"apelido":"a","nome":"a","nascimento":"2000-01-01"}"#,
            r#"{"id":"nope","apelido":"a","nome":"a","nascimento":"2000-01-01"}"#,
        ] {
            assert!(Person::from_message(msg.as_bytes()).is_err(), "{msg}");
        }
    }

    #[test]
    fn the_search_text_is_lowercase_fields_on_separate_lines() {
        let p = parse(VALID).unwrap();
        assert_eq!(p.search_text(), "josé\njosé roberto\nc#\nnode\noracle");
    }

    #[test]
    fn a_missing_empty_or_nul_term_is_no_search() {
        use crate::people::PeopleError;
        assert!(matches!(
            SearchTerm::parse(None),
            Err(PeopleError::MissingTerm)
        ));
        assert!(matches!(
            SearchTerm::parse(Some("")),
            Err(PeopleError::MissingTerm)
        ));
        assert!(matches!(
            SearchTerm::parse(Some("a\0b")),
            Err(PeopleError::Malformed(Invalid { field: "t", .. }))
        ));
    }

    #[test]
    fn a_search_term_is_lowercased_and_its_like_wildcards_escaped() {
        let t = SearchTerm::parse(Some("Node_50%\\")).unwrap();
        assert_eq!(t.like_pattern(), "%node\\_50\\%\\\\%");
    }
}
