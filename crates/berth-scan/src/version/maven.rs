//! Maven and RubyGems versions.
//!
//! Maven after `ComparableVersion` (without its list nesting): items split at `.`, `-` and
//! digit/letter changes; numbers numerically; qualifiers `alpha` (`a`) < `beta` (`b`) <
//! `milestone` (`m`) < `rc` (`cr`) < `snapshot` < release (`""`, `ga`, `final`, `release`) <
//! `sp` < other qualifiers (alphabetically); a number is newer than a qualifier; trailing
//! zeros and release qualifiers do not count (`1.0 == 1 == 1-ga`).
//!
//! RubyGems after `Gem::Version`: segments split at `.` and digit/letter changes; a letter
//! segment makes a pre-release (`1.0.a < 1.0`); strings sort before numbers.

use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Num(u64),
    Qual(String),
}

fn split_items(s: &str, seps: &[char]) -> Option<Vec<Item>> {
    let mut out = Vec::new();
    for part in s.trim().to_ascii_lowercase().split(seps) {
        let mut cur = String::new();
        let mut digit = None;
        for c in part.chars() {
            if !c.is_ascii_alphanumeric() {
                return None;
            }
            let d = c.is_ascii_digit();
            if digit.is_some_and(|x| x != d) {
                out.push(item(&cur)?);
                cur.clear();
            }
            digit = Some(d);
            cur.push(c);
        }
        if !cur.is_empty() {
            out.push(item(&cur)?);
        }
    }
    if out.is_empty() { None } else { Some(out) }
}

fn item(s: &str) -> Option<Item> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        Some(Item::Num(s.parse().ok()?))
    } else {
        Some(Item::Qual(s.to_owned()))
    }
}

/// A parsed Maven version.
#[derive(Debug, Clone)]
pub struct MavenVersion(Vec<Item>);

fn qualifier_rank(q: &str) -> (u8, &str) {
    match q {
        "alpha" | "a" => (0, ""),
        "beta" | "b" => (1, ""),
        "milestone" | "m" => (2, ""),
        "rc" | "cr" => (3, ""),
        "snapshot" => (4, ""),
        "" | "ga" | "final" | "release" => (5, ""),
        "sp" => (6, ""),
        other => (7, other),
    }
}

fn is_null(i: &Item) -> bool {
    match i {
        Item::Num(n) => *n == 0,
        Item::Qual(q) => qualifier_rank(q).0 == 5,
    }
}

impl MavenVersion {
    /// Parse; `None` when empty or holding characters Maven versions do not.
    pub fn parse(s: &str) -> Option<MavenVersion> {
        let mut items = split_items(s, &['.', '-', '_'])?;
        while items.len() > 1 && items.last().is_some_and(is_null) {
            items.pop();
        }
        Some(MavenVersion(items))
    }
}

impl Ord for MavenVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        let release = Item::Qual(String::new());
        let n = self.0.len().max(other.0.len());
        for k in 0..n {
            let (a, b) = (self.0.get(k), other.0.get(k));
            let c = match (a, b) {
                (Some(Item::Num(x)), Some(Item::Num(y))) => x.cmp(y),
                (Some(Item::Num(_)), Some(Item::Qual(_))) => Ordering::Greater,
                (Some(Item::Qual(_)), Some(Item::Num(_))) => Ordering::Less,
                (Some(Item::Qual(x)), Some(Item::Qual(y))) => qualifier_rank(x).cmp(&qualifier_rank(y)),
                // A missing item is a null: 0 next to a number, the release next to a qualifier.
                (Some(Item::Num(x)), None) => x.cmp(&0),
                (None, Some(Item::Num(y))) => 0.cmp(y),
                (Some(q @ Item::Qual(_)), None) => cmp_items(q, &release),
                (None, Some(q @ Item::Qual(_))) => cmp_items(&release, q),
                (None, None) => Ordering::Equal,
            };
            if c != Ordering::Equal {
                return c;
            }
        }
        Ordering::Equal
    }
}

fn cmp_items(a: &Item, b: &Item) -> Ordering {
    match (a, b) {
        (Item::Qual(x), Item::Qual(y)) => qualifier_rank(x).cmp(&qualifier_rank(y)),
        _ => Ordering::Equal,
    }
}

impl PartialOrd for MavenVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for MavenVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for MavenVersion {}

/// A parsed RubyGems version.
#[derive(Debug, Clone)]
pub struct GemVersion(Vec<Item>);

impl GemVersion {
    /// Parse; `None` when it is not a gem version.
    pub fn parse(s: &str) -> Option<GemVersion> {
        let s = s.trim();
        if !s.as_bytes().first()?.is_ascii_digit() {
            return None;
        }
        let mut items = split_items(s, &['.', '-'])?;
        // canonical: trailing zeros before any pre-release part do not count
        let first_qual = items.iter().position(|i| matches!(i, Item::Qual(_))).unwrap_or(items.len());
        let (mut release, pre): (Vec<Item>, Vec<Item>) = (items[..first_qual].to_vec(), items.split_off(first_qual));
        while release.len() > 1 && release.last() == Some(&Item::Num(0)) {
            release.pop();
        }
        release.extend(pre);
        Some(GemVersion(release))
    }
}

impl Ord for GemVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.0.len().max(other.0.len());
        for k in 0..n {
            let c = match (self.0.get(k), other.0.get(k)) {
                (Some(Item::Num(x)), Some(Item::Num(y))) => x.cmp(y),
                (Some(Item::Num(_)), Some(Item::Qual(_))) => Ordering::Greater,
                (Some(Item::Qual(_)), Some(Item::Num(_))) => Ordering::Less,
                (Some(Item::Qual(x)), Some(Item::Qual(y))) => x.cmp(y),
                (Some(Item::Num(x)), None) => x.cmp(&0),
                (None, Some(Item::Num(y))) => 0.cmp(y),
                // a pre-release part makes it older than the release without one
                (Some(Item::Qual(_)), None) => Ordering::Less,
                (None, Some(Item::Qual(_))) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            };
            if c != Ordering::Equal {
                return c;
            }
        }
        Ordering::Equal
    }
}

impl PartialOrd for GemVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for GemVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for GemVersion {}
