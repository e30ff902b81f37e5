//! Opaque page tokens. A token carries the position to resume after (a sort key of the last
//! item returned), the page number, its issue time and a hash of the query it belongs to, all
//! under an HMAC so that garbage, tampered tokens and tokens of another query are refused
//! (400), like Google refuses them. Resuming is a range lookup, never a scan from the start.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::directory::hash_str;
use super::error::ApiError;

/// Google: "The page token is only valid for three days".
pub const TOKEN_LIFETIME_SECS: u64 = 3 * 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The sort key of the last item of the previous page.
    pub after: String,
    /// 1-based number of the page this token asks for.
    pub page: u32,
    pub issued_at: u64,
}

/// Signs and checks page tokens with a per-emulator secret.
#[derive(Clone)]
pub struct PageTokens {
    secret: [u8; 32],
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens")
    }
}

/// A stable hash of the query a token belongs to: method, path keys and the parameters that
/// change the result set (not `maxResults`, `projection`, `fields`, ...).
pub fn query_hash(method: &str, parts: &[(&str, &str)]) -> u64 {
    let mut text = String::from(method);
    for (key, value) in parts {
        text.push('\u{1}');
        text.push_str(key);
        text.push('=');
        text.push_str(&value.to_lowercase());
    }
    hash_str(&text)
}

impl PageTokens {
    pub fn new(secret: [u8; 32]) -> Self {
        Self { secret }
    }

    fn mac(&self, payload: &str) -> String {
        // A 32-byte key is always accepted by HMAC.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.secret) else {
            return String::new();
        };
        mac.update(payload.as_bytes());
        URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..12])
    }

    pub fn issue(&self, query: u64, position: &Position) -> String {
        let payload = format!(
            "{query:016x}|{}|{}|{}",
            position.page, position.issued_at, position.after
        );
        let mac = self.mac(&payload);
        URL_SAFE_NO_PAD.encode(format!("{mac}|{payload}"))
    }

    /// The position of a token, if it is genuine, for this query, and not older than the
    /// lifetime.
    pub fn check(&self, token: &str, query: u64, now: u64) -> Result<Position, ApiError> {
        let position = self
            .decode(token)
            .ok_or_else(ApiError::invalid_page_token)?;
        if position.0 != query || now.saturating_sub(position.1.issued_at) > TOKEN_LIFETIME_SECS {
            return Err(ApiError::invalid_page_token());
        }
        Ok(position.1)
    }

    /// The page number a token asks for, for fault rules (0 when the token is not genuine).
    pub fn page_of(&self, token: Option<&str>) -> u32 {
        match token {
            None => 1,
            Some(token) => self.decode(token).map_or(0, |(_, position)| position.page),
        }
    }

    fn decode(&self, token: &str) -> Option<(u64, Position)> {
        let raw = URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (mac, payload) = text.split_once('|')?;
        if mac != self.mac(payload) {
            return None;
        }
        let mut parts = payload.splitn(4, '|');
        let query = u64::from_str_radix(parts.next()?, 16).ok()?;
        let page = parts.next()?.parse().ok()?;
        let issued_at = parts.next()?.parse().ok()?;
        let after = parts.next()?.to_owned();
        Some((
            query,
            Position {
                after,
                page,
                issued_at,
            },
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bound_to_the_query_and_expire() {
        let tokens = PageTokens::new([7; 32]);
        let q = query_hash("users.list", &[("customer", "my_customer")]);
        let position = Position {
            after: "a|b".into(),
            page: 2,
            issued_at: 100,
        };
        let token = tokens.issue(q, &position);
        assert_eq!(tokens.check(&token, q, 200).unwrap(), position);
        assert_eq!(tokens.page_of(Some(&token)), 2);
        assert!(tokens.check(&token, q + 1, 200).is_err());
        assert!(tokens
            .check(&token, q, 100 + TOKEN_LIFETIME_SECS + 1)
            .is_err());
        assert!(tokens.check("garbage", q, 200).is_err());
        assert!(PageTokens::new([8; 32]).check(&token, q, 200).is_err());
    }
}
