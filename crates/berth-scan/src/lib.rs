//! Vulnerability matching for Berth, without I/O: version orderings per ecosystem
//! ([`version`]), OSV advisories ([`osv`]) and an index that matches packages against them
//! ([`db`]), with severities from CVSS vectors ([`cvss`]); NVD, CVE List V5 and Debian
//! security tracker data converted to OSV at import ([`formats`]).
//!
//! **Boundary:** pure: data in, findings out. No database, no network, no clock (callers
//! pass the time where it matters). Reading layers, storing advisories and scheduling scans
//! live elsewhere.
//!
//! ```
//! use berth_scan::version::Scheme;
//! assert!(Scheme::Dpkg.compare("3.0.11-1~deb12u2", "3.0.11-1").unwrap().is_lt());
//! ```

pub mod cvss;
pub mod db;
pub mod formats;
pub mod inventory;
pub mod osv;
pub mod report;
pub mod sbom;
pub mod version;

pub use cvss::Severity;
pub use db::{Database, Finding, Matched, Package};
pub use osv::OsvRecord;
pub use version::{Ecosystem, Scheme};

/// Read OSV records from JSON Lines (one record per line; blank lines skipped), calling `f`
/// for each. Returns the number of lines that were not valid records (they are skipped).
pub fn read_jsonl(reader: impl std::io::BufRead, mut f: impl FnMut(OsvRecord)) -> std::io::Result<usize> {
    let mut bad = 0;
    for line in reader.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<OsvRecord>(&line) {
            Ok(r) => f(r),
            Err(_) => bad += 1,
        }
    }
    Ok(bad)
}
