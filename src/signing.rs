//! Standard Webhooks signing (<https://www.standardwebhooks.com/>): the `whsec_` key a tenant's
//! webhook sink is configured with, parsed once when the config is loaded, and the
//! `webhook-signature` it puts on each delivery. A leaf module: imports nothing of dirsync.
//!
//! Implemented here (HMAC-SHA256 with the crates already in the build) rather than with the
//! `standardwebhooks` crate, which would add a second base64 version, `hmac-sha256` and `time`
//! for twenty lines.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A Standard Webhooks signing key: the bytes of the base64 after `whsec_`.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

/// Base64 as Standard Webhooks libraries accept it: padding optional.
const BASE64_LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the webhook secret must be \"whsec_\" followed by a base64 key")]
    Prefix,
    #[error("the webhook secret after \"whsec_\" is not valid base64 ({0}); generate one with `echo whsec_$(head -c 32 /dev/urandom | base64)`")]
    Base64(base64::DecodeError),
    #[error("the webhook secret's key is empty")]
    Empty,
}

impl SigningKey {
    /// Parses a secret of the form `whsec_<base64>`.
    pub fn from_secret(secret: &str) -> Result<Self, KeyError> {
        let encoded = secret
            .trim()
            .strip_prefix("whsec_")
            .ok_or(KeyError::Prefix)?;
        let key = BASE64_LENIENT.decode(encoded).map_err(KeyError::Base64)?;
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Self(key))
    }

    /// The `webhook-signature` header value: `v1,` + base64 HMAC-SHA256 of `id.timestamp.body`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &str) -> String {
        // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => return String::new(),
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        let digest = mac.finalize().into_bytes();
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    }
}

impl std::fmt::Debug for SigningKey {
    /// Never the key itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(…)")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn signs_the_standard_webhooks_test_vector() {
        // The example of the Standard Webhooks specification (and its libraries' tests).
        let key = SigningKey::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = key.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_secret_without_the_prefix_or_with_bad_base64_is_refused() {
        assert!(matches!(
            SigningKey::from_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(KeyError::Prefix)
        ));
        assert!(matches!(
            SigningKey::from_secret("whsec_not base64!"),
            Err(KeyError::Base64(_))
        ));
    }
}
