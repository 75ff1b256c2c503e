//! Core value types of Berth: [`Digest`], [`RepoName`], [`Tag`], [`Reference`] and the
//! OCI/Docker media types, with their parsers. Nothing here does I/O.
//!
//! Every other crate receives these types already validated, so nothing deeper in the
//! code re-checks strings that came from a request.
//!
//! ```
//! use berth_types::{Digest, RepoName, Reference};
//! let repo: RepoName = "library/debian".parse().unwrap();
//! assert_eq!(repo.project(), "library");
//! let d = Digest::sha256_of(b"hello");
//! assert!(matches!(d.to_string().parse::<Reference>().unwrap(), Reference::Digest(_)));
//! ```

mod digest;
pub mod json;
pub mod media;
mod name;
mod settings;
pub mod sigv4;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use name::{NameError, Reference, RepoName, Tag};
pub use settings::{ProjectSettings, SettingError, SeverityThreshold, Visibility};

/// Bytes for people: `512 B`, `1.5 KiB`, `3.0 GiB` (binary units, one decimal).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_bytes_reads_well() {
        assert_eq!(super::human_bytes(0), "0 B");
        assert_eq!(super::human_bytes(1023), "1023 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(10 * 1024 * 1024), "10.0 MiB");
    }
}
