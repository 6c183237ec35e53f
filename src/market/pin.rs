//! Payment PINs: 4 digits, stored as an Argon2id PHC string (salted), hashed and checked on
//! the blocking thread pool so the runtime's workers are never held up.
//!
//! A 4-digit PIN falls to a search of 10 000 candidates once its hash is out (a copied
//! database, a backup): PINs are hashed with a **pepper**, 32 random bytes kept in a file
//! outside the database (`[security] pin_pepper_file`), as Argon2's secret. Such hashes carry
//! `keyid=` [`PEPPER_KEYID`] in their PHC string; hashes without it (made before the pepper)
//! still verify, and are replaced by a peppered hash at the next correct PIN, in the same
//! transaction as the payment it confirms.

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, KeyId, ParamsBuilder, Version};

use super::types::MarketError;
use crate::config::SecurityConfig;
use crate::store::StoreError;

/// The `keyid` of a peppered hash (the PHC string shows it in base64: `keyid=cDE`).
pub(crate) const PEPPER_KEYID: &[u8] = b"p1";
/// Bytes of a generated pepper, and the fewest a pepper file may hold.
pub const PEPPER_LEN: usize = 32;
/// The most a pepper file may hold (Argon2's secret is at most 2^32 - 1 bytes; a file this
/// long is not a pepper).
const PEPPER_MAX: usize = 1024;
/// The file's name next to a SQLite database, or in the working directory.
pub const PEPPER_FILE: &str = "pin_pepper";

/// The pepper: never shown, never logged.
#[derive(Clone)]
pub struct Pepper(Arc<[u8]>);

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pepper(***)")
    }
}

impl Pepper {
    /// A pepper of these bytes (tests; the daemon loads it with [`Pepper::load_or_create`]).
    pub fn from_bytes(bytes: &[u8]) -> Pepper {
        Pepper(Arc::from(bytes))
    }

    /// Where the pepper lives: `[security] pin_pepper_file`, else `pin_pepper` next to the
    /// SQLite database file, else (PostgreSQL) in the working directory.
    pub fn path(security: &SecurityConfig, sqlite_file: Option<&Path>) -> PathBuf {
        if let Some(p) = &security.pin_pepper_file {
            return p.clone();
        }
        match sqlite_file.and_then(Path::parent) {
            Some(dir) => dir.join(PEPPER_FILE),
            None => PathBuf::from(PEPPER_FILE),
        }
    }

    /// Reads the pepper file, or, when there is none, creates it (mode 0600) with
    /// [`PEPPER_LEN`] random bytes from the OS. A file that cannot be read, or holds fewer
    /// than [`PEPPER_LEN`] bytes, is an error: PINs hashed with it could not be checked.
    pub fn load_or_create(path: &Path) -> Result<(Pepper, bool), MarketError> {
        let fail = |reason: String| MarketError::Pepper { path: path.display().to_string(), reason };
        if !path.exists() {
            // Written whole to a file of its own, then linked into place: a process starting
            // at the same time (another node, a parallel test) reads a whole pepper or makes
            // none, never half a file.
            let mut bytes = [0u8; PEPPER_LEN];
            OsRng.fill_bytes(&mut bytes);
            let mut tmp = path.as_os_str().to_owned();
            tmp.push(format!(".new-{}-{:08x}", std::process::id(), OsRng.next_u32()));
            let tmp = PathBuf::from(tmp);
            let written = crate::files::create_new_private(&tmp).and_then(|mut file| {
                std::io::Write::write_all(&mut file, &bytes)?;
                file.sync_all()
            });
            let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => return Ok((Pepper::from_bytes(&bytes), true)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(fail(format!("cannot create it: {e}"))),
            }
        }
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(PEPPER_MAX as u64 + 1).read_to_end(&mut bytes))
            .map_err(|e| fail(format!("cannot read it: {e}")))?;
        if bytes.len() < PEPPER_LEN || bytes.len() > PEPPER_MAX {
            return Err(fail(format!(
                "holds {} bytes, a pepper is {PEPPER_LEN} to {PEPPER_MAX}; restore the file the PINs were \
                 hashed with (remove it only if no PIN is set yet: a new one is made at the start)",
                bytes.len()
            )));
        }
        crate::files::narrow_if_present(path).map_err(|e| fail(format!("cannot make it private: {e}")))?;
        Ok((Pepper::from_bytes(&bytes), false))
    }

    fn argon2(&self) -> Result<Argon2<'_>, argon2::Error> {
        let params = ParamsBuilder::new().keyid(KeyId::new(PEPPER_KEYID)?).build()?;
        Argon2::new_with_secret(&self.0, Algorithm::Argon2id, Version::V0x13, params)
    }
}

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

/// Hashes a PIN with a fresh random salt and the pepper.
pub(crate) async fn hash(pin: String, pepper: Pepper) -> Result<String, MarketError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        pepper.argon2()?.hash_password(pin.as_bytes(), &salt).map(|h| h.to_string())
    })
    .await
    .map_err(|e| failed("hashing task", e))?
    .map_err(|e| failed("hashing", e))
}

/// What checking a PIN found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Checked {
    /// Wrong.
    Wrong,
    /// Right, and the stored hash is peppered.
    Right,
    /// Right, against a hash made without the pepper: this peppered hash replaces it.
    RightUpgrade(String),
}

/// Checks `pin` against the stored hash: with the pepper if the hash says it was made with
/// one, else without (and then hashes it anew with the pepper). A hash that does not parse
/// is an error.
pub(crate) async fn verify(pin: String, stored: String, pepper: Pepper) -> Result<Checked, MarketError> {
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&stored)?;
        let peppered = parsed.params.get("keyid").is_some();
        let checked = if peppered {
            pepper.argon2()?.verify_password(pin.as_bytes(), &parsed)
        } else {
            Argon2::default().verify_password(pin.as_bytes(), &parsed)
        };
        match checked {
            Ok(()) if peppered => Ok(Checked::Right),
            Ok(()) => {
                let salt = SaltString::generate(&mut OsRng);
                let new = pepper.argon2()?.hash_password(pin.as_bytes(), &salt)?.to_string();
                Ok(Checked::RightUpgrade(new))
            }
            Err(argon2::password_hash::Error::Password) => Ok(Checked::Wrong),
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

    fn pepper(b: u8) -> Pepper {
        Pepper::from_bytes(&[b; PEPPER_LEN])
    }

    #[tokio::test]
    async fn hash_should_verify_the_pin_and_nothing_else() {
        let h = hash("2468".into(), pepper(1)).await.unwrap();
        assert!(h.starts_with("$argon2id$") && h.contains("keyid="), "{h}");
        assert!(!h.contains("2468"));
        assert_eq!(verify("2468".into(), h.clone(), pepper(1)).await.unwrap(), Checked::Right);
        assert_eq!(verify("2469".into(), h.clone(), pepper(1)).await.unwrap(), Checked::Wrong);
        // Salted: the same PIN hashes differently each time.
        assert_ne!(hash("2468".into(), pepper(1)).await.unwrap(), h);
        assert!(verify("2468".into(), "garbage".into(), pepper(1)).await.is_err());
    }

    #[tokio::test]
    async fn another_pepper_should_not_verify_and_an_unpeppered_hash_should_be_upgraded() {
        let h = hash("2468".into(), pepper(1)).await.unwrap();
        assert_eq!(verify("2468".into(), h, pepper(2)).await.unwrap(), Checked::Wrong);
        // A hash from before the pepper.
        let salt = SaltString::generate(&mut OsRng);
        let old = Argon2::default().hash_password(b"1357", &salt).unwrap().to_string();
        assert!(!old.contains("keyid="));
        assert_eq!(verify("1358".into(), old.clone(), pepper(1)).await.unwrap(), Checked::Wrong);
        let Checked::RightUpgrade(new) = verify("1357".into(), old, pepper(1)).await.unwrap() else {
            panic!("no upgrade");
        };
        assert_eq!(verify("1357".into(), new, pepper(1)).await.unwrap(), Checked::Right);
    }

    #[test]
    fn a_pepper_should_be_made_once_0600_and_refused_short() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PEPPER_FILE);
        let (made, created) = Pepper::load_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&path).unwrap().len(), PEPPER_LEN);
        let (again, created) = Pepper::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(made.0, again.0);
        assert_eq!(format!("{made:?}"), "Pepper(***)");
        std::fs::write(&path, b"short").unwrap();
        let e = Pepper::load_or_create(&path).unwrap_err().to_string();
        assert!(e.contains("holds 5 bytes"), "{e}");
    }

    #[test]
    fn the_pepper_should_default_next_to_a_sqlite_database() {
        let none = SecurityConfig::default();
        let sqlite = |f: &'static str| Some(Path::new(f));
        assert_eq!(
            Pepper::path(&none, sqlite("/var/lib/chogate/c.db")),
            Path::new("/var/lib/chogate/pin_pepper")
        );
        assert_eq!(Pepper::path(&none, sqlite("data/c.db")), Path::new("data/pin_pepper"));
        assert_eq!(Pepper::path(&none, sqlite("c.db")), Path::new("pin_pepper"));
        assert_eq!(Pepper::path(&none, None), Path::new("pin_pepper"));
        let set = SecurityConfig { pin_pepper_file: Some("/etc/chogate/pepper".into()) };
        assert_eq!(Pepper::path(&set, sqlite("c.db")), Path::new("/etc/chogate/pepper"));
    }
}
