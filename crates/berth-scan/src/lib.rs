//! Vulnerability matching for Berth, without I/O: version orderings per ecosystem
//! ([`version`]), OSV advisories ([`osv`]) and an index that matches packages against them
//! ([`db`]), with severities from CVSS vectors ([`cvss`]).
//!
//! **Boundary:** pure: data in, findings out. No database, no network, no clock (callers
//! pass the time where it matters). Reading layers, storing advisories and scheduling scans
//! live elsewhere.
//!
//! ```
//! use berth_scan::version::Scheme;
//! assert!(Scheme::Dpkg.compare("3.0.11-1~deb12u2", "3.0.11-1").unwrap().is_lt());
//! ```

pub mod version;
