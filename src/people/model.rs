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

/// A search term: non-empty, turned into a `LIKE` pattern over the lowercase search text, and
/// the probe the trigram index looks it up by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchTerm {
    pattern: String,
    probe: Option<String>,
}

/// Characters of the term the trigram index is asked for (three trigrams). A 40-character term
/// has ~40 trigrams, and a GIN lookup reads every one's posting list (4 ms a search on 44 000
/// people); a few of them find the same handful of candidates, which the full pattern then
/// filters (0.2 ms).
pub const PROBE_CHARS: usize = 5;

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
        let lower = t.to_lowercase();
        let mut pattern = String::with_capacity(lower.len() + 2);
        pattern.push('%');
        for c in lower.chars() {
            if matches!(c, '%' | '_' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('%');
        Ok(Self {
            pattern,
            probe: probe(&lower),
        })
    }

    /// The whole term as a `LIKE` pattern (`%term%`, metacharacters escaped).
    pub fn like_pattern(&self) -> &str {
        &self.pattern
    }

    /// A `LIKE` pattern of part of the term that has trigrams, for the index; `None` when the
    /// term has no three ASCII letters or digits in a row (pg_trgm extracts nothing from it, and
    /// the index could only be read whole).
    pub fn probe(&self) -> Option<&str> {
        self.probe.as_deref()
    }
}

/// The middle [`PROBE_CHARS`] of the term's longest run of ASCII letters and digits, as
/// `%run%`. ASCII only: whether pg_trgm takes `é` for a letter depends on the database's
/// locale, and a probe without a trigram would read the whole index.
fn probe(lower: &str) -> Option<String> {
    let run = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .max_by_key(|run| run.len())?;
    if run.len() < 3 {
        return None;
    }
    let start = run.len().saturating_sub(PROBE_CHARS) / 2;
    let middle = &run[start..(start + PROBE_CHARS).min(run.len())];
    Some(format!("%{middle}%"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use InvalidKind::{Malformed, Unprocessable};

    fn parse(body: &str) -> Result<NewPerson, Invalid> {
        NewPerson::parse(&mut body.as_bytes().to_vec())
    }

    #[test]
    fn the_probe_is_the_middle_of_the_longest_ascii_run() {
        let probe = |t: &str| {
            SearchTerm::parse(Some(t))
                .unwrap()
                .probe()
                .map(str::to_owned)
        };
        assert_eq!(probe("Python").as_deref(), Some("%pytho%"));
        assert_eq!(probe("abc").as_deref(), Some("%abc%"));
        assert_eq!(
            probe("O biwajh hZuGquwhjkQZuKUHo").as_deref(),
            Some("%whjkq%")
        );
        assert_eq!(probe("C# e Go"), None);
        assert_eq!(probe("ab"), None);
        assert_eq!(probe("ãéíõú"), None);
        assert_eq!(probe("50%_off").as_deref(), Some("%off%"));
    }

    #[test]
    fn every_row_the_pattern_matches_contains_the_probe() {
        for t in [
            "Javascript Developer",
            "a_b%c\\defgh",
            "x y zzzz",
            "Ünïcödé1234",
        ] {
            let term = SearchTerm::parse(Some(t)).unwrap();
            if let Some(probe) = term.probe() {
                let probe = probe.trim_matches('%');
                assert!(t.to_lowercase().contains(probe), "{t}: {probe}");
            }
        }
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

/// Hostile input for the people parsers: any bytes, objects with the contract's field names and
/// values of every JSON type, and valid people generated within SPEC §2's rules.
#[cfg(test)]
mod proptests {
    use super::*;
    use crate::error::ApiError;
    use crate::json::proptests::{bytes, config, damaged, object_of, string, value};
    use crate::people::PeopleError;
    use ntex::http::StatusCode;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn status(invalid: Invalid) -> StatusCode {
        ApiError::from(PeopleError::from(invalid)).status()
    }

    /// 1–`max` characters of any Unicode but NUL.
    fn text(max: usize) -> impl Strategy<Value = String> {
        prop_oneof![
            prop::collection::vec(
                any::<char>().prop_map(|c| if c == '\0' { '0' } else { c }),
                1..=max
            )
            .prop_map(|cs| cs.into_iter().collect::<String>()),
            "[a-zA-Z0-9 #.+-]{1,8}",
        ]
    }

    fn date() -> impl Strategy<Value = NaiveDate> {
        (0i32..=9999, 1u32..=12, 1u32..=31)
            .prop_filter_map("a real date", |(y, m, d)| NaiveDate::from_ymd_opt(y, m, d))
    }

    fn good(field: &str) -> BoxedStrategy<Value> {
        match field {
            "apelido" => text(APELIDO_MAX + 2).prop_map(Value::from).boxed(),
            "nome" => text(NOME_MAX + 2).prop_map(Value::from).boxed(),
            "nascimento" => prop_oneof![
                date().prop_map(|d| Value::from(d.format("%Y-%m-%d").to_string())),
                "[0-9]{4}-[0-9]{2}-[0-9]{2}".prop_map(Value::from),
            ]
            .boxed(),
            _ => prop::collection::vec(
                prop_oneof![4 => text(STACK_ITEM_MAX + 2).prop_map(Value::from), 1 => value()],
                0..4,
            )
            .prop_map(Value::Array)
            .boxed(),
        }
    }

    fn person_like() -> BoxedStrategy<Value> {
        object_of(
            ["apelido", "nome", "nascimento", "stack"]
                .into_iter()
                .map(|f| (f, good(f)))
                .collect(),
        )
    }

    /// What the contract says of one string field: a type error, a value error, or fine.
    fn judge_str(v: Option<&Value>, max: usize) -> Option<InvalidKind> {
        match v {
            None | Some(Value::Null) => Some(InvalidKind::Unprocessable),
            Some(Value::String(s)) => {
                let n = s.chars().count();
                (n == 0 || n > max || s.contains('\0')).then_some(InvalidKind::Unprocessable)
            }
            Some(_) => Some(InvalidKind::Malformed),
        }
    }

    /// The contract's verdict on a body, written independently of the parser: any type error
    /// is a 400, else any value error a 422, else a person.
    fn verdict(body: &serde_json::Map<String, Value>) -> Option<InvalidKind> {
        let date = match body.get("nascimento") {
            Some(Value::String(s)) => (NaiveDate::parse_from_str(s, "%Y-%m-%d").is_err()
                || s.len() != 10
                || !s.bytes().enumerate().all(|(i, b)| {
                    if i == 4 || i == 7 {
                        b == b'-'
                    } else {
                        b.is_ascii_digit()
                    }
                }))
            .then_some(InvalidKind::Unprocessable),
            other => judge_str(other, usize::MAX),
        };
        let stack = match body.get("stack") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
                .iter()
                .any(|i| judge_str(Some(i), STACK_ITEM_MAX).is_some())
                .then_some(InvalidKind::Unprocessable),
            Some(_) => Some(InvalidKind::Malformed),
        };
        let all = [
            judge_str(body.get("apelido"), APELIDO_MAX),
            judge_str(body.get("nome"), NOME_MAX),
            date,
            stack,
        ];
        all.into_iter()
            .flatten()
            .min_by_key(|k| *k != InvalidKind::Malformed)
    }

    fn valid_person() -> impl Strategy<Value = (String, String, NaiveDate, Option<Vec<String>>)> {
        (
            text(APELIDO_MAX),
            text(NOME_MAX),
            date(),
            prop::option::of(prop::collection::vec(text(STACK_ITEM_MAX), 0..5)),
        )
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn any_bytes_are_a_person_or_a_400_or_422(mut raw in bytes()) {
            if let Err(e) = NewPerson::parse(&mut raw) {
                prop_assert!(matches!(status(e).as_u16(), 400 | 422), "{e:?}");
            }
        }

        #[test]
        fn invalid_utf8_or_a_damaged_body_is_a_400_or_422(mut raw in damaged(person_like())) {
            let utf8 = std::str::from_utf8(&raw).is_ok();
            match NewPerson::parse(&mut raw) {
                Ok(_) => prop_assert!(utf8, "a person from invalid UTF-8"),
                Err(e) => prop_assert!(matches!(status(e).as_u16(), 400 | 422), "{e:?}"),
            }
        }

        /// Fields of every JSON type get the contract's answer: a type error anywhere is 400,
        /// else a missing, null, too long, empty or impossible value is 422.
        #[test]
        fn a_body_of_any_field_types_gets_the_contract_status(body in person_like()) {
            let Value::Object(fields) = &body else { unreachable!() };
            let want = verdict(fields);
            let got = NewPerson::parse(&mut serde_json::to_vec(&body).unwrap());
            match (want, got) {
                (None, Ok(_)) => {}
                (Some(kind), Err(e)) => {
                    prop_assert_eq!(e.kind, kind, "{} → {:?}", body, e);
                    let code = status(e).as_u16();
                    prop_assert_eq!(code, if kind == InvalidKind::Malformed { 400 } else { 422 });
                }
                (want, got) => prop_assert!(false, "{body}: wanted {want:?}, got {got:?}"),
            }
        }

        /// A person within the rules parses, serialises, and comes back from its queue message
        /// unchanged.
        #[test]
        fn a_valid_person_round_trips((apelido, nome, nascimento, stack) in valid_person()) {
            let body = json!({"apelido": apelido, "nome": nome,
                "nascimento": nascimento.format("%Y-%m-%d").to_string(), "stack": stack});
            let person = NewPerson::parse(&mut serde_json::to_vec(&body).unwrap()).unwrap();
            prop_assert_eq!(person.apelido.as_str(), apelido.as_str());
            prop_assert_eq!(person.nome.as_str(), nome.as_str());
            prop_assert_eq!(person.nascimento.date(), nascimento);
            prop_assert_eq!(
                person.stack.as_ref().map(|s| s.iter().map(|t| t.as_str().to_owned()).collect::<Vec<_>>()),
                stack
            );
            let id = Uuid::new_v4();
            let stored = person.clone().with_id(id);
            let again = Person::from_message(&stored.json).unwrap();
            prop_assert_eq!(again.id, id);
            prop_assert_eq!(again.person, person);
        }

        #[test]
        fn a_queue_message_of_any_bytes_never_panics(raw in prop_oneof![bytes(), damaged(person_like())]) {
            let _ = Person::from_message(&raw);
        }

        #[test]
        fn any_date_string_never_panics_and_real_dates_round_trip(s in string(), d in date()) {
            let _ = Nascimento::parse(&s);
            let written = d.format("%Y-%m-%d").to_string();
            let parsed = Nascimento::parse(&written).unwrap();
            prop_assert_eq!(parsed.date(), d);
            prop_assert_eq!(parsed.to_string(), written);
        }

        /// Any term, 10 KB ones and SQL's metacharacters included: a 400 when empty or holding
        /// NUL, otherwise a LIKE pattern that matches the lowercased term literally.
        #[test]
        fn a_search_term_is_a_400_or_a_literal_like_pattern(
            t in prop_oneof![string(), "[%_\\\\';a-zA-Z -]{0,20}", "x{10000,10240}"],
        ) {
            match SearchTerm::parse(Some(&t)) {
                Err(e) => {
                    prop_assert!(t.is_empty() || t.contains('\0'));
                    prop_assert_eq!(ApiError::from(e).status().as_u16(), 400);
                }
                Ok(term) => {
                    let p = term.like_pattern();
                    prop_assert!(p.len() >= 2 && p.starts_with('%') && p.ends_with('%'));
                    // Unescape the inside: every wildcard must have been escaped.
                    let mut literal = String::new();
                    let mut chars = p[1..p.len() - 1].chars();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => literal.push(chars.next().expect("an escape escapes something")),
                            '%' | '_' => prop_assert!(false, "an unescaped wildcard in {p:?}"),
                            c => literal.push(c),
                        }
                    }
                    prop_assert_eq!(literal, t.to_lowercase());
                }
            }
        }
    }
}
