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

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use name::{NameError, Reference, RepoName, Tag};
pub use settings::{ProjectSettings, SettingError, SeverityThreshold, Visibility};
