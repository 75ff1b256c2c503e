//! SemVer 2.0 precedence (npm, crates.io, Go): `MAJOR.MINOR.PATCH[-pre][+build]`.
//!
//! Pre-releases sort before their release, identifiers numerically when numeric and before
//! alphanumeric ones; build metadata is ignored. Parsing accepts what these ecosystems
//! write: a leading `v` (Go modules) or `go` (Go toolchains: `go1.20` is `1.20.0`) and missing
//! minor or patch numbers (`1.20` is `1.20.0`).

use std::cmp::Ordering;

/// A parsed SemVer version.
#[derive(Debug, Clone)]
pub struct SemVer {
    core: [u64; 3],
    pre: Vec<Ident>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Ident {
    // Declaration order is the ordering: numeric identifiers sort before alphanumeric ones.
    Num(u64),
    Alnum(String),
}

impl SemVer {
    /// Parse; `None` when it is not a version.
    pub fn parse(s: &str) -> Option<SemVer> {
        let s = s.trim();
        let s = s.strip_prefix("go").or_else(|| s.strip_prefix('v')).unwrap_or(s);
        let s = s.split('+').next()?;
        let (core, pre) = match s.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (s, None),
        };
        let parts: Vec<&str> = core.split('.').collect();
        if parts.is_empty() || parts.len() > 3 {
            return None;
        }
        let mut nums = [0u64; 3];
        for (k, p) in parts.iter().enumerate() {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            nums[k] = p.parse().ok()?;
        }
        let mut ids = Vec::new();
        if let Some(p) = pre {
            for id in p.split('.') {
                if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                    return None;
                }
                ids.push(match id.bytes().all(|b| b.is_ascii_digit()) {
                    true => Ident::Num(id.parse().ok()?),
                    false => Ident::Alnum(id.to_owned()),
                });
            }
        }
        Some(SemVer { core: nums, pre: ids })
    }
}

impl Ord for SemVer {
    fn cmp(&self, other: &Self) -> Ordering {
        self.core.cmp(&other.core).then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => self.pre.cmp(&other.pre),
        })
    }
}

impl PartialOrd for SemVer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for SemVer {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for SemVer {}
