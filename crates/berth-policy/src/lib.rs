//! Policy evaluation for Berth, without I/O: one linear-time pattern engine ([`pattern`]),
//! the ECR-style repository policies built on it ([`ecr`]) and tag immutability ([`immutable`]).
//!
//! **Boundary:** pure: data in, decision out. No database, no network, no clock, no async;
//! callers load documents and pass the time where it matters. **Invariant:** every glob on
//! user input goes through [`Pattern`], compiled once into a bit-parallel automaton, so a
//! match costs `input length × state words (≤ 65)` steps whatever the pattern; there is no
//! backtracking matcher to freeze the server.
//!
//! ```
//! use berth_policy::{Pattern, PatternOptions, Syntax};
//! use berth_policy::ecr::{EcrAction, RepoPolicy, Verdict};
//!
//! let tags = Pattern::new("v{1,2}.*", Syntax::PathGlob, PatternOptions::default()).unwrap();
//! assert!(tags.matches("v1.25") && !tags.matches("v3.0"));
//!
//! let policy = RepoPolicy::parse(
//!     r#"{"Version": "2012-10-17", "Statement": [
//!         {"Effect": "Deny", "Principal": {"AWS": "ci"}, "Action": "ecr:Put*"}]}"#,
//! )
//! .unwrap();
//! assert_eq!(policy.evaluate(Some("ci"), EcrAction::PutImage), Verdict::Deny(None));
//! ```

pub mod ecr;
pub mod immutable;
pub mod lifecycle;
pub mod pattern;
pub mod retention;

pub use pattern::{Pattern, PatternError, PatternOptions, PatternSet, Syntax};
