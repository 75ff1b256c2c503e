//! Passwords and generated secrets: hashing, verification, generation.
//!
//! Passwords (chosen by people, so guessable) are hashed with argon2id. Robot secrets and
//! CLI secrets are generated here with 190 bits of entropy, so a salted slow hash buys
//! nothing against guessing; they are stored as SHA-256 and compared in constant time,
//! which keeps the `docker login`-per-CI-job path cheap.

use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Most memory a stored hash may ask for (64 MiB); Berth's own use 19 MiB.
const MAX_BLOCKS: usize = 64 * 1024;

/// argon2 of `password` with `salt` into `out`. Its working memory (19 MiB for Berth's own
/// hashes) is allocated for the call and freed after it: `berth serve` pins glibc's mmap
/// threshold (see its `main`), so buffers this large are their own maps and freeing one gives
/// the memory back, instead of sitting in a per-thread arena while Berth idles.
fn argon2_into(a: &Argon2<'_>, password: &[u8], salt: &[u8], out: &mut [u8]) -> Result<(), argon2::Error> {
    let n = a.params().block_count();
    if n > MAX_BLOCKS {
        return Err(argon2::Error::MemoryTooMuch);
    }
    let mut blocks = vec![Block::default(); n];
    a.hash_password_into_with_memory(password, salt, out, &mut blocks[..])
}

/// Hash a password with argon2id, default parameters (PHC string).
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    let mut raw_salt = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut raw_salt).expect("a generated salt decodes");
    let params = Params::default();
    let a = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut out = [0u8; 32];
    argon2_into(&a, password.as_bytes(), salt_bytes, &mut out)
        .expect("argon2 with default parameters hashes any input");
    let hash = Output::new(&out).expect("32 bytes is a valid output length");
    format!("$argon2id$v=19$m={},t={},p={}${}${hash}", params.m_cost(), params.t_cost(), params.p_cost(), salt.as_str())
}

/// Check a password against a PHC string, comparing in constant time.
pub fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(h) = PasswordHash::new(phc) else { return false };
    let (Ok(alg), Ok(params)) = (Algorithm::try_from(h.algorithm), Params::try_from(&h)) else { return false };
    let version = h.version.map_or(Ok(Version::V0x13), Version::try_from);
    let (Ok(version), Some(salt), Some(expected)) = (version, h.salt, h.hash) else { return false };
    let mut raw_salt = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut raw_salt) else { return false };
    let mut out = vec![0u8; expected.len()];
    let a = Argon2::new(alg, version, params);
    argon2_into(&a, password.as_bytes(), salt, &mut out).is_ok() && bool::from(out.ct_eq(expected.as_bytes()))
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

/// A new access key: `(id, secret)` in AWS's shapes (`AKIA` and 16 of `A-Z2-7`; 40
/// characters of base64's alphabet), so that tools that check their form accept them.
pub fn new_access_key() -> (String, String) {
    const ID: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    const SECRET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = rand::rngs::OsRng;
    let id: String = (0..16).map(|_| ID[rng.gen_range(0..ID.len())] as char).collect();
    let secret = (0..40).map(|_| SECRET[rng.gen_range(0..SECRET.len())] as char).collect();
    (format!("AKIA{id}"), secret)
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
    fn hashes_interoperate_with_the_argon2_crates_own_phc_code() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        // Ours verify with the reference implementation…
        let ours = hash_password("Correct1horse");
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default().verify_password(b"Correct1horse", &parsed).is_ok());
        assert!(Argon2::default().verify_password(b"wrong", &parsed).is_err());
        // …and theirs (stored by earlier versions of Berth) with ours, other parameters too.
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let theirs = Argon2::default().hash_password(b"Older1pass", &salt).unwrap().to_string();
        assert!(verify_password("Older1pass", &theirs) && !verify_password("Older1Pass", &theirs));
        let light = Argon2::new(Algorithm::Argon2i, Version::V0x10, Params::new(1024, 1, 1, Some(16)).unwrap());
        let theirs = light.hash_password(b"Light1pass", &salt).unwrap().to_string();
        assert!(verify_password("Light1pass", &theirs), "{theirs}");
        // A stored hash asking for absurd memory (2 GiB) is refused, not computed.
        let fake = format!(
            "$argon2id$v=19$m={},t=1,p=1${}$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            1 << 21,
            salt.as_str()
        );
        assert!(!verify_password("x", &fake));
    }

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
