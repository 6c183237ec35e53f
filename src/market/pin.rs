//! Payment PINs: 4 digits, stored as an Argon2id PHC string (salted), hashed and checked on
//! the blocking thread pool so the runtime's workers are never held up.

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use super::types::MarketError;
use crate::store::StoreError;

/// Wrong PINs in a row that lock payment confirmation.
pub(crate) const MAX_FAILURES: u32 = 5;
/// How long the lock lasts.
pub(crate) const LOCK_MS: i64 = 15 * 60 * 1000;

/// Whether a PIN has the right form: exactly 4 ASCII digits.
pub(crate) fn well_formed(pin: &str) -> bool {
    pin.len() == 4 && pin.bytes().all(|b| b.is_ascii_digit())
}

fn failed(what: &str, e: impl std::fmt::Display) -> MarketError {
    // Never includes the PIN: argon2's errors name the parameter, not the input.
    MarketError::Store(StoreError::Corrupt { column: "households.pin_hash", value: format!("{what}: {e}") })
}

/// Hashes a PIN with a fresh random salt.
pub(crate) async fn hash(pin: String) -> Result<String, MarketError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default().hash_password(pin.as_bytes(), &salt).map(|h| h.to_string())
    })
    .await
    .map_err(|e| failed("hashing task", e))?
    .map_err(|e| failed("hashing", e))
}

/// Whether `pin` matches the stored hash. A hash that does not parse is an error.
pub(crate) async fn verify(pin: String, stored: String) -> Result<bool, MarketError> {
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&stored)?;
        match Argon2::default().verify_password(pin.as_bytes(), &parsed) {
            Ok(()) => Ok(true),
            Err(argon2::password_hash::Error::Password) => Ok(false),
            Err(e) => Err(e),
        }
    })
    .await
    .map_err(|e| failed("verifying task", e))?
    .map_err(|e| failed("verifying", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_four_digits_should_be_well_formed() {
        assert!(well_formed("0000"));
        assert!(well_formed("1234"));
        for bad in ["", "123", "12345", "12a4", "１２３４", " 123"] {
            assert!(!well_formed(bad), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn hash_should_verify_the_pin_and_nothing_else() {
        let h = hash("2468".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(!h.contains("2468"));
        assert!(verify("2468".into(), h.clone()).await.unwrap());
        assert!(!verify("2469".into(), h.clone()).await.unwrap());
        // Salted: the same PIN hashes differently each time.
        assert_ne!(hash("2468".into()).await.unwrap(), h);
        assert!(verify("2468".into(), "garbage".into()).await.is_err());
    }
}
