//! The validated types of the Fibonacci service: a [`Username`] (checked before the WebSocket
//! upgrade, so a bad one gets a 400 and no socket), the n a client frame asks for
//! ([`FibRequest`]), what a frame can get wrong ([`InvalidFrame`], answered on the socket), and
//! what can stop an HTTP request ([`FibError`], mapped to a status by its `From` impl below).
use chrono::{DateTime, Utc};
use ntex::http::StatusCode;

use crate::error::ApiError;

/// The longest username SPEC §6 allows.
const USERNAME_MAX_CHARS: usize = 32;

/// 1–32 characters of `[A-Za-z0-9_.-]`. The only way to get one is [`Username::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, FibError> {
        let ok = !raw.is_empty()
            && raw.len() <= USERNAME_MAX_CHARS
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(FibError::InvalidUsername)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A client frame that asked for fib(n), with n within `0..=FIB_MAX_N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FibRequest {
    pub n: u64,
}

impl FibRequest {
    /// Reads a text frame: a bare whole number (`10`) or an object (`{"n":10}`).
    pub fn parse(frame: &[u8], max_n: u64) -> Result<Self, InvalidFrame> {
        let value: serde_json::Value =
            serde_json::from_slice(frame).map_err(|_| InvalidFrame::NotANumber)?;
        let number = match &value {
            serde_json::Value::Number(number) => number,
            serde_json::Value::Object(fields) => match fields.get("n") {
                Some(serde_json::Value::Number(number)) => number,
                _ => return Err(InvalidFrame::NotANumber),
            },
            _ => return Err(InvalidFrame::NotANumber),
        };
        match (number.as_u64(), number.as_i64(), number.as_f64()) {
            (Some(n), _, _) if n <= max_n => Ok(Self { n }),
            (Some(_), _, _) => Err(InvalidFrame::TooLarge { max_n }),
            (None, Some(_), _) => Err(InvalidFrame::Negative),
            (None, None, Some(f)) if f < 0.0 => Err(InvalidFrame::Negative),
            // `10.0` is whole; a whole number beyond u64 also arrives as a float.
            (None, None, Some(f)) if f.fract() == 0.0 && f <= max_n as f64 => {
                Ok(Self { n: f as u64 })
            }
            (None, None, Some(f)) if f.fract() == 0.0 => Err(InvalidFrame::TooLarge { max_n }),
            _ => Err(InvalidFrame::NotWhole),
        }
    }
}

/// What a client frame got wrong. Answered as `{"type":"error","error":…}`; the socket stays
/// open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidFrame {
    #[error("expected a whole number n, as 10 or {{\"n\":10}}")]
    NotANumber,
    #[error("n must be a whole number, not a fraction")]
    NotWhole,
    #[error("n must not be negative")]
    Negative,
    #[error("n must be at most {max_n}")]
    TooLarge { max_n: u64 },
    #[error("binary frames are not understood; send text")]
    Binary,
    #[error("message longer than {max_bytes} bytes")]
    TooLong { max_bytes: usize },
    #[error("too many large fib requests in flight on this socket; wait for a reply")]
    Busy,
}

/// Why an HTTP request of the Fibonacci service failed.
#[derive(Debug, thiserror::Error)]
pub enum FibError {
    /// 400: the username is not 1–32 characters of `[A-Za-z0-9_.-]`; no socket is opened.
    #[error("invalid username")]
    InvalidUsername,
    /// 503: PostgreSQL could not record or list the connections.
    #[error("connected users store unavailable")]
    Store(#[from] super::store::StoreError),
    /// 503: the replica is shutting down and takes no new sockets.
    #[error("shutting down")]
    ShuttingDown,
    /// 503: this replica holds `WS_MAX_CONNECTIONS` sockets already.
    #[error("too many WebSocket connections")]
    TooManySockets,
    /// 400: the request asked for `/ws/...` without a valid WebSocket handshake.
    #[error("not a WebSocket handshake")]
    Handshake,
}

impl From<ntex::ws::error::HandshakeError> for FibError {
    fn from(_: ntex::ws::error::HandshakeError) -> Self {
        Self::Handshake
    }
}

/// One open connection.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ConnectedUser {
    #[schema(example = "alice")]
    pub username: String,
    /// The replica holding the socket.
    #[schema(example = "api1")]
    pub instance: String,
    #[schema(value_type = String, format = DateTime, example = "2024-01-17T02:34:41.217753Z")]
    #[serde(serialize_with = "crate::json::rfc3339_micros")]
    pub connected_at: DateTime<Utc>,
}

/// Every open connection on every live replica.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ConnectedUsers {
    pub users: Vec<ConnectedUser>,
    pub count: usize,
}

/// Each variant's answer, with the status SPEC names.
impl From<FibError> for ApiError {
    fn from(e: FibError) -> Self {
        match e {
            FibError::InvalidUsername => ApiError::from_static(
                StatusCode::BAD_REQUEST,
                r#"{"error":"username must be 1-32 characters of A-Z a-z 0-9 _ . -"}"#,
            ),
            FibError::Handshake => ApiError::from_static(
                StatusCode::BAD_REQUEST,
                r#"{"error":"expected a WebSocket upgrade request"}"#,
            ),
            FibError::ShuttingDown => ApiError::from_static(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"error":"server shutting down"}"#,
            ),
            FibError::TooManySockets => ApiError::too_many_sockets(),
            FibError::Store(cause) => ApiError::unavailable("connected users store", &cause),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_of_one_to_32_allowed_characters_are_accepted() {
        for ok in ["a", "Ana_Maria.2-x", &"z".repeat(32)] {
            assert_eq!(Username::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn usernames_that_are_empty_too_long_or_oddly_spelled_are_rejected() {
        for bad in ["", &"z".repeat(33), "a b", "ana/1", "é", "a%20b", "x!"] {
            assert!(Username::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_bare_number_and_an_object_with_n_are_both_requests() {
        assert_eq!(FibRequest::parse(b"10", 100), Ok(FibRequest { n: 10 }));
        assert_eq!(FibRequest::parse(b" 0 ", 100), Ok(FibRequest { n: 0 }));
        assert_eq!(
            FibRequest::parse(br#"{"n":10}"#, 100),
            Ok(FibRequest { n: 10 })
        );
        assert_eq!(FibRequest::parse(b"100", 100), Ok(FibRequest { n: 100 }));
        assert_eq!(FibRequest::parse(b"10.0", 100), Ok(FibRequest { n: 10 }));
    }

    #[test]
    fn frames_that_are_not_whole_numbers_within_the_limit_are_rejected() {
        let cases: &[(&[u8], InvalidFrame)] = &[
            (b"abc", InvalidFrame::NotANumber),
            (b"", InvalidFrame::NotANumber),
            (b"\"10\"", InvalidFrame::NotANumber),
            (br#"{"n":"10"}"#, InvalidFrame::NotANumber),
            (br#"{"m":10}"#, InvalidFrame::NotANumber),
            (b"[10]", InvalidFrame::NotANumber),
            (b"10 11", InvalidFrame::NotANumber),
            (b"-1", InvalidFrame::Negative),
            (br#"{"n":-5}"#, InvalidFrame::Negative),
            (b"-1.5", InvalidFrame::Negative),
            (b"1.5", InvalidFrame::NotWhole),
            (b"101", InvalidFrame::TooLarge { max_n: 100 }),
            (b"1e30", InvalidFrame::TooLarge { max_n: 100 }),
            (
                b"99999999999999999999999",
                InvalidFrame::TooLarge { max_n: 100 },
            ),
        ];
        for (frame, want) in cases {
            assert_eq!(
                FibRequest::parse(frame, 100).as_ref(),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(frame)
            );
        }
    }
}

/// Hostile WebSocket frames and usernames: any bytes never panic the parser, every whole n
/// within the limit is read back, and everything else is one of the frame errors (the socket
/// stays open); a bad username is a 400 before any upgrade.
#[cfg(test)]
mod proptests {
    use super::*;
    use crate::json::proptests::{bytes, config, damaged, string, value};
    use proptest::prelude::*;
    use serde_json::json;

    fn max_n() -> impl Strategy<Value = u64> {
        prop_oneof![Just(1_000_000u64), 0..=200u64, any::<u64>()]
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn any_frame_is_a_request_within_the_limit_or_a_frame_error(
            frame in prop_oneof![bytes(), damaged(value()), damaged(value().prop_map(|n| json!({"n": n})))],
            max in max_n(),
        ) {
            match FibRequest::parse(&frame, max) {
                Ok(r) => prop_assert!(r.n <= max),
                Err(e) => {
                    prop_assert!(matches!(e, InvalidFrame::NotANumber | InvalidFrame::NotWhole
                        | InvalidFrame::Negative | InvalidFrame::TooLarge { .. }), "{e:?}");
                    prop_assert!(!e.to_string().is_empty());
                }
            }
        }

        #[test]
        fn every_n_within_the_limit_is_read_bare_or_in_an_object(n in any::<u64>(), max in max_n(), pad in "[ \t\r\n]{0,3}") {
            let want = if n <= max { Ok(FibRequest { n }) } else { Err(InvalidFrame::TooLarge { max_n: max }) };
            prop_assert_eq!(FibRequest::parse(format!("{pad}{n}{pad}").as_bytes(), max), want.clone());
            prop_assert_eq!(FibRequest::parse(json!({"n": n}).to_string().as_bytes(), max), want);
        }

        #[test]
        fn every_negative_n_is_refused_as_negative(n in i64::MIN..0, max in max_n()) {
            prop_assert_eq!(FibRequest::parse(n.to_string().as_bytes(), max), Err(InvalidFrame::Negative));
            prop_assert_eq!(FibRequest::parse(json!({"n": n}).to_string().as_bytes(), max), Err(InvalidFrame::Negative));
        }

        #[test]
        fn a_fraction_is_not_whole(whole in 0u32..1000, frac in 1u32..1000) {
            let frame = format!("{whole}.{frac:03}");
            prop_assert_eq!(FibRequest::parse(frame.as_bytes(), 1_000_000), Err(InvalidFrame::NotWhole));
        }

        #[test]
        fn a_username_is_accepted_exactly_within_its_rules_else_400(
            s in prop_oneof![string(), "[A-Za-z0-9_.-]{1,32}", "[A-Za-z0-9_.-]{33,40}"],
        ) {
            let ok = (1..=32).contains(&s.len())
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            match Username::parse(&s) {
                Ok(u) => prop_assert!(ok && u.as_str() == s),
                Err(e) => {
                    prop_assert!(!ok);
                    prop_assert_eq!(ApiError::from(e).status().as_u16(), 400);
                }
            }
        }
    }
}
