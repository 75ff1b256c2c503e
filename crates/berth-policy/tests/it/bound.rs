//! "No pattern over 4 KiB can take more than 1 ms per match", shown two ways: a deterministic
//! bound on the matcher's work (word steps ≤ input length × 65 for every accepted pattern,
//! random or adversarial), and wall-clock time of adversarial 4 KiB patterns against
//! 255-character inputs (minimum of 3 runs, so a busy CI machine's scheduling noise does not
//! count).

use std::time::{Duration, Instant};

use berth_policy::pattern::{MAX_PATTERN_BYTES, MAX_WORDS};
use berth_policy::{Pattern, PatternOptions, Syntax};
use proptest::prelude::*;

const SYNTAXES: [Syntax; 2] = [Syntax::Wildcard, Syntax::PathGlob];

/// Repeat `unit` to fill at most 4 KiB, then close with `tail`.
fn fill(head: &str, unit: &str, tail: &str) -> String {
    let room = MAX_PATTERN_BYTES - head.len() - tail.len();
    format!("{head}{}{tail}", unit.repeat(room / unit.len()))
}

/// Patterns built to hurt a backtracking or a naive matcher, each close to 4 KiB.
fn adversarial() -> Vec<String> {
    let mut v = vec![
        fill("", "*a", "*"),
        fill("", "*a", "b"),
        fill("", "**?", ""),
        fill("", "*?", ""),
        fill("", "?", ""),
        fill("", "a", ""),
        fill("", "**/", "x"),
        fill("", "a/**/", "b"),
        fill("", "*/", ""),
        fill("", "[!a]*", ""),
        fill("", "[a-z]", ""),
        fill("", "é", ""),
        fill("", "日*", ""),
        fill("", "[!é]", ""),
        fill("", "\\*", ""),
        // One class holding most of the pattern.
        fill("[", "a-b", "]*"),
        fill("[!", "x\\]", "]*"),
        // 256 one-character alternatives, and two long ones.
        format!("{{{}a}}*", "a,".repeat(255)),
        format!("{{{},{}}}", "*a".repeat(1000), "*b".repeat(1000)),
        format!("{}*b", "{a,*}".repeat(8)),
        format!("{}{}", "{a,b}".repeat(8), "*a".repeat(1000)),
        // Nested groups, as deep as allowed.
        format!("{}a*{}", "{".repeat(32), "}".repeat(32)),
    ];
    // Every distinct ASCII character in a class, repeated.
    let all: String = (b' '..=b'~').map(char::from).filter(|c| !"[]\\!^-".contains(*c)).collect();
    v.push(fill("", &format!("[{all}]"), ""));
    v
}

fn inputs() -> Vec<String> {
    vec![
        "a".repeat(255),
        format!("{}b", "a".repeat(254)),
        "ab/".repeat(85),
        "é".repeat(255),
        "日".repeat(255),
        "/".repeat(255),
        String::new(),
    ]
}

fn assert_bound(p: &Pattern, input: &str) {
    assert!(p.state_words() <= MAX_WORDS);
    let n = input.len();
    assert!(p.work(n) <= n as u64 * 65, "{p:?}: {} > {n} × 65", p.work(n));
    let (_, steps) = p.matches_counting(input);
    assert!(steps <= p.work(n), "{p:?} did {steps} steps, more than its bound {}", p.work(n));
}

#[test]
fn adversarial_patterns_stay_within_the_work_bound() {
    let mut compiled = 0;
    for text in adversarial() {
        assert!(text.len() <= MAX_PATTERN_BYTES, "{} bytes", text.len());
        for syntax in SYNTAXES {
            for case_insensitive in [false, true] {
                let Ok(p) = Pattern::new(&text, syntax, PatternOptions { case_insensitive }) else { continue };
                compiled += 1;
                for input in inputs() {
                    assert_bound(&p, &input);
                }
            }
        }
    }
    assert!(compiled >= 80, "only {compiled} of the adversarial patterns compiled");
}

fn min_of_3(p: &Pattern, input: &str) -> Duration {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(p.matches(std::hint::black_box(input)));
            t.elapsed()
        })
        .min()
        .expect("three runs")
}

#[test]
fn adversarial_patterns_match_255_characters_within_1ms() {
    let mut worst = (Duration::ZERO, String::new());
    for text in adversarial() {
        for syntax in SYNTAXES {
            let Ok(p) = Pattern::new(&text, syntax, PatternOptions::default()) else { continue };
            for input in inputs().into_iter().filter(|i| !i.is_empty()) {
                let input: String = input.chars().take(255).collect();
                let t = min_of_3(&p, &input);
                if t > worst.0 {
                    worst = (t, format!("{:?}…/{syntax:?} vs {:?}…", &text[..20.min(text.len())], &input[..6]));
                }
                assert!(t < Duration::from_millis(1), "{p:?} took {t:?} on {input:?}");
            }
        }
    }
    eprintln!("slowest adversarial match: {:?} ({})", worst.0, worst.1);
}

/// Pieces random patterns are made of: the engine's operators and a few literals.
const PIECES: [&str; 16] =
    ["a", "b", "/", "*", "?", "**", "[ab]", "[!a]", "[a-z]", "{a,b}", "{*a,?}", "é", "日", "\\*", "*/", "**/"];

fn random_pattern(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(0..PIECES.len(), 1..2000).prop_map(move |ix| {
        let mut s = String::new();
        for i in ix {
            if s.len() + PIECES[i].len() > max {
                break;
            }
            s.push_str(PIECES[i]);
        }
        s
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// (a) Any accepted pattern of at most 4 KiB: work ≤ input length × 65, and the matcher
    /// does no more than its stated work.
    #[test]
    fn random_patterns_stay_within_the_work_bound(
        text in random_pattern(MAX_PATTERN_BYTES),
        input in "[ab/é日]{0,255}",
        wildcard: bool,
    ) {
        let syntax = if wildcard { Syntax::Wildcard } else { Syntax::PathGlob };
        // Too many alternatives is refused, which is fine: no matcher, no work.
        if let Ok(p) = Pattern::new(&text, syntax, PatternOptions::default()) {
            assert_bound(&p, &input);
            assert_bound(&p, &"a".repeat(255));
        }
    }

    /// (b) A 4 KiB pattern made of one adversarial unit repeated, with random literals mixed
    /// in, against a 255-character input: under 1 ms (minimum of 3 runs).
    #[test]
    fn adversarial_4k_patterns_match_within_1ms(
        unit in prop::sample::select(vec!["*a", "**?", "*?", "[!a]*", "a/**/", "*/", "{a,*}", "?é*"]),
        noise in prop::collection::vec(prop::sample::select(vec!["a", "b", "/", "é"]), 0..8),
        input in "[ab/é]{255}",
        wildcard: bool,
    ) {
        let syntax = if wildcard { Syntax::Wildcard } else { Syntax::PathGlob };
        let text = fill(&noise.concat(), unit, &noise.concat());
        if let Ok(p) = Pattern::new(&text, syntax, PatternOptions::default()) {
            for input in [input.as_str(), &"a".repeat(255)] {
                let t = min_of_3(&p, input);
                prop_assert!(t < Duration::from_millis(1), "{:?}… took {:?}", &text[..20], t);
            }
        }
    }
}
