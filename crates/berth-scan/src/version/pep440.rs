//! Python versions (PEP 440): `[N!]N(.N)*[{a|b|rc}N][.postN][.devN][+local]`, with the
//! spec's normalisations (case, `alpha`/`beta`/`c`/`pre`/`preview`, `rev`/`r`, `-`/`_`
//! separators, implicit numbers, `1.0-1` as a post release, a leading `v`).
//!
//! Ordering as `packaging` does it: release with trailing zeros ignored (`1.0 == 1.0.0`);
//! `dev` before pre-releases before the release before `post`; local versions after the
//! public one, numeric segments after alphanumeric ones.

use std::cmp::Ordering;

/// A parsed PEP 440 version.
#[derive(Debug, Clone)]
pub struct Pep440 {
    epoch: u64,
    release: Vec<u64>,
    pre: Option<(u8, u64)>,
    post: Option<u64>,
    dev: Option<u64>,
    local: Vec<Local>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Local {
    // Declaration order is the ordering: strings sort before numbers.
    Str(String),
    Num(u64),
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn sep(&mut self) -> bool {
        if matches!(self.peek(), Some(b'.' | b'-' | b'_')) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn number(&mut self) -> Option<u64> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        if start == self.i {
            return None;
        }
        std::str::from_utf8(&self.s[start..self.i]).ok()?.parse().ok()
    }
    fn word(&mut self, words: &[&str]) -> Option<usize> {
        let rest = &self.s[self.i..];
        // longest first, so "preview" wins over "pre"
        let mut best: Option<(usize, usize)> = None;
        for (k, w) in words.iter().enumerate() {
            if rest.starts_with(w.as_bytes()) && best.is_none_or(|(_, l)| w.len() > l) {
                best = Some((k, w.len()));
            }
        }
        let (k, l) = best?;
        self.i += l;
        Some(k)
    }
}

impl Pep440 {
    /// Parse; `None` when it is not a PEP 440 version.
    pub fn parse(s: &str) -> Option<Pep440> {
        let lower = s.trim().to_ascii_lowercase();
        let body = lower.strip_prefix('v').unwrap_or(&lower);
        let (public, local_part) = match body.split_once('+') {
            Some((p, l)) => (p, Some(l)),
            None => (body, None),
        };
        let mut c = Cursor { s: public.as_bytes(), i: 0 };
        let first = c.number()?;
        let (epoch, mut release) = if c.peek() == Some(b'!') {
            c.i += 1;
            (first, vec![c.number()?])
        } else {
            (0, vec![first])
        };
        while c.peek() == Some(b'.') && c.s.get(c.i + 1).is_some_and(|d| d.is_ascii_digit()) {
            c.i += 1;
            release.push(c.number()?);
        }
        let mut pre = None;
        let save = c.i;
        c.sep();
        if let Some(k) = c.word(&["alpha", "a", "beta", "b", "preview", "pre", "rc", "c"]) {
            let kind = match k {
                0 | 1 => 0,
                2 | 3 => 1,
                _ => 2,
            };
            c.sep();
            pre = Some((kind, c.number().unwrap_or(0)));
        } else {
            c.i = save;
        }
        let mut post = None;
        let save = c.i;
        if c.peek() == Some(b'-') && c.s.get(c.i + 1).is_some_and(|d| d.is_ascii_digit()) {
            c.i += 1;
            post = c.number();
        } else {
            c.sep();
            if c.word(&["post", "rev", "r"]).is_some() {
                c.sep();
                post = Some(c.number().unwrap_or(0));
            } else {
                c.i = save;
            }
        }
        let mut dev = None;
        let save = c.i;
        c.sep();
        if c.word(&["dev"]).is_some() {
            c.sep();
            dev = Some(c.number().unwrap_or(0));
        } else {
            c.i = save;
        }
        if c.i != c.s.len() {
            return None;
        }
        let mut local = Vec::new();
        if let Some(l) = local_part {
            for seg in l.split(['.', '-', '_']) {
                if seg.is_empty() || !seg.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return None;
                }
                local.push(match seg.parse::<u64>() {
                    Ok(n) => Local::Num(n),
                    Err(_) => Local::Str(seg.to_owned()),
                });
            }
        }
        Some(Pep440 { epoch, release, pre, post, dev, local })
    }

    fn release_trimmed(&self) -> &[u64] {
        let mut end = self.release.len();
        while end > 1 && self.release[end - 1] == 0 {
            end -= 1;
        }
        &self.release[..end]
    }
}

/// Order with -∞ and +∞ around real values.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Bound<T> {
    Min,
    Val(T),
    Max,
}

impl Ord for Pep440 {
    fn cmp(&self, other: &Self) -> Ordering {
        let pre = |v: &Pep440| match (v.pre, v.post, v.dev) {
            (None, None, Some(_)) => Bound::Min,
            (None, _, _) => Bound::Max,
            (Some(p), _, _) => Bound::Val(p),
        };
        let post = |v: &Pep440| v.post.map_or(Bound::Min, Bound::Val);
        let dev = |v: &Pep440| v.dev.map_or(Bound::Max, Bound::Val);
        let local = |v: &Pep440| if v.local.is_empty() { Bound::Min } else { Bound::Val(v.local.clone()) };
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| self.release_trimmed().cmp(other.release_trimmed()))
            .then_with(|| pre(self).cmp(&pre(other)))
            .then_with(|| post(self).cmp(&post(other)))
            .then_with(|| dev(self).cmp(&dev(other)))
            .then_with(|| local(self).cmp(&local(other)))
    }
}

impl PartialOrd for Pep440 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// PEP 503 name normalisation: lower case, runs of `-`, `_`, `.` become one `-`.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

impl PartialEq for Pep440 {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Pep440 {}
