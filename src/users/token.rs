//! Login tokens: `<user id>.<expiry, unix seconds>.<signature>`, the signature an HMAC-SHA256 of
//! the first two parts under `TOKEN_SECRET`, base64url without padding. Every replica holds the
//! secret, so any replica checks any token with no round trip to a store — the WebSocket
//! upgrade, the long-polls and every chat write authenticate in microseconds.
//!
//! The price of a stateless token is that it cannot be revoked before it expires; the damage is
//! bounded because every chat action also checks membership in PostgreSQL, and a deleted user's
//! memberships go with it.
use base64ct::{Base64UrlUnpadded, Encoding};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::model::{UserId, UsersError};

/// Signs `TOKEN_SECRET` is unset: fine on one machine, and `arena serve` warns about it.
pub const DEVELOPMENT_SECRET: &str = "arena-development-token-secret";

/// Binds a signature to this token format, so a future format cannot be confused with it.
const DOMAIN: &[u8] = b"arena-token-v1.";

/// Longest token accepted for checking: two 19-digit numbers, two dots and 43 signature
/// characters fit well below it; anything longer is refused before any work.
const MAX_TOKEN_LEN: usize = 128;

/// Issues and checks tokens with one key. Cheap to clone: the keyed HMAC state is copied
/// instead of re-keyed for every token.
#[derive(Clone)]
pub struct Tokens {
    mac: Hmac<Sha256>,
    ttl_secs: i64,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    pub fn new(secret: &str, ttl_secs: u32) -> Self {
        Self {
            mac: Hmac::new_from_slice(secret.as_bytes())
                .expect("BUG: HMAC takes a key of any length"),
            ttl_secs: i64::from(ttl_secs),
        }
    }

    fn signature(&self, claims: &str) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(DOMAIN);
        mac.update(claims.as_bytes());
        mac
    }

    /// A token for `user`, valid until `now + TOKEN_TTL_SECS`; returns it and its expiry.
    pub fn issue(&self, user: UserId, now: i64) -> (String, i64) {
        let expires = now.saturating_add(self.ttl_secs);
        let claims = format!("{}.{expires}", user.get());
        let tag = self.signature(&claims).finalize().into_bytes();
        (
            format!("{claims}.{}", Base64UrlUnpadded::encode_string(&tag)),
            expires,
        )
    }

    /// The user a token names, if its signature is ours and it has not expired at `now`.
    pub fn verify(&self, token: &str, now: i64) -> Result<UserId, UsersError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(UsersError::Unauthenticated);
        }
        let (claims, signature) = token.rsplit_once('.').ok_or(UsersError::Unauthenticated)?;
        let (user, expires) = claims.split_once('.').ok_or(UsersError::Unauthenticated)?;
        let mut tag = [0u8; 32];
        let tag = Base64UrlUnpadded::decode(signature, &mut tag)
            .map_err(|_| UsersError::Unauthenticated)?;
        // Constant-time comparison, before the claims are trusted for anything.
        self.signature(claims)
            .verify_slice(tag)
            .map_err(|_| UsersError::Unauthenticated)?;
        let user = crate::json::digits(user).filter(|&id| id > 0);
        let expires = crate::json::digits(expires);
        match (user, expires) {
            (Some(user), Some(expires)) if now < expires => Ok(UserId::from_db(user)),
            _ => Err(UsersError::Unauthenticated),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    #[test]
    fn a_token_names_its_user_until_it_expires() {
        let tokens = Tokens::new("s3cret", 60);
        let (token, expires) = tokens.issue(UserId::from_db(42), NOW);
        assert_eq!(expires, NOW + 60);
        assert_eq!(tokens.verify(&token, NOW).unwrap(), UserId::from_db(42));
        assert_eq!(
            tokens.verify(&token, NOW + 59).unwrap(),
            UserId::from_db(42)
        );
        assert!(tokens.verify(&token, NOW + 60).is_err());
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let (token, _) = Tokens::new("theirs", 60).issue(UserId::from_db(1), NOW);
        assert!(Tokens::new("ours", 60).verify(&token, NOW).is_err());
    }

    #[test]
    fn a_token_whose_claims_were_changed_is_refused() {
        let tokens = Tokens::new("s3cret", 60);
        let (token, _) = tokens.issue(UserId::from_db(1), NOW);
        let signature = token.rsplit_once('.').unwrap().1;
        for forged in [
            format!("2.{}.{signature}", NOW + 60),
            format!("1.{}.{signature}", NOW + 6000),
        ] {
            assert!(tokens.verify(&forged, NOW).is_err(), "{forged}");
        }
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        let tokens = Tokens::new("s3cret", 60);
        for junk in [
            "",
            ".",
            "..",
            "a.b.c",
            "1.2.",
            "1..x",
            "1.2.3.4",
            "é.é.é",
            &"9".repeat(500),
        ] {
            assert!(tokens.verify(junk, NOW).is_err(), "{junk}");
        }
    }
}
