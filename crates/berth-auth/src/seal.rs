//! Secrets Berth must read back (an upstream registry's password, which it sends there):
//! sealed with ChaCha20-Poly1305 (ring) under a key that is **not in the database** — a file,
//! `secret_key_file` (default `<data_dir>/secret.key`, created on first start, mode 0600; every
//! replica must be given the same file). A database dump alone reveals no credential; each
//! sealed value names what it belongs to (associated data), so it cannot be moved to
//! another record.

use std::path::Path;

use base64::Engine;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

/// Why a sealed value could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// Not a sealed value of this format.
    #[error("not a sealed value")]
    Malformed,
    /// Sealed under another key, or for another record, or changed.
    #[error("the value was sealed under another key (is secret_key_file the same on every replica?) or was changed")]
    Forged,
}

/// Seals and opens secrets under one key.
pub struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

const PREFIX: &str = "v1:";

impl Sealer {
    /// A sealer over a 32-byte key.
    pub fn new(key: &[u8; 32]) -> Sealer {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, key).expect("a 32-byte ChaCha20 key");
        Sealer { key: LessSafeKey::new(unbound) }
    }

    /// The key in `path` (64 hex digits), created there (mode 0600) if the file is absent.
    pub fn load_or_create(path: &Path) -> std::io::Result<Sealer> {
        let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim())
                    .map_err(|_| bad(format!("{}: expected 64 hex digits (a 32-byte key)", path.display())))?;
                let key: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| bad(format!("{}: expected 64 hex digits (a 32-byte key)", path.display())))?;
                Ok(Sealer::new(&key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let tmp = path.with_extension("tmp");
                {
                    use std::io::Write;
                    let mut f = std::fs::File::create(&tmp)?;
                    #[cfg(unix)]
                    {
                        use std::os::unix::fs::PermissionsExt;
                        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
                    }
                    f.write_all(format!("{}\n", hex::encode(key)).as_bytes())?;
                    f.sync_all()?;
                }
                // Another replica or process may have made one meanwhile: the first one wins.
                match std::fs::hard_link(&tmp, path) {
                    Ok(()) => {
                        let _ = std::fs::remove_file(&tmp);
                        Ok(Sealer::new(&key))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let _ = std::fs::remove_file(&tmp);
                        Sealer::load_or_create(path)
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Seal `plain` for `context` (what it belongs to, e.g. `registry:12`).
    pub fn seal(&self, plain: &str, context: &str) -> String {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let mut data = plain.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(context.as_bytes()),
                &mut data,
            )
            .expect("sealing a short secret");
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&data);
        format!("{PREFIX}{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(out))
    }

    /// Open what [`Sealer::seal`] made for `context`.
    pub fn open(&self, sealed: &str, context: &str) -> Result<String, SealError> {
        let body = sealed.strip_prefix(PREFIX).ok_or(SealError::Malformed)?;
        let raw = base64::engine::general_purpose::STANDARD_NO_PAD.decode(body).map_err(|_| SealError::Malformed)?;
        if raw.len() < NONCE_LEN + CHACHA20_POLY1305.tag_len() {
            return Err(SealError::Malformed);
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Malformed)?;
        let mut data = rest.to_vec();
        let plain =
            self.key.open_in_place(nonce, Aad::from(context.as_bytes()), &mut data).map_err(|_| SealError::Forged)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SealError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_context() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let a = Sealer::load_or_create(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let sealed = a.seal("Upstream-Passw0rd", "registry:1");
        assert!(!sealed.contains("Upstream"), "{sealed}");
        assert_ne!(sealed, a.seal("Upstream-Passw0rd", "registry:1"), "a fresh nonce each time");
        assert_eq!(a.open(&sealed, "registry:1").unwrap(), "Upstream-Passw0rd");
        // The same file opens it again (another replica, a restart); another key does not.
        assert_eq!(Sealer::load_or_create(&path).unwrap().open(&sealed, "registry:1").unwrap(), "Upstream-Passw0rd");
        assert!(matches!(Sealer::new(&[7; 32]).open(&sealed, "registry:1"), Err(SealError::Forged)));
        assert!(matches!(a.open(&sealed, "registry:2"), Err(SealError::Forged)), "bound to its record");
        let mut tampered = sealed.clone();
        tampered.replace_range(10..11, if &sealed[10..11] == "A" { "B" } else { "A" });
        assert!(a.open(&tampered, "registry:1").is_err());
        assert!(matches!(a.open("plain", "registry:1"), Err(SealError::Malformed)));
        std::fs::write(&path, "short").unwrap();
        assert!(Sealer::load_or_create(&path).is_err());
    }
}
