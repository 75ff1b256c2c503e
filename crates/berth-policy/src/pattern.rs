//! One pattern engine for every glob Berth evaluates on user input: IAM/ECR-style wildcards
//! ([`Syntax::Wildcard`]) and doublestar path globs ([`Syntax::PathGlob`]).
//!
//! A pattern is compiled once into a bit-parallel NFA (Shift-And generalised with star
//! tokens) and matched in time linear in the input, whatever the pattern's shape: per input
//! character the matcher does one pass over the state words (see [`Pattern::work`]). There is
//! no backtracking, so `*a*a*a…` against a long non-matching string costs the same as `abc`.
//!
//! # How it works
//!
//! The pattern becomes a sequence of *tokens*: a `One` token consumes exactly one character of
//! a set, a `Star` token any run of characters of a set. `{a,b}` groups are multiplied out at
//! compile time into several sequences laid side by side in one bitset. Bit `p` of the state
//! means "the tokens before `p` have matched the input read so far". For each input
//! character `c` (whose character class selects the masks):
//!
//! ```text
//! D' = ((D & one[c]) << 1) | (D & star[c])    -- consume c: advance, or stay in a star
//! D' = D' | ((D' & skip) << 1)                -- a star may also match nothing
//! ```
//!
//! Adjacent stars are merged at compile time (`*` next to `**` is `**`, and so on), so no two
//! skippable positions are adjacent and one skip shift is the whole closure. The masks are
//! computed per *character class*: the code points are cut into intervals at every boundary
//! of a set the pattern uses, intervals with equal masks share one entry, ASCII is looked up
//! in a table and other characters by binary search over the (few) boundaries. Matching is on
//! characters, not bytes, so `?` and classes match one character of any UTF-8 width.
//!
//! # Limits
//!
//! Patterns are at most [`MAX_PATTERN_BYTES`] bytes; `{…}` groups may multiply out to at most
//! [`MAX_ALTERNATIVES`] alternatives and [`MAX_POSITIONS`] positions in total. Together these
//! bound the state to 65 words of 64 bits, hence the work per input byte.

use std::collections::HashMap;
use std::fmt;

/// The longest pattern accepted, in bytes.
pub const MAX_PATTERN_BYTES: usize = 4096;
/// The most alternatives `{…}` groups may multiply out to.
pub const MAX_ALTERNATIVES: usize = 256;
/// The most state words (64 positions each) a compiled pattern has.
pub const MAX_WORDS: usize = 65;
/// The most NFA positions (tokens plus one end per alternative) a pattern may compile to.
pub const MAX_POSITIONS: usize = 64 * MAX_WORDS;
/// How deep `{…}` groups may nest.
pub const MAX_NESTING: usize = 32;

const MAX_CHAR: u32 = char::MAX as u32;

/// The pattern language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Syntax {
    /// IAM/ECR style: `*` matches any run of characters (`/` included), `?` exactly one
    /// character; everything else, `\`, `[` and `{` included, is literal.
    Wildcard,
    /// Doublestar path globs (Harbor's repository and tag filters): `*` matches a run without
    /// `/`, `**` any run (as a whole path component: zero or more components, so `a/**/b`
    /// matches `a/b`, `**/b` matches `b` and `a/**` matches `a`), `?` one character other than
    /// `/`, `[abc]`, `[a-z]`, `[!x]` or `[^x]` one character of (not of) a class (classes never
    /// match `/`), `{a,b,c}` any of the alternatives (nesting allowed), and `\` makes the next
    /// character literal.
    PathGlob,
}

/// How a pattern compares characters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PatternOptions {
    /// Compare ASCII letters without regard to case (other characters compare exactly), as
    /// IAM action names are.
    pub case_insensitive: bool,
}

/// Why a pattern was refused. Messages quote the pattern (cut short when long).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The pattern is the empty string.
    #[error("pattern is empty")]
    Empty,
    /// Longer than [`MAX_PATTERN_BYTES`].
    #[error("pattern {pattern:?} is {len} bytes long; a pattern may be at most 4096 bytes")]
    TooLong {
        /// The start of the pattern.
        pattern: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A `[` class without its `]`.
    #[error("pattern {pattern:?} has an unclosed \"[\"")]
    UnclosedClass {
        /// The pattern.
        pattern: String,
    },
    /// A `{` group without its `}`.
    #[error("pattern {pattern:?} has an unclosed \"{{\"")]
    UnclosedBrace {
        /// The pattern.
        pattern: String,
    },
    /// A `}` with no `{` open.
    #[error("pattern {pattern:?} has a \"}}\" without a \"{{\" before it (write \"\\}}\" for a literal one)")]
    UnopenedBrace {
        /// The pattern.
        pattern: String,
    },
    /// `\` as the last character.
    #[error("pattern {pattern:?} ends with a lone \"\\\" (write \"\\\\\" for a literal backslash)")]
    TrailingBackslash {
        /// The pattern.
        pattern: String,
    },
    /// A class range such as `z-a`.
    #[error("pattern {pattern:?} has the range \"{from}-{to}\" backwards (write \"{to}-{from}\")")]
    ReversedRange {
        /// The pattern.
        pattern: String,
        /// The range's first character.
        from: char,
        /// The range's last character.
        to: char,
    },
    /// `{…}` groups nested deeper than [`MAX_NESTING`].
    #[error("pattern {pattern:?} nests \"{{\" groups more than 32 deep")]
    TooDeep {
        /// The pattern.
        pattern: String,
    },
    /// `{…}` groups multiply out to more than [`MAX_ALTERNATIVES`].
    #[error(
        "pattern {pattern:?} has more than 256 alternatives once its \"{{…}}\" groups are multiplied out; \
         split it into several patterns"
    )]
    TooManyAlternatives {
        /// The pattern.
        pattern: String,
    },
    /// The multiplied-out alternatives are too long together.
    #[error(
        "pattern {pattern:?} is too large once its \"{{…}}\" groups are written out ({positions} positions, \
         at most 4160); use fewer or shorter alternatives"
    )]
    TooLarge {
        /// The pattern.
        pattern: String,
        /// How many positions it would need.
        positions: u64,
    },
}

/// A compiled pattern. Cheap to match, any number of times, from any thread.
///
/// ```
/// use berth_policy::{Pattern, PatternOptions, Syntax};
/// let p = Pattern::new("library/{nginx,redis}-*", Syntax::PathGlob, PatternOptions::default()).unwrap();
/// assert!(p.matches("library/nginx-alpine"));
/// assert!(!p.matches("library/nginx-alpine/extra"));
/// ```
#[derive(Clone)]
pub struct Pattern {
    text: String,
    syntax: Syntax,
    options: PatternOptions,
    nfa: Nfa,
}

impl Pattern {
    /// Compile `text`. Errors say what is wrong in the pattern's own terms.
    pub fn new(text: &str, syntax: Syntax, options: PatternOptions) -> Result<Pattern, PatternError> {
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        if text.len() > MAX_PATTERN_BYTES {
            return Err(PatternError::TooLong { pattern: preview(text), len: text.len() });
        }
        let mut parser = Parser { chars: text.chars().collect(), pos: 0, text, syntax, options, classes: Vec::new() };
        let seq = parser.parse()?;
        let (alternatives, items) = count(&seq);
        if alternatives > MAX_ALTERNATIVES as u64 {
            return Err(PatternError::TooManyAlternatives { pattern: preview(text) });
        }
        let positions = items + alternatives;
        if positions > MAX_POSITIONS as u64 {
            return Err(PatternError::TooLarge { pattern: preview(text), positions });
        }
        let mut sets = Sets::default();
        let lowered: Vec<Lowered> =
            expand(&seq).iter().map(|items| lower(items, syntax, options, &parser.classes, &mut sets)).collect();
        Ok(Pattern { text: text.to_owned(), syntax, options, nfa: Nfa::build(&lowered, &sets) })
    }

    /// Does the whole of `text` match?
    pub fn matches(&self, text: &str) -> bool {
        self.nfa.run(text, &mut 0)
    }

    /// The matcher's work for an input of `input_len` bytes, in *word steps*: one step is a
    /// fixed handful (about ten) of AND/OR/shift operations on one 64-bit state word. It is
    /// `input_len × words` with `words ≤` [`MAX_WORDS`], so at most `input_len × 65` for any
    /// pattern accepted. Not counted: one class lookup per character (a table for ASCII,
    /// a binary search over the pattern's non-ASCII boundaries otherwise) and one final pass
    /// over the words.
    pub fn work(&self, input_len: usize) -> u64 {
        input_len as u64 * self.nfa.words as u64
    }

    /// How many 64-bit words the state has (at most [`MAX_WORDS`]).
    pub fn state_words(&self) -> usize {
        self.nfa.words
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Its syntax.
    pub fn syntax(&self) -> Syntax {
        self.syntax
    }

    /// Its options.
    pub fn options(&self) -> PatternOptions {
        self.options
    }

    /// [`Pattern::matches`], also returning the word steps actually done (for tests of the
    /// bound: never more than [`Pattern::work`]).
    #[doc(hidden)]
    pub fn matches_counting(&self, text: &str) -> (bool, u64) {
        let mut steps = 0;
        let m = self.nfa.run(text, &mut steps);
        (m, steps)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pattern")
            .field("text", &self.text)
            .field("syntax", &self.syntax)
            .field("case_insensitive", &self.options.case_insensitive)
            .finish()
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Two patterns are equal when written alike, with the same syntax and options.
impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.syntax == other.syntax && self.options == other.options
    }
}

impl Eq for Pattern {}

/// Several patterns; text matches the set when it matches any of them.
///
/// ```
/// use berth_policy::{PatternOptions, PatternSet, Syntax};
/// let set = PatternSet::comma_separated("prod-*, web", Syntax::Wildcard, PatternOptions::default()).unwrap();
/// assert!(set.matches("prod-api") && set.matches("web") && !set.matches("dev-api"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PatternSet {
    patterns: Vec<Pattern>,
}

impl PatternSet {
    /// Compile each pattern; the first error is returned.
    pub fn new<'a>(
        patterns: impl IntoIterator<Item = &'a str>,
        syntax: Syntax,
        options: PatternOptions,
    ) -> Result<PatternSet, PatternError> {
        let patterns = patterns.into_iter().map(|p| Pattern::new(p, syntax, options)).collect::<Result<_, _>>()?;
        Ok(PatternSet { patterns })
    }

    /// Compile a comma-separated list (`"prod-*, web"`). Entries are trimmed and blank ones
    /// skipped. For [`Syntax::PathGlob`], commas inside `{…}` or `[…]` or after `\` belong to
    /// the pattern.
    pub fn comma_separated(list: &str, syntax: Syntax, options: PatternOptions) -> Result<PatternSet, PatternError> {
        Self::new(split_list(list, syntax).into_iter().map(str::trim).filter(|p| !p.is_empty()), syntax, options)
    }

    /// Does `text` match any pattern of the set? (`false` for an empty set.)
    pub fn matches(&self, text: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(text))
    }

    /// The patterns.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether the set has no pattern.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The most work [`PatternSet::matches`] does for an input of `input_len` bytes (the sum
    /// over its patterns of [`Pattern::work`]).
    pub fn work(&self, input_len: usize) -> u64 {
        self.patterns.iter().map(|p| p.work(input_len)).sum()
    }
}

fn split_list(list: &str, syntax: Syntax) -> Vec<&str> {
    if syntax == Syntax::Wildcard {
        return list.split(',').collect();
    }
    let (mut out, mut start, mut depth, mut in_class, mut escaped) = (Vec::new(), 0, 0usize, false, false);
    for (i, c) in list.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            '{' if !in_class => depth += 1,
            '}' if !in_class => depth = depth.saturating_sub(1),
            ',' if !in_class && depth == 0 => {
                out.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&list[start..]);
    out
}

fn preview(text: &str) -> String {
    const KEEP: usize = 60;
    match text.char_indices().nth(KEEP) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------
// Character sets

/// Sorted, disjoint, non-adjacent inclusive ranges of code points.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CharSet(Vec<(u32, u32)>);

impl CharSet {
    fn all() -> CharSet {
        CharSet(vec![(0, MAX_CHAR)])
    }

    fn one(c: char) -> CharSet {
        CharSet(vec![(c as u32, c as u32)])
    }

    fn from_ranges(mut r: Vec<(u32, u32)>) -> CharSet {
        r.sort_unstable();
        let mut out: Vec<(u32, u32)> = Vec::with_capacity(r.len());
        for (lo, hi) in r {
            match out.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => out.push((lo, hi)),
            }
        }
        CharSet(out)
    }

    fn contains(&self, c: u32) -> bool {
        let i = self.0.partition_point(|&(lo, _)| lo <= c);
        i > 0 && self.0[i - 1].1 >= c
    }

    fn complement(&self) -> CharSet {
        let mut out = Vec::with_capacity(self.0.len() + 1);
        let mut next = 0u32;
        for &(lo, hi) in &self.0 {
            if lo > next {
                out.push((next, lo - 1));
            }
            next = hi.saturating_add(1);
        }
        if next <= MAX_CHAR && self.0.last().is_none_or(|&(_, hi)| hi < MAX_CHAR) {
            out.push((next, MAX_CHAR));
        }
        CharSet(out)
    }

    fn without(&self, c: char) -> CharSet {
        let c = c as u32;
        let mut out = Vec::with_capacity(self.0.len() + 1);
        for &(lo, hi) in &self.0 {
            if c < lo || c > hi {
                out.push((lo, hi));
                continue;
            }
            if lo < c {
                out.push((lo, c - 1));
            }
            if c < hi {
                out.push((c + 1, hi));
            }
        }
        CharSet(out)
    }

    /// Add the other case of every ASCII letter in the set.
    fn with_ascii_case(&self) -> CharSet {
        let mut r = self.0.clone();
        for c in (b'a'..=b'z').chain(b'A'..=b'Z') {
            if self.contains(c as u32) {
                let o = (c ^ 0x20) as u32;
                r.push((o, o));
            }
        }
        CharSet::from_ranges(r)
    }
}

// ---------------------------------------------------------------------------------------
// Parsing

#[derive(Debug, Clone)]
enum Node {
    Lit(char),
    Any,
    Star,
    DoubleStar,
    Class(usize),
    Alt(Vec<Vec<Node>>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    Lit(char),
    Any,
    Star,
    DoubleStar,
    Class(usize),
}

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    text: &'a str,
    syntax: Syntax,
    options: PatternOptions,
    classes: Vec<CharSet>,
}

impl Parser<'_> {
    fn parse(&mut self) -> Result<Vec<Node>, PatternError> {
        if self.syntax == Syntax::Wildcard {
            return Ok(self
                .chars
                .iter()
                .map(|&c| match c {
                    '*' => Node::Star,
                    '?' => Node::Any,
                    c => Node::Lit(c),
                })
                .collect());
        }
        self.seq(0)
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek();
        self.pos += usize::from(c.is_some());
        c
    }

    fn pattern(&self) -> String {
        preview(self.text)
    }

    /// A sequence, up to the end (`depth == 0`) or to the `,` or `}` ending an alternative.
    fn seq(&mut self, depth: usize) -> Result<Vec<Node>, PatternError> {
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            match c {
                ',' | '}' if depth > 0 => return Ok(out),
                '}' => return Err(PatternError::UnopenedBrace { pattern: self.pattern() }),
                _ => {}
            }
            self.pos += 1;
            out.push(match c {
                '*' => {
                    let mut n = 1;
                    while self.peek() == Some('*') {
                        self.pos += 1;
                        n += 1;
                    }
                    if n == 1 { Node::Star } else { Node::DoubleStar }
                }
                '?' => Node::Any,
                '[' => self.class()?,
                '{' => self.group(depth + 1)?,
                '\\' => {
                    Node::Lit(self.bump().ok_or_else(|| PatternError::TrailingBackslash { pattern: self.pattern() })?)
                }
                c => Node::Lit(c),
            });
        }
        if depth > 0 {
            return Err(PatternError::UnclosedBrace { pattern: self.pattern() });
        }
        Ok(out)
    }

    /// After `{`: alternatives up to the matching `}`.
    fn group(&mut self, depth: usize) -> Result<Node, PatternError> {
        if depth > MAX_NESTING {
            return Err(PatternError::TooDeep { pattern: self.pattern() });
        }
        let mut alts = Vec::new();
        loop {
            alts.push(self.seq(depth)?);
            match self.bump() {
                Some(',') => {}
                Some('}') => return Ok(Node::Alt(alts)),
                _ => return Err(PatternError::UnclosedBrace { pattern: self.pattern() }),
            }
        }
    }

    /// After `[`: members up to the closing `]` (a `]` right after `[`, `[!` or `[^` is a member).
    fn class(&mut self) -> Result<Node, PatternError> {
        let unclosed = |p: &Self| PatternError::UnclosedClass { pattern: p.pattern() };
        let negated = matches!(self.peek(), Some('!' | '^'));
        if negated {
            self.pos += 1;
        }
        let mut ranges = Vec::new();
        let mut first = true;
        loop {
            let c = self.bump().ok_or_else(|| unclosed(self))?;
            if c == ']' && !first {
                break;
            }
            first = false;
            let lo = if c == '\\' { self.bump().ok_or_else(|| unclosed(self))? } else { c };
            let hi = if self.peek() == Some('-') && self.chars.get(self.pos + 1).is_some_and(|&n| n != ']') {
                self.pos += 1;
                let h = self.bump().ok_or_else(|| unclosed(self))?;
                let h = if h == '\\' { self.bump().ok_or_else(|| unclosed(self))? } else { h };
                if h < lo {
                    return Err(PatternError::ReversedRange { pattern: self.pattern(), from: lo, to: h });
                }
                h
            } else {
                lo
            };
            ranges.push((lo as u32, hi as u32));
        }
        let mut set = CharSet::from_ranges(ranges);
        if self.options.case_insensitive {
            set = set.with_ascii_case();
        }
        if negated {
            set = set.complement();
        }
        self.classes.push(set.without('/'));
        Ok(Node::Class(self.classes.len() - 1))
    }
}

/// (alternatives, items summed over all alternatives), saturating well above the limits.
fn count(seq: &[Node]) -> (u64, u64) {
    const CAP: u64 = 1 << 40;
    let (mut n, mut len) = (1u64, 0u64);
    for node in seq {
        let (ne, le) = match node {
            Node::Alt(alts) => alts.iter().map(|a| count(a)).fold((0, 0), |(a, b), (c, d)| (a + c, b + d)),
            _ => (1, 1),
        };
        len = len.saturating_mul(ne).saturating_add(le.saturating_mul(n)).min(CAP);
        n = n.saturating_mul(ne).min(CAP);
    }
    (n, len)
}

/// Multiply `{…}` groups out (callers have checked the size with [`count`]).
fn expand(seq: &[Node]) -> Vec<Vec<Item>> {
    let mut out: Vec<Vec<Item>> = vec![Vec::new()];
    for node in seq {
        let item = match *node {
            Node::Lit(c) => Item::Lit(c),
            Node::Any => Item::Any,
            Node::Star => Item::Star,
            Node::DoubleStar => Item::DoubleStar,
            Node::Class(k) => Item::Class(k),
            Node::Alt(ref alts) => {
                let tails: Vec<Vec<Item>> = alts.iter().flat_map(|a| expand(a)).collect();
                out = out
                    .iter()
                    .flat_map(|head| {
                        tails.iter().map(move |tail| {
                            let mut v = head.clone();
                            v.extend_from_slice(tail);
                            v
                        })
                    })
                    .collect();
                continue;
            }
        };
        out.iter_mut().for_each(|v| v.push(item));
    }
    out
}

// ---------------------------------------------------------------------------------------
// Tokens

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StarKind {
    /// Any run (`*` in Wildcard, `**` in PathGlob).
    All,
    /// Any run without `/` (`*` in PathGlob).
    NoSlash,
    /// `**/` as path components: empty, or any run ending with `/`. It may be left only at
    /// the start of the input or right after a `/`.
    Dirs,
}

#[derive(Debug, Clone, Copy)]
enum Tok {
    One(usize),
    Star(StarKind),
}

struct Lowered {
    toks: Vec<Tok>,
    /// A position before the last token that also accepts (`a/**` matches `a`).
    extra_accept: Option<usize>,
}

#[derive(Default)]
struct Sets {
    sets: Vec<CharSet>,
    index: HashMap<CharSet, usize>,
}

impl Sets {
    fn intern(&mut self, s: CharSet) -> usize {
        if let Some(&i) = self.index.get(&s) {
            return i;
        }
        self.sets.push(s.clone());
        self.index.insert(s, self.sets.len() - 1);
        self.sets.len() - 1
    }
}

fn star_set(kind: StarKind) -> CharSet {
    match kind {
        StarKind::All | StarKind::Dirs => CharSet::all(),
        StarKind::NoSlash => CharSet::all().without('/'),
    }
}

/// One star for two adjacent ones, matching the same language.
fn merge(a: StarKind, b: StarKind) -> StarKind {
    use StarKind::*;
    match (a, b) {
        (NoSlash, NoSlash) => NoSlash,
        (Dirs, Dirs) => Dirs,
        // (empty | …/) then a run without `/` is any run; a run then (empty | …/) is any run.
        (All, _) | (_, All) | (Dirs, NoSlash) => All,
        // A `Dirs` star follows the start, a `/`, or another `Dirs`: never a `NoSlash`.
        (NoSlash, Dirs) => {
            debug_assert!(false, "a **/ component never follows a *");
            All
        }
    }
}

/// Turn one multiplied-out alternative into tokens, with the doublestar component rules:
/// `**` alone between `/`s (or the pattern's ends) matches whole path components.
fn lower(items: &[Item], syntax: Syntax, options: PatternOptions, classes: &[CharSet], sets: &mut Sets) -> Lowered {
    let mut toks: Vec<Tok> = Vec::with_capacity(items.len());
    let mut extra_accept = None;
    let (mut absorb_slash, mut last_was_slash_token) = (false, false);
    let is_slash = |j: usize| items.get(j) == Some(&Item::Lit('/'));
    let push_star = |toks: &mut Vec<Tok>, k: StarKind| match toks.last_mut() {
        Some(Tok::Star(prev)) => *prev = merge(*prev, k),
        _ => toks.push(Tok::Star(k)),
    };
    for (i, &item) in items.iter().enumerate() {
        let slash_token = item == Item::Lit('/') && !absorb_slash;
        match item {
            Item::Lit('/') if absorb_slash => absorb_slash = false,
            Item::Lit(c) => {
                let set = if options.case_insensitive { CharSet::one(c).with_ascii_case() } else { CharSet::one(c) };
                toks.push(Tok::One(sets.intern(set)));
            }
            Item::Any => {
                let set = if syntax == Syntax::PathGlob { CharSet::all().without('/') } else { CharSet::all() };
                toks.push(Tok::One(sets.intern(set)));
            }
            Item::Class(k) => toks.push(Tok::One(sets.intern(classes[k].clone()))),
            Item::Star if syntax == Syntax::Wildcard => push_star(&mut toks, StarKind::All),
            Item::Star => push_star(&mut toks, StarKind::NoSlash),
            Item::DoubleStar => {
                let alone = (i == 0 || is_slash(i - 1)) && (i + 1 == items.len() || is_slash(i + 1));
                if !alone || items.len() == 1 {
                    push_star(&mut toks, StarKind::All);
                } else if i + 1 == items.len() {
                    // `P/**`: also matches `P` itself, when the `/` is a token of its own.
                    if i >= 2 && last_was_slash_token {
                        extra_accept = Some(toks.len() - 1);
                    }
                    push_star(&mut toks, StarKind::All);
                } else {
                    // `**/` takes the `/` that follows it.
                    push_star(&mut toks, StarKind::Dirs);
                    absorb_slash = true;
                }
            }
        }
        last_was_slash_token = slash_token;
    }
    Lowered { toks, extra_accept }
}

// ---------------------------------------------------------------------------------------
// The automaton

#[derive(Clone)]
struct Nfa {
    words: usize,
    init: Vec<u64>,
    accept: Vec<u64>,
    /// Positions a star may be skipped from, after any character.
    skip: Vec<u64>,
    /// Those plus `Dirs` stars, which may be left only after a `/` (or at the start).
    skip_after_slash: Vec<u64>,
    /// Per character class: `one` (words), then `star` (words).
    masks: Vec<u64>,
    ascii: [u32; 128],
    /// Starts of the non-ASCII intervals (the first is 128) and their class.
    bounds: Vec<u32>,
    bound_class: Vec<u32>,
}

fn set_bit(v: &mut [u64], p: usize) {
    v[p / 64] |= 1 << (p % 64);
}

impl Nfa {
    fn build(seqs: &[Lowered], sets: &Sets) -> Nfa {
        let all = sets.sets.len();
        let mut sets_all: Vec<CharSet> = sets.sets.clone();
        let star_sets = [star_set(StarKind::All), star_set(StarKind::NoSlash)];
        sets_all.extend(star_sets.iter().cloned());
        let positions: usize = seqs.iter().map(|s| s.toks.len() + 1).sum();
        let words = positions.div_ceil(64).max(1);
        let zero = vec![0u64; words];
        let (mut start, mut accept, mut skip, mut skip_after_slash) =
            (zero.clone(), zero.clone(), zero.clone(), zero.clone());
        // Per set: the positions whose token consumes one character of it, and those that stay.
        let mut one_at = vec![zero.clone(); sets_all.len()];
        let mut star_at = vec![zero.clone(); sets_all.len()];
        let mut base = 0;
        for s in seqs {
            set_bit(&mut start, base);
            set_bit(&mut accept, base + s.toks.len());
            if let Some(p) = s.extra_accept {
                set_bit(&mut accept, base + p);
            }
            for (i, t) in s.toks.iter().enumerate() {
                let p = base + i;
                match *t {
                    Tok::One(k) => set_bit(&mut one_at[k], p),
                    Tok::Star(kind) => {
                        let k = if kind == StarKind::NoSlash { all + 1 } else { all };
                        set_bit(&mut star_at[k], p);
                        set_bit(&mut skip_after_slash, p);
                        if kind != StarKind::Dirs {
                            set_bit(&mut skip, p);
                        }
                    }
                }
            }
            base += s.toks.len() + 1;
        }
        // Cut the code points into intervals at every set boundary.
        let mut cuts: Vec<u32> = vec![0, 128];
        for s in &sets_all {
            for &(lo, hi) in &s.0 {
                cuts.push(lo);
                if hi < MAX_CHAR {
                    cuts.push(hi + 1);
                }
            }
        }
        cuts.sort_unstable();
        cuts.dedup();
        let used: Vec<usize> =
            (0..sets_all.len()).filter(|&k| one_at[k].iter().chain(&star_at[k]).any(|&w| w != 0)).collect();
        let mut masks: Vec<u64> = Vec::new();
        let mut ids: HashMap<Vec<u64>, u32> = HashMap::new();
        let mut class_of_cut = Vec::with_capacity(cuts.len());
        for &c in &cuts {
            let mut m = vec![0u64; 2 * words];
            for &k in &used {
                if sets_all[k].contains(c) {
                    let (one, star) = m.split_at_mut(words);
                    one.iter_mut().zip(&one_at[k]).for_each(|(a, b)| *a |= b);
                    star.iter_mut().zip(&star_at[k]).for_each(|(a, b)| *a |= b);
                }
            }
            let next = ids.len() as u32;
            let id = *ids.entry(m.clone()).or_insert_with(|| {
                masks.extend_from_slice(&m);
                next
            });
            class_of_cut.push(id);
        }
        let mut ascii = [0u32; 128];
        for (c, slot) in ascii.iter_mut().enumerate() {
            *slot = class_of_cut[cuts.partition_point(|&x| x <= c as u32) - 1];
        }
        let first_high = cuts.partition_point(|&x| x < 128);
        let mut nfa = Nfa {
            words,
            init: zero.clone(),
            accept,
            skip,
            skip_after_slash,
            masks,
            ascii,
            bounds: cuts[first_high..].to_vec(),
            bound_class: class_of_cut[first_high..].to_vec(),
        };
        // At the start a `Dirs` star may be skipped, as after a `/`.
        let mut carry = 0;
        for (i, w) in start.iter().enumerate() {
            let a = w & nfa.skip_after_slash[i];
            nfa.init[i] = w | (a << 1) | carry;
            carry = a >> 63;
        }
        nfa
    }

    fn class_of(&self, c: char) -> usize {
        let c = c as u32;
        if c < 128 {
            return self.ascii[c as usize] as usize;
        }
        self.bound_class[self.bounds.partition_point(|&x| x <= c) - 1] as usize
    }

    fn run(&self, text: &str, steps: &mut u64) -> bool {
        let w = self.words;
        let mut state = [0u64; MAX_WORDS];
        let d = &mut state[..w];
        d.copy_from_slice(&self.init);
        for ch in text.chars() {
            let m = &self.masks[self.class_of(ch) * 2 * w..][..2 * w];
            let (one, star) = m.split_at(w);
            let skip = if ch == '/' { &self.skip_after_slash } else { &self.skip };
            let (mut c1, mut c2, mut any) = (0u64, 0u64, 0u64);
            for i in 0..w {
                let old = d[i];
                let a = old & one[i];
                let n = (a << 1) | c1 | (old & star[i]);
                c1 = a >> 63;
                let b = n & skip[i];
                let v = n | (b << 1) | c2;
                c2 = b >> 63;
                d[i] = v;
                any |= v;
            }
            *steps += w as u64;
            if any == 0 {
                return false;
            }
        }
        d.iter().zip(&self.accept).any(|(a, b)| a & b != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wild(p: &str, t: &str) -> bool {
        Pattern::new(p, Syntax::Wildcard, PatternOptions::default()).unwrap().matches(t)
    }

    fn wild_ci(p: &str, t: &str) -> bool {
        Pattern::new(p, Syntax::Wildcard, PatternOptions { case_insensitive: true }).unwrap().matches(t)
    }

    fn path(p: &str, t: &str) -> bool {
        Pattern::new(p, Syntax::PathGlob, PatternOptions::default()).unwrap().matches(t)
    }

    fn path_err(p: &str) -> String {
        Pattern::new(p, Syntax::PathGlob, PatternOptions::default()).unwrap_err().to_string()
    }

    #[test]
    fn wildcard_table() {
        for (p, t, want) in [
            ("*", "", true),
            ("*", "a/b/c", true),
            ("ecr:*", "ecr:PutImage", true),
            ("ecr:Batch*", "ecr:PutImage", false),
            ("a*b*c", "abxxbc", true),
            ("a*b*c", "abxxb", false),
            ("team/*/api", "team/a/b/api", true),
            ("?", "", false),
            ("?", "a", true),
            ("?", "ab", false),
            ("??", "a/", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("exact", "exac", false),
            ("[a]", "[a]", true),
            ("[a]", "a", false),
            ("{a,b}", "{a,b}", true),
            ("a\\*", "a\\xyz", true),
            ("***", "x", true),
            ("a**?", "ab", true),
            ("*?*?*", "a", false),
            ("*?*?*", "ab", true),
        ] {
            assert_eq!(wild(p, t), want, "{p:?} vs {t:?}");
        }
    }

    #[test]
    fn wildcard_case_insensitive_is_ascii_only() {
        assert!(wild_ci("ecr:batch*", "ecr:BatchGetImage"));
        assert!(wild_ci("ECR:?UTIMAGE", "ecr:PutImage"));
        assert!(!wild("ecr:batch*", "ecr:BatchGetImage"));
        assert!(!wild_ci("é", "É"), "non-ASCII letters compare exactly");
        assert!(wild_ci("é", "é"));
    }

    #[test]
    fn non_ascii_input() {
        assert!(wild("?", "é"));
        assert!(wild("?", "😀"));
        assert!(!wild("?", "é😀"));
        assert!(wild("??", "é😀"));
        assert!(wild("*é", "caféé"));
        assert!(wild("caf?", "café"));
        assert!(!wild("caf??", "café"));
        assert!(wild("*?", "€"));
        assert!(path("[é-ê]x", "êx"));
        assert!(!path("[é-ê]x", "ëx"));
        assert!(path("[!é]", "ë"));
        assert!(!path("[!é]", "é"));
        assert!(path("?/*", "日/本語"));
        assert!(!path("?", "日本"));
        assert!(path("{日,本}語", "本語"));
    }

    #[test]
    fn path_glob_slashes() {
        for (p, t, want) in [
            ("*", "a", true),
            ("*", "a/b", false),
            ("*", "", true),
            ("library/*", "library/nginx", true),
            ("library/*", "library/a/b", false),
            ("library/**", "library/a/b", true),
            ("library/**", "library/", true),
            ("library/**", "library", true),
            ("library/**", "libraryx", false),
            ("**", "", true),
            ("**", "a/b/c", true),
            ("**/b", "b", true),
            ("**/b", "a/b", true),
            ("**/b", "x/y/b", true),
            ("**/b", "ab", false),
            ("a/**/b", "a/b", true),
            ("a/**/b", "a/x/b", true),
            ("a/**/b", "a/x/y/b", true),
            ("a/**/b", "a/xb", false),
            ("a/**/b", "ab", false),
            ("a/**/*", "a/x", true),
            ("a/**/*", "a/x/y", true),
            ("a**b", "a/x/b", true),
            ("a**", "a/x", true),
            ("**/*.json", "x.json", true),
            ("**/*.json", "d/x.json", true),
            ("?", "/", false),
            ("a?b", "a/b", false),
            ("a/**/**/b", "a/b", true),
            ("a/**/**/b", "a/x/y/b", true),
            ("**/**", "a/b", true),
        ] {
            assert_eq!(path(p, t), want, "{p:?} vs {t:?}");
        }
    }

    #[test]
    fn path_glob_classes_alternatives_escapes() {
        for (p, t, want) in [
            ("[abc]", "b", true),
            ("[abc]", "d", false),
            ("[a-z]1", "q1", true),
            ("[a-z]1", "Q1", false),
            ("[!a-c]", "d", true),
            ("[!a-c]", "b", false),
            ("[^a]", "b", true),
            ("[!a]", "/", false),
            ("[/]", "/", false),
            ("[]a]", "]", true),
            ("[!]]", "]", false),
            ("[!]]", "x", true),
            ("[a-]", "-", true),
            ("[\\]]", "]", true),
            ("v[0-9].[0-9]", "v1.2", true),
            ("{a,b,c}", "b", true),
            ("{a,b,c}", "d", false),
            ("{a,}x", "x", true),
            ("{a,}x", "ax", true),
            ("{}x", "x", true),
            ("{prod,dev}-{api,web}", "dev-web", true),
            ("{prod,dev}-{api,web}", "dev-db", false),
            ("{a,b{c,d}}e", "bde", true),
            ("{a,b{c,d}}e", "be", false),
            ("{a/**,c}", "a", true),
            ("{a/**,c}", "a/b/c", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("\\{a\\}", "{a}", true),
            ("a\\,b", "a,b", true),
            ("\\\\", "\\", true),
            ("[*]", "*", true),
        ] {
            assert_eq!(path(p, t), want, "{p:?} vs {t:?}");
        }
        let ci = |p: &str, t: &str| {
            Pattern::new(p, Syntax::PathGlob, PatternOptions { case_insensitive: true }).unwrap().matches(t)
        };
        assert!(ci("[a-c]X", "Bx") && ci("{Prod,dev}", "PROD") && !ci("[!a]", "A"));
    }

    #[test]
    fn errors_in_the_users_words() {
        assert_eq!(path_err("{a,b"), r#"pattern "{a,b" has an unclosed "{""#);
        assert_eq!(path_err("[ab"), r#"pattern "[ab" has an unclosed "[""#);
        assert_eq!(path_err("[]"), r#"pattern "[]" has an unclosed "[""#);
        assert_eq!(path_err("a}"), r#"pattern "a}" has a "}" without a "{" before it (write "\}" for a literal one)"#);
        assert_eq!(path_err("a\\"), r#"pattern "a\\" ends with a lone "\" (write "\\" for a literal backslash)"#);
        assert_eq!(path_err("[z-a]"), r#"pattern "[z-a]" has the range "z-a" backwards (write "a-z")"#);
        assert_eq!(path_err(""), "pattern is empty");
        let long = "a".repeat(4097);
        assert!(path_err(&long).ends_with("is 4097 bytes long; a pattern may be at most 4096 bytes"));
        assert!(path_err(&long).len() < 200, "the message quotes only the start");
        assert!(path_err(&"{a,b}".repeat(9)).contains("more than 256 alternatives"));
        assert!(Pattern::new(&"{a,b}".repeat(8), Syntax::PathGlob, PatternOptions::default()).is_ok());
        assert!(
            Pattern::new(&format!("{{{},b}}", "x".repeat(4000)), Syntax::PathGlob, PatternOptions::default()).is_ok()
        );
        assert!(path_err(&format!("{}{{a,b}}", "x".repeat(2100))).contains("too large once"));
        assert!(path_err(&format!("{}a{}", "{".repeat(33), "}".repeat(33))).contains("more than 32 deep"));
        assert!(Pattern::new(&"a".repeat(4096), Syntax::Wildcard, PatternOptions::default()).is_ok());
        assert!(Pattern::new("{a,b", Syntax::Wildcard, PatternOptions::default()).is_ok(), "literal in Wildcard");
    }

    #[test]
    fn sets_and_lists() {
        let o = PatternOptions::default();
        let s = PatternSet::comma_separated(" prod-*, web ,,", Syntax::Wildcard, o).unwrap();
        assert_eq!(s.patterns().len(), 2);
        assert!(s.matches("prod-x") && s.matches("web") && !s.matches("dev"));
        let s = PatternSet::comma_separated("{a,b}/*, c[,]d, e\\,f", Syntax::PathGlob, o).unwrap();
        let texts: Vec<&str> = s.patterns().iter().map(Pattern::as_str).collect();
        assert_eq!(texts, ["{a,b}/*", "c[,]d", "e\\,f"]);
        assert!(s.matches("b/x") && s.matches("c,d") && s.matches("e,f"));
        assert!(PatternSet::comma_separated("", Syntax::Wildcard, o).unwrap().is_empty());
        assert!(!PatternSet::default().matches("x"));
        assert!(PatternSet::comma_separated("a,{b", Syntax::PathGlob, o).is_err());
    }

    #[test]
    fn adjacent_stars_leave_no_adjacent_skips() {
        for p in ["a***b", "**/*", "**/**/*", "*/**/*", "{*,**}{**,*}", "a/**/**", "?*?**?", "**/{*,**/}x"] {
            for syntax in [Syntax::Wildcard, Syntax::PathGlob] {
                let n = Pattern::new(p, syntax, PatternOptions::default()).unwrap().nfa;
                for (i, w) in n.skip_after_slash.iter().enumerate() {
                    assert_eq!(w & (w << 1), 0, "{p:?} word {i}");
                    if i > 0 {
                        assert!(!(n.skip_after_slash[i - 1] >> 63 == 1 && w & 1 == 1), "{p:?} word {i}");
                    }
                }
            }
        }
    }

    #[test]
    fn equality_and_debug_use_the_text() {
        let o = PatternOptions::default();
        let a = Pattern::new("a*", Syntax::Wildcard, o).unwrap();
        assert_eq!(a, a.clone());
        assert_ne!(a, Pattern::new("a*", Syntax::PathGlob, o).unwrap());
        assert_eq!(format!("{a:?}"), r#"Pattern { text: "a*", syntax: Wildcard, case_insensitive: false }"#);
        assert_eq!(a.to_string(), "a*");
    }
}
