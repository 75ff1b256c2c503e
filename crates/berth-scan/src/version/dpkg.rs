//! Debian package versions: `[epoch:]upstream[-revision]`, compared as dpkg does.
//!
//! Epochs numerically; upstream and revision with dpkg's `verrevcmp`: alternating runs of
//! non-digits (compared character by character, `~` before everything, even the end of the
//! string, then the end, then letters, then other symbols) and digits (numerically).

use std::cmp::Ordering;

/// A parsed Debian version.
#[derive(Debug, Clone)]
pub struct DpkgVersion {
    epoch: u64,
    upstream: String,
    revision: String,
}

impl DpkgVersion {
    /// Parse; `None` when it is not a Debian version.
    pub fn parse(s: &str) -> Option<DpkgVersion> {
        let s = s.trim();
        let (epoch, rest) = match s.split_once(':') {
            Some((e, r)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => (e.parse().ok()?, r),
            Some(_) => return None,
            None => (0, s),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((u, r)) => (u, r),
            None => (rest, ""),
        };
        let ok = |part: &str, extra: &[u8]| {
            part.bytes().all(|b| b.is_ascii_alphanumeric() || b"+.~".contains(&b) || extra.contains(&b))
        };
        if upstream.is_empty() || !upstream.as_bytes()[0].is_ascii_digit() || !ok(upstream, b"-:") || !ok(revision, b"")
        {
            return None;
        }
        Some(DpkgVersion { epoch, upstream: upstream.to_owned(), revision: revision.to_owned() })
    }
}

fn order(c: Option<u8>) -> i32 {
    match c {
        Some(b'~') => -1,
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

/// dpkg's `verrevcmp`.
fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while i < a.len() && a[i].is_ascii_digit() && j < b.len() && b[j].is_ascii_digit() {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if i < a.len() && a[i].is_ascii_digit() {
            return Ordering::Greater;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

impl Ord for DpkgVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(&self.upstream, &other.upstream))
            .then_with(|| verrevcmp(&self.revision, &other.revision))
    }
}

impl PartialOrd for DpkgVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for DpkgVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for DpkgVersion {}
