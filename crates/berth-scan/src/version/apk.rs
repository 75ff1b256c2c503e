//! Alpine package versions, compared as apk-tools does:
//! `digits{.digits}[letter]{_suffix[digits]}[~hash][-rN]`.
//!
//! Numbers first (the first numerically; later ones with a leading zero as decimal fractions,
//! so `1.05 < 1.5`; more components is newer), then the letter (`1.2.3 < 1.2.3a`), then the
//! suffixes (`_alpha < _beta < _pre < _rc < none < _cvs < _svn < _git < _hg < _p`), then the
//! revision. So `1.2.3_rc1 < 1.2.3 < 1.2.3-r1 < 1.2.3_p1 < 1.2.3a < 1.2.3.1`.

use std::cmp::Ordering;

/// A parsed apk version.
#[derive(Debug, Clone)]
pub struct ApkVersion {
    numbers: Vec<String>,
    letter: Option<u8>,
    suffixes: Vec<(i8, u64)>,
    revision: u64,
}

fn suffix_rank(s: &str) -> Option<i8> {
    Some(match s {
        "alpha" => -4,
        "beta" => -3,
        "pre" => -2,
        "rc" => -1,
        "cvs" => 1,
        "svn" => 2,
        "git" => 3,
        "hg" => 4,
        "p" => 5,
        _ => return None,
    })
}

impl ApkVersion {
    /// Parse; `None` when it is not an apk version.
    pub fn parse(s: &str) -> Option<ApkVersion> {
        let s = s.trim();
        let (main, revision) = match s.rsplit_once("-r") {
            Some((m, r)) if !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()) => (m, r.parse().ok()?),
            _ => (s, 0),
        };
        let main = main.split('~').next()?;
        let (head, suffix_part) = match main.find('_') {
            Some(i) => (&main[..i], &main[i + 1..]),
            None => (main, ""),
        };
        let (nums, letter) = match head.as_bytes().last() {
            Some(c) if c.is_ascii_lowercase() => (&head[..head.len() - 1], Some(*c)),
            _ => (head, None),
        };
        let numbers: Vec<String> = nums.split('.').map(str::to_owned).collect();
        if numbers.iter().any(|n| n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit())) {
            return None;
        }
        let mut suffixes = Vec::new();
        if !suffix_part.is_empty() {
            for part in suffix_part.split('_') {
                let split = part.find(|c: char| c.is_ascii_digit()).unwrap_or(part.len());
                let rank = suffix_rank(&part[..split])?;
                let n = if split < part.len() { part[split..].parse().ok()? } else { 0 };
                suffixes.push((rank, n));
            }
        }
        Some(ApkVersion { numbers, letter, suffixes, revision })
    }
}

fn cmp_component(i: usize, a: &str, b: &str) -> Ordering {
    if i > 0 && (a.starts_with('0') || b.starts_with('0')) {
        // decimal fractions: compare digit by digit, shorter padded with zeros
        let (a, b) = (a.trim_end_matches('0'), b.trim_end_matches('0'));
        return a.cmp(b);
    }
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

impl Ord for ApkVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        for (i, (a, b)) in self.numbers.iter().zip(&other.numbers).enumerate() {
            let c = cmp_component(i, a, b);
            if c != Ordering::Equal {
                return c;
            }
        }
        let by_len = self.numbers.len().cmp(&other.numbers.len());
        if by_len != Ordering::Equal {
            return by_len;
        }
        let by_letter = self.letter.unwrap_or(0).cmp(&other.letter.unwrap_or(0));
        if by_letter != Ordering::Equal {
            return by_letter;
        }
        let n = self.suffixes.len().max(other.suffixes.len());
        for k in 0..n {
            let a = self.suffixes.get(k).copied().unwrap_or((0, 0));
            let b = other.suffixes.get(k).copied().unwrap_or((0, 0));
            let c = a.cmp(&b);
            if c != Ordering::Equal {
                return c;
            }
        }
        self.revision.cmp(&other.revision)
    }
}

impl PartialOrd for ApkVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for ApkVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for ApkVersion {}
