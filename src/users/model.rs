//! The users domain's types (SPEC §4), parsed once at the edge: a [`NewUser`], a
//! [`Registration`], a [`Credentials`] pair or a [`UserUpdate`] cannot hold an empty password, a
//! malformed email or an over-long field. The status rule lives here and in [`UsersError`]: a body
//! that is not a JSON object is 400; a missing, null, mistyped or out-of-range field is 422
//! naming the field.
use chrono::{DateTime, Utc};
use serde::Serialize;
use simd_json::borrowed::Object;
use utoipa::openapi::schema::{
    KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

pub use crate::json::Invalid;
use crate::json::{self, text, WrongType};

/// Longest username, in characters: a username defaults to the email, so it fits one.
const USERNAME_MAX: usize = 254;
/// Longest display name, in characters.
const NAME_MAX: usize = 100;
/// Longest email (RFC 5321's path limit).
const EMAIL_MAX: usize = 254;
/// Longest password, in characters. Argon2 takes any length; the bound keeps one request from
/// making the hasher chew on 64 KiB.
const PASSWORD_MAX: usize = 256;

/// What can go wrong with users; [`From<UsersError> for ApiError`](crate::error::ApiError) in
/// `users/mod.rs` gives each its answer.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// 400: the body is not one JSON object.
    #[error("malformed body: {0}")]
    Malformed(&'static str),
    /// 422: a field is missing, of the wrong type, or out of range.
    #[error("invalid {}: {}", .0.field, .0.message)]
    Invalid(Invalid),
    /// 400: a malformed query parameter (`limit`, `offset`).
    #[error("bad query {}: {}", .0.field, .0.message)]
    BadQuery(Invalid),
    /// 409: another user has this username.
    #[error("username already taken")]
    UsernameTaken,
    /// 409: another user has this email.
    #[error("email already taken")]
    EmailTaken,
    /// 404: no such user.
    #[error("user not found")]
    NotFound,
    /// 401: `/login` with a username and password that do not match.
    #[error("wrong username or password")]
    BadCredentials,
    /// 401: no bearer token, or one that is malformed, forged or expired.
    #[error("missing, invalid or expired token")]
    Unauthenticated,
    /// 403: the token's user may not act on this user.
    #[error("the token's user may only change itself")]
    Forbidden,
    /// 503: every hashing permit stayed taken for the whole wait (a burst of logins).
    #[error("password hasher busy")]
    Busy,
    /// 503: PostgreSQL could not be reached, or the password hasher is gone.
    #[error("users store unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// 500: PostgreSQL answered something this code does not expect.
    #[error("users query failed")]
    Database(#[source] tokio_postgres::Error),
}

const fn invalid(field: &'static str, message: &'static str) -> UsersError {
    UsersError::Invalid(Invalid { field, message })
}

/// A user id: a positive 64-bit number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(i64);

impl UserId {
    /// From a path segment: anything but a positive number is a user that cannot exist (404).
    pub fn parse_path(s: &str) -> Result<Self, UsersError> {
        json::digits(s)
            .filter(|&n| n > 0)
            .map(Self)
            .ok_or(UsersError::NotFound)
    }

    /// From a number that is positive already (the database's ids, a verified token's).
    pub const fn from_db(id: i64) -> Self {
        Self(id)
    }

    pub const fn get(self) -> i64 {
        self.0
    }
}

/// 1–254 characters, none of them control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

/// A display name: 1–100 characters, none of them control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

/// `local@domain.tld`, at most 254 characters, no spaces; kept lowercased so uniqueness is
/// case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

/// 1–256 characters. Never logged: its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(…)")
    }
}

impl Username {
    pub fn parse(s: &str) -> Option<Self> {
        text(s, USERNAME_MAX).then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Name {
    pub fn parse(s: &str) -> Option<Self> {
        text(s, NAME_MAX).then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Email {
    /// A deliberately plain check — one `@`, something before it, a dotted domain after it, no
    /// whitespace — since only a sent mail proves an address; this catches typos like `bob`.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() > EMAIL_MAX || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return None;
        }
        let (local, domain) = s.split_once('@')?;
        let domain_ok = !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..");
        (!local.is_empty() && domain_ok).then(|| Self(s.to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Password {
    pub fn parse(s: &str) -> Option<Self> {
        (1..=PASSWORD_MAX)
            .contains(&s.chars().count())
            .then(|| Self(s.to_owned()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// Reads field `key` with `parse`; `None` when absent or null.
fn optional<T>(
    fields: &Object<'_>,
    key: &'static str,
    parse: fn(&str) -> Option<T>,
    message: &'static str,
) -> Result<Option<T>, UsersError> {
    match json::opt_str(fields, key) {
        Ok(None) => Ok(None),
        Ok(Some(s)) => parse(s).map(Some).ok_or(invalid(key, message)),
        Err(WrongType) => Err(invalid(key, "must be a string")),
    }
}

fn required<T>(
    fields: &Object<'_>,
    key: &'static str,
    parse: fn(&str) -> Option<T>,
    message: &'static str,
) -> Result<T, UsersError> {
    optional(fields, key, parse, message)?.ok_or(invalid(key, "is required"))
}

const USERNAME_RULE: &str = "must be 1-254 characters, not blank, no control characters";
const NAME_RULE: &str = "must be 1-100 characters, not blank, no control characters";
const EMAIL_RULE: &str = "must be an email address like name@example.com";
const PASSWORD_RULE: &str = "must be 1-256 characters";

fn fields(body: &mut [u8]) -> Result<Object<'_>, UsersError> {
    json::object(body).map_err(UsersError::Malformed)
}

/// `POST /users`: `{"name","email","password","username"?}`; the username defaults to the
/// email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub username: Username,
    pub name: Name,
    pub email: Option<Email>,
    pub password: Password,
}

impl NewUser {
    pub fn parse(body: &mut [u8]) -> Result<Self, UsersError> {
        let f = fields(body)?;
        let name = required(&f, "name", Name::parse, NAME_RULE)?;
        let email = required(&f, "email", Email::parse, EMAIL_RULE)?;
        let password = required(&f, "password", Password::parse, PASSWORD_RULE)?;
        let username = match optional(&f, "username", Username::parse, USERNAME_RULE)? {
            Some(username) => username,
            None => Username(email.0.clone()),
        };
        Ok(Self {
            username,
            name,
            email: Some(email),
            password,
        })
    }
}

/// `POST /register`: `{"username","password"}`. The user's name is its username, and it has no
/// email.
pub struct Registration;

impl Registration {
    pub fn parse(body: &mut [u8]) -> Result<NewUser, UsersError> {
        let f = fields(body)?;
        let username = required(&f, "username", Username::parse, USERNAME_RULE)?;
        let password = required(&f, "password", Password::parse, PASSWORD_RULE)?;
        // A username is at most 254 characters, a name 100: the name is cut, never refused.
        let name: String = username.0.chars().take(NAME_MAX).collect();
        Ok(NewUser {
            name: Name(name),
            username,
            email: None,
            password,
        })
    }
}

/// `POST /login`: `{"username","password"}`. Only presence is checked (SPEC §4: a wrong pair
/// is a 401, whatever its shape): a username no user can have (it holds NUL, which PostgreSQL
/// text cannot) or a password no user can have (empty, too long) is `None`, and answered 401
/// after the same hash a wrong password costs.
#[derive(Debug)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: Option<Password>,
}

impl Credentials {
    pub fn parse(body: &mut [u8]) -> Result<Self, UsersError> {
        let f = fields(body)?;
        let username = present(&f, "username")?;
        let password = present(&f, "password")?;
        Ok(Self {
            username: (!username.contains('\0')).then(|| username.to_owned()),
            password: Password::parse(password),
        })
    }
}

/// A required string field, whatever it holds.
fn present<'f>(fields: &'f Object<'_>, key: &'static str) -> Result<&'f str, UsersError> {
    match json::opt_str(fields, key) {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(invalid(key, "is required")),
        Err(WrongType) => Err(invalid(key, "must be a string")),
    }
}

/// `PUT /users/{id}`: any of `name`, `email`, `username`, `password`; at least one.
#[derive(Debug, Default)]
pub struct UserUpdate {
    pub username: Option<Username>,
    pub name: Option<Name>,
    pub email: Option<Email>,
    pub password: Option<Password>,
}

impl UserUpdate {
    pub fn parse(body: &mut [u8]) -> Result<Self, UsersError> {
        let f = fields(body)?;
        let update = Self {
            username: optional(&f, "username", Username::parse, USERNAME_RULE)?,
            name: optional(&f, "name", Name::parse, NAME_RULE)?,
            email: optional(&f, "email", Email::parse, EMAIL_RULE)?,
            password: optional(&f, "password", Password::parse, PASSWORD_RULE)?,
        };
        if update.username.is_none()
            && update.name.is_none()
            && update.email.is_none()
            && update.password.is_none()
        {
            return Err(invalid(
                "body",
                "give at least one of name, email, username, password",
            ));
        }
        Ok(update)
    }
}

/// Default and largest page of `GET /users`.
pub const PAGE_DEFAULT: i64 = 50;
pub const PAGE_MAX: i64 = 200;

/// `GET /users?limit=&offset=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageQuery {
    pub limit: i64,
    pub offset: i64,
}

impl PageQuery {
    pub fn parse(query: &str) -> Result<Self, UsersError> {
        let mut page = Self {
            limit: PAGE_DEFAULT,
            offset: 0,
        };
        let bad = |field, message| UsersError::BadQuery(Invalid { field, message });
        let pairs =
            json::query_pairs(query).ok_or(bad("query", "must be a URL-encoded query string"))?;
        for (key, value) in &pairs {
            match key.as_str() {
                "limit" => {
                    page.limit = json::digits(value)
                        .filter(|n| (1..=PAGE_MAX).contains(n))
                        .ok_or(bad("limit", "must be a whole number from 1 to 200"))?
                }
                "offset" => {
                    page.offset =
                        json::digits(value).ok_or(bad("offset", "must be a whole number from 0"))?
                }
                _ => {}
            }
        }
        Ok(page)
    }
}

/// A user as every answer shows it; the password hash never leaves the store.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct User {
    #[schema(example = 1)]
    pub id: i64,
    #[schema(example = "alice")]
    pub username: String,
    #[schema(example = "Alice Liddell")]
    pub name: String,
    /// `null` for users made by `/register`.
    #[schema(example = "alice@example.com")]
    pub email: Option<String>,
    #[schema(value_type = String, format = DateTime, example = "2024-01-17T02:34:41.217753Z")]
    #[serde(serialize_with = "json::rfc3339_micros")]
    pub created_at: DateTime<Utc>,
}

/// `GET /users`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserPage {
    pub users: Vec<User>,
}

/// `POST /register`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Registered {
    #[schema(example = 1)]
    pub user_id: i64,
    #[schema(example = "User created successfully")]
    pub message: &'static str,
}

/// `POST /login`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoggedIn {
    #[schema(example = 1)]
    pub user_id: i64,
    /// Send it as `Authorization: Bearer <token>` (or `?token=` on WebSocket and long-poll
    /// routes).
    pub token: String,
    /// When the token stops being accepted (RFC 3339, UTC).
    #[schema(example = "2024-01-18T02:34:41.000000Z")]
    pub expires_at: String,
}

// ---- the request bodies as the OpenAPI document shows them ------------------------------------
// The parsers above read bodies by hand, so that a field of the wrong type is a 422 naming it
// rather than a serde error; the structs below exist only to describe those bodies, so that a
// schema-driven client (Swagger UI, schemathesis) sends the fields the parsers read. Each field's
// schema sits on its domain type and is built from the constant its parser checks.

/// The characters `char::is_control` is true of (Unicode Cc), as the inside of an ECMA-262
/// class: none may appear in a name or username.
const CONTROL: &str = r"\u0000-\u001F\u007F-\u009F";
/// [`CONTROL`] and the characters `char::is_whitespace` is true of (Unicode White_Space): a name
/// needs one character outside these to not be blank; an email may hold none of them.
const BLANK_OR_CONTROL: &str =
    r"\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";

/// [`json::text`]'s rule as a schema: 1–`max` characters, no control characters, not blank.
pub fn text_schema(max: usize) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(format!(
            "^[^{CONTROL}]*[^{BLANK_OR_CONTROL}][^{CONTROL}]*$"
        )))
        .description(Some(format!(
            "1–{max} characters, not blank, no control characters"
        )))
}

/// How [`json::opt_id`] reads a positive id in a body: a JSON integer from 1, or a string of
/// digits. The string form is described up to 18 significant digits, below `i64::MAX`, which a
/// pattern cannot state briefly; no id gets near it.
pub fn body_id_schema(example: i64) -> OneOfBuilder {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(1))
                .maximum(Some(i64::MAX)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^0*[1-9][0-9]{0,17}$")),
        )
        .description(Some(
            "a positive id: a JSON integer, or a string of its digits",
        ))
        .examples([example])
}

impl PartialSchema for Username {
    fn schema() -> RefOr<Schema> {
        text_schema(USERNAME_MAX).examples(["alice"]).into()
    }
}
impl ToSchema for Username {}

impl PartialSchema for Name {
    fn schema() -> RefOr<Schema> {
        text_schema(NAME_MAX).examples(["Alice Liddell"]).into()
    }
}
impl ToSchema for Name {}

impl PartialSchema for Email {
    fn schema() -> RefOr<Schema> {
        // `Email::parse` exactly: a non-empty local part, one `@`, two or more non-empty
        // dot-separated labels, no whitespace or control character anywhere.
        let c = BLANK_OR_CONTROL;
        ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(EMAIL_MAX))
            .pattern(Some(format!("^[^@{c}]+@[^@.{c}]+(?:\\.[^@.{c}]+)+$")))
            .description(Some(format!(
                "an address like name@example.com, at most {EMAIL_MAX} bytes of UTF-8; \
                 stored lowercase"
            )))
            .examples(["alice@example.com"])
            .into()
    }
}
impl ToSchema for Email {}

impl PartialSchema for Password {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(PASSWORD_MAX))
            .description(Some(format!("1–{PASSWORD_MAX} characters, any")))
            .examples(["correct horse battery staple"])
            .into()
    }
}
impl ToSchema for Password {}

impl PartialSchema for UserId {
    fn schema() -> RefOr<Schema> {
        body_id_schema(1).into()
    }
}
impl ToSchema for UserId {}

/// `POST /users` body, for the OpenAPI document only: [`NewUser::parse`] reads it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct NewUserBody {
    name: Name,
    email: Email,
    password: Password,
    /// Defaults to the email; `null` is the same as absent.
    username: Option<Username>,
}

/// `POST /register` body, for the OpenAPI document only: [`Registration::parse`] reads it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RegistrationBody {
    username: Username,
    password: Password,
}

/// `POST /login` body, for the OpenAPI document only: [`Credentials::parse`] reads it. Both
/// fields are only required to be strings: a pair no user can have is a 401, whatever its shape.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CredentialsBody {
    #[schema(example = "alice")]
    username: String,
    #[schema(example = "correct horse battery staple")]
    password: String,
}

/// `PUT /users/{id}` body, for the OpenAPI document only: [`UserUpdate::parse`] reads it. At
/// least one of the four fields must be given and not `null` (else 422); `null` is the same as
/// absent.
#[derive(ToSchema)]
#[schema(min_properties = 1)]
#[allow(dead_code)]
pub struct UserUpdateBody {
    name: Option<Name>,
    email: Option<Email>,
    username: Option<Username>,
    password: Option<Password>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    fn field_of(e: UsersError) -> &'static str {
        match e {
            UsersError::Invalid(i) => i.field,
            other => panic!("expected a 422, got {other:?}"),
        }
    }

    #[test]
    fn a_new_user_takes_its_email_as_username_lowercased() {
        let u = NewUser::parse(&mut body(
            r#"{"name":"Ana","email":"Ana@Example.COM","password":"x"}"#,
        ))
        .unwrap();
        assert_eq!(u.username.as_str(), "ana@example.com");
        assert_eq!(u.email.unwrap().as_str(), "ana@example.com");
    }

    #[test]
    fn invalid_new_users_name_the_offending_field() {
        let cases = [
            (r#"{"name":"A","email":"a@b.co"}"#, "password"),
            (r#"{"name":"A","email":"a@b.co","password":""}"#, "password"),
            (
                r#"{"name":"A","email":"a@b.co","password":null}"#,
                "password",
            ),
            (r#"{"name":"A","email":"ab.co","password":"x"}"#, "email"),
            (r#"{"name":"A","email":"a@b","password":"x"}"#, "email"),
            (r#"{"name":"A","email":"a b@c.co","password":"x"}"#, "email"),
            (r#"{"name":"A","email":"a@@b.co","password":"x"}"#, "email"),
            (r#"{"name":"A","email":"@b.co","password":"x"}"#, "email"),
            (r#"{"name":"","email":"a@b.co","password":"x"}"#, "name"),
            (r#"{"name":"   ","email":"a@b.co","password":"x"}"#, "name"),
            (
                r#"{"name":"a\u0007","email":"a@b.co","password":"x"}"#,
                "name",
            ),
            (r#"{"name":1,"email":"a@b.co","password":"x"}"#, "name"),
            (
                r#"{"name":"A","email":"a@b.co","password":"x","username":""}"#,
                "username",
            ),
            (
                r#"{"name":"A","email":"a@b.co","password":"x","username":7}"#,
                "username",
            ),
        ];
        for (raw, field) in cases {
            assert_eq!(
                field_of(NewUser::parse(&mut body(raw)).unwrap_err()),
                field,
                "{raw}"
            );
        }
        let long_name = format!(
            r#"{{"name":"{}","email":"a@b.co","password":"x"}}"#,
            "n".repeat(101)
        );
        assert_eq!(
            field_of(NewUser::parse(&mut body(&long_name)).unwrap_err()),
            "name"
        );
        let long_password = format!(
            r#"{{"name":"A","email":"a@b.co","password":"{}"}}"#,
            "p".repeat(257)
        );
        assert_eq!(
            field_of(NewUser::parse(&mut body(&long_password)).unwrap_err()),
            "password"
        );
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        let name = "é".repeat(100);
        let raw = format!(
            r#"{{"name":"{name}","email":"a@b.co","password":"{}"}}"#,
            "ü".repeat(256)
        );
        assert!(NewUser::parse(&mut body(&raw)).is_ok());
    }

    #[test]
    fn a_body_that_is_not_a_json_object_is_malformed() {
        for raw in ["", "null", "[]", "{", r#""x""#] {
            assert!(
                matches!(
                    NewUser::parse(&mut body(raw)),
                    Err(UsersError::Malformed(_))
                ),
                "{raw}"
            );
            assert!(
                matches!(
                    Credentials::parse(&mut body(raw)),
                    Err(UsersError::Malformed(_))
                ),
                "{raw}"
            );
        }
    }

    #[test]
    fn a_registration_names_the_user_after_its_username() {
        let u = Registration::parse(&mut body(r#"{"username":"bob","password":"pw"}"#)).unwrap();
        assert_eq!(
            (u.username.as_str(), u.name.as_str(), u.email),
            ("bob", "bob", None)
        );
        let long = "u".repeat(254);
        let u = Registration::parse(&mut body(&format!(
            r#"{{"username":"{long}","password":"pw"}}"#
        )))
        .unwrap();
        assert_eq!(u.name.as_str().chars().count(), 100);
    }

    #[test]
    fn an_update_needs_at_least_one_field() {
        assert_eq!(
            field_of(UserUpdate::parse(&mut body("{}")).unwrap_err()),
            "body"
        );
        let u = UserUpdate::parse(&mut body(r#"{"email":"X@Y.io"}"#)).unwrap();
        assert_eq!(u.email.unwrap().as_str(), "x@y.io");
    }

    #[test]
    fn pages_default_to_fifty_from_the_start_and_refuse_out_of_range_values() {
        assert_eq!(
            PageQuery::parse("").unwrap(),
            PageQuery {
                limit: 50,
                offset: 0
            }
        );
        assert_eq!(
            PageQuery::parse("limit=200&offset=%33").unwrap(),
            PageQuery {
                limit: 200,
                offset: 3
            }
        );
        for bad in ["limit=0", "limit=201", "limit=-1", "offset=x", "offset=-5"] {
            assert!(
                matches!(PageQuery::parse(bad), Err(UsersError::BadQuery(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn user_ids_in_paths_are_positive_numbers_or_unknown() {
        assert_eq!(UserId::parse_path("42").unwrap().get(), 42);
        for bad in ["0", "-1", "x", "", "1.5", "99999999999999999999"] {
            assert!(
                matches!(UserId::parse_path(bad), Err(UsersError::NotFound)),
                "{bad}"
            );
        }
    }
}

/// Hostile input for the users parsers: any bytes are a user or a 400/422, bodies with the
/// right field names and values of every JSON type are a 422 naming a field of theirs (never a
/// panic, never a 5xx), and users generated within SPEC §4's rules parse as given.
#[cfg(test)]
mod proptests {
    use super::*;
    use crate::error::ApiError;
    use crate::json::proptests::{bytes, config, damaged, encode, object_of, query, string};
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn status(e: UsersError) -> u16 {
        ApiError::from(e).status().as_u16()
    }

    /// Not a JSON object → 400; a bad field → 422 naming one of `fields` (or the body).
    /// `object`: whether the body is one (`None`: not known, either answer will do).
    fn check(e: UsersError, object: Option<bool>, fields: &[&str]) -> Result<(), TestCaseError> {
        match &e {
            UsersError::Malformed(_) => prop_assert!(
                object != Some(true),
                "an object refused as malformed: {e:?}"
            ),
            UsersError::Invalid(i) => {
                prop_assert!(
                    object != Some(false),
                    "not an object, yet a field is named: {e:?}"
                );
                prop_assert!(fields.contains(&i.field) || i.field == "body", "{e:?}")
            }
            other => prop_assert!(false, "a parser answered {other:?}"),
        }
        let code = status(e);
        prop_assert!(matches!(code, 400 | 422), "{code}");
        Ok(())
    }

    /// 1–`max` characters without control characters, not blank.
    fn plain(max: usize) -> impl Strategy<Value = String> {
        prop_oneof![
            prop::collection::vec(
                any::<char>().prop_map(|c| if c.is_control() { 'c' } else { c }),
                1..=max
            )
            .prop_filter("not blank", |cs| cs.iter().any(|c| !c.is_whitespace()))
            .prop_map(|cs| cs.into_iter().collect::<String>()),
            "[a-zA-Z0-9_.-]{1,20}",
        ]
    }

    fn email() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9._%+-]{1,20}@[a-zA-Z0-9-]{1,12}(\\.[a-zA-Z]{2,6}){1,2}"
    }

    fn password() -> impl Strategy<Value = String> {
        prop::collection::vec(any::<char>(), 1..=PASSWORD_MAX)
            .prop_map(|cs| cs.into_iter().collect())
    }

    fn good(field: &str) -> BoxedStrategy<Value> {
        match field {
            "name" => plain(NAME_MAX + 2).prop_map(Value::from).boxed(),
            "username" => plain(40).prop_map(Value::from).boxed(),
            "email" => prop_oneof![email(), string()].prop_map(Value::from).boxed(),
            _ => prop_oneof![password(), string()]
                .prop_map(Value::from)
                .boxed(),
        }
    }

    fn body_of(fields: &[&'static str]) -> BoxedStrategy<Value> {
        object_of(fields.iter().map(|f| (*f, good(f))).collect())
    }

    const ALL: [&str; 4] = ["name", "email", "password", "username"];

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn any_bytes_are_parsed_or_a_400_or_422(raw in prop_oneof![bytes(), damaged(body_of(&ALL))]) {
            let object = None;
            if let Err(e) = NewUser::parse(&mut raw.clone()) { check(e, object, &ALL)? }
            if let Err(e) = Registration::parse(&mut raw.clone()) { check(e, object, &ALL)? }
            if let Err(e) = Credentials::parse(&mut raw.clone()) { check(e, object, &ALL)? }
            if let Err(e) = UserUpdate::parse(&mut raw.clone()) { check(e, object, &ALL)? }
        }

        #[test]
        fn a_new_user_of_any_field_types_is_a_user_or_a_422_naming_a_field(body in body_of(&ALL)) {
            match NewUser::parse(&mut serde_json::to_vec(&body).unwrap()) {
                Ok(u) => {
                    // Whatever was accepted can be stored: no control characters, within bounds.
                    prop_assert!(text(u.name.as_str(), NAME_MAX));
                    prop_assert!(text(u.username.as_str(), USERNAME_MAX));
                    let email = u.email.as_ref().unwrap().as_str();
                    prop_assert!(!email.contains('\0') && email == email.to_lowercase());
                }
                Err(e) => check(e, Some(true), &ALL)?,
            }
        }

        #[test]
        fn a_registration_login_or_update_of_any_field_types_never_panics(body in body_of(&ALL)) {
            let raw = serde_json::to_vec(&body).unwrap();
            match Registration::parse(&mut raw.clone()) {
                Ok(u) => prop_assert!(u.name.as_str().chars().count() <= NAME_MAX && u.email.is_none()),
                Err(e) => check(e, Some(true), &ALL)?,
            }
            match Credentials::parse(&mut raw.clone()) {
                // The username goes to PostgreSQL as text: one holding NUL must not.
                Ok(c) => prop_assert!(c.username.is_none_or(|u| !u.contains('\0'))),
                Err(e) => check(e, Some(true), &ALL)?,
            }
            match UserUpdate::parse(&mut raw.clone()) {
                Ok(u) => prop_assert!(u.name.is_some() || u.email.is_some() || u.username.is_some() || u.password.is_some()),
                Err(e) => check(e, Some(true), &ALL)?,
            }
        }

        #[test]
        fn a_valid_new_user_parses_as_given(
            name in plain(NAME_MAX),
            email in email(),
            password in password(),
            username in prop::option::of(plain(USERNAME_MAX)),
        ) {
            let mut body = json!({"name": name, "email": email, "password": password});
            if let Some(u) = &username {
                body["username"] = json!(u);
            }
            let u = NewUser::parse(&mut serde_json::to_vec(&body).unwrap()).unwrap();
            prop_assert_eq!(u.name.as_str(), name.as_str());
            prop_assert_eq!(u.email.as_ref().unwrap().as_str(), email.to_lowercase());
            prop_assert_eq!(u.password.as_bytes(), password.as_bytes());
            let want = username.unwrap_or_else(|| email.to_lowercase());
            prop_assert_eq!(u.username.as_str(), want.as_str());
        }

        #[test]
        fn a_valid_registration_parses_as_given(username in plain(USERNAME_MAX), password in password()) {
            let body = json!({"username": username, "password": password});
            let u = Registration::parse(&mut serde_json::to_vec(&body).unwrap()).unwrap();
            prop_assert_eq!(u.username.as_str(), username.as_str());
            let name: String = username.chars().take(NAME_MAX).collect();
            prop_assert_eq!(u.name.as_str(), name.as_str());
        }

        #[test]
        fn any_page_query_is_a_page_or_a_400(q in prop_oneof![query(), string()]) {
            match PageQuery::parse(&q) {
                Ok(p) => prop_assert!((1..=PAGE_MAX).contains(&p.limit) && p.offset >= 0),
                Err(e) => {
                    prop_assert!(matches!(e, UsersError::BadQuery(_)), "{e:?}");
                    prop_assert_eq!(status(e), 400);
                }
            }
        }

        #[test]
        fn a_valid_page_query_round_trips(
            limit in prop::option::of(1..=PAGE_MAX),
            offset in prop::option::of(0..=i64::MAX),
            junk in "[a-z]{0,5}",
            v in ".{0,5}",
        ) {
            let mut pairs = vec![];
            if !["limit", "offset"].contains(&junk.as_str()) {
                pairs.push(format!("{}={}", encode(&junk), encode(&v)));
            }
            if let Some(l) = limit { pairs.push(format!("limit={l}")) }
            if let Some(o) = offset { pairs.push(format!("offset={}", encode(&o.to_string()))) }
            let p = PageQuery::parse(&pairs.join("&")).unwrap();
            prop_assert_eq!((p.limit, p.offset), (limit.unwrap_or(PAGE_DEFAULT), offset.unwrap_or(0)));
        }

        /// Huge, negative, signed or overflowing ids in a path name no user: 404, never a 5xx.
        #[test]
        fn any_path_id_is_a_user_id_or_a_404(s in prop_oneof![string(), "[0-9]{18,30}", "-[0-9]{1,20}"]) {
            match UserId::parse_path(&s) {
                Ok(id) => prop_assert!(id.get() > 0 && s.bytes().all(|b| b.is_ascii_digit())),
                Err(e) => prop_assert_eq!(status(e), 404),
            }
        }

        #[test]
        fn any_email_string_never_panics_and_an_accepted_one_fits(s in prop_oneof![string(), email()]) {
            if let Some(e) = Email::parse(&s) {
                prop_assert!(e.as_str().chars().count() <= EMAIL_MAX);
                prop_assert!(!e.as_str().contains(char::is_whitespace));
            }
        }
    }
}
