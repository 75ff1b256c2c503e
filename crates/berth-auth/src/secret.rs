//! Passwords and generated secrets: hashing, verification, generation.
//!
//! Passwords (chosen by people, so guessable) are hashed with argon2id. Robot secrets and
//! CLI secrets are generated here with 190 bits of entropy, so a salted slow hash buys
//! nothing against guessing; they are stored as SHA-256 and compared in constant time,
//! which keeps the `docker login`-per-CI-job path cheap.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Hash a password with argon2id (PHC string).
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .expect("argon2 with default parameters hashes any input")
}

/// Check a password against a PHC string (constant-time inside argon2).
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

/// A hash to verify against when the user does not exist, so that unknown and known
/// usernames take the same time.
pub fn dummy_password_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("berth-dummy-password-for-timing"))
}

/// Harbor's password rule: 8 to 128 characters with an upper-case letter, a lower-case
/// letter and a digit.
pub fn check_password_strength(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if !(8..=128).contains(&n)
        || !password.chars().any(|c| c.is_ascii_uppercase())
        || !password.chars().any(|c| c.is_ascii_lowercase())
        || !password.chars().any(|c| c.is_ascii_digit())
    {
        return Err("a password needs 8 to 128 characters, with at least one upper-case letter, one \
                    lower-case letter and one digit"
            .into());
    }
    Ok(())
}

/// A new random secret: 32 characters from `[A-Za-z0-9]` (about 190 bits).
pub fn new_secret() -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rngs::OsRng;
    (0..32).map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char).collect()
}

/// The stored form of a generated secret: `sha256:<hex>`.
pub fn hash_secret(secret: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(secret.as_bytes())))
}

/// Does `secret` match its stored form? Constant time in the secret's content.
pub fn verify_secret(secret: &str, stored: &str) -> bool {
    let computed = hash_secret(secret);
    computed.len() == stored.len() && bool::from(computed.as_bytes().ct_eq(stored.as_bytes()))
}

/// The stored form of a secret: SHA-256 for ones generated here, argon2id for ones a person
/// chose (guessable, so salted and slow).
pub fn hash_chosen_or_generated(secret: &str, generated: bool) -> String {
    if generated { hash_secret(secret) } else { hash_password(secret) }
}

/// Check a secret against either stored form.
pub fn verify_stored(secret: &str, stored: &str) -> bool {
    if stored.starts_with("$argon2") { verify_password(secret, stored) } else { verify_secret(secret, stored) }
}

/// Constant-time equality of two byte strings of any length.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let (ha, hb) = (Sha256::digest(a), Sha256::digest(b));
    bool::from(ha.as_slice().ct_eq(hb.as_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_secrets() {
        let h = hash_password("Correct1horse");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("Correct1horse", &h));
        assert!(!verify_password("correct1horse", &h));
        assert!(!verify_password("x", "not a hash"));
        let s = new_secret();
        assert_eq!(s.len(), 32);
        assert_ne!(s, new_secret());
        let stored = hash_secret(&s);
        assert!(!stored.contains(&s));
        assert!(verify_secret(&s, &stored));
        assert!(!verify_secret("wrong", &stored));
        assert!(check_password_strength("Harbor12345").is_ok());
        assert!(check_password_strength("short1A").is_err());
        assert!(check_password_strength("alllowercase1").is_err());
        assert!(ct_eq(b"abc", b"abc") && !ct_eq(b"abc", b"abd"));
        let chosen = hash_chosen_or_generated("Chosen-Secret-1", false);
        assert!(chosen.starts_with("$argon2id$") && verify_stored("Chosen-Secret-1", &chosen));
        assert!(verify_stored(&s, &hash_chosen_or_generated(&s, true)) && !verify_stored("x", &chosen));
    }
}
