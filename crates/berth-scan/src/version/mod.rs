//! Version orderings per ecosystem, and the ecosystems of OSV.
//!
//! Every comparator parses first: a version that does not parse is *unparsable*
//! (`None`), which a scan counts and reports; it never fails a scan.

mod apk;
mod dpkg;
mod maven;
mod pep440;
mod rpm;
mod semver;

use std::cmp::Ordering;

pub use apk::ApkVersion;
pub use dpkg::DpkgVersion;
pub use maven::{GemVersion, MavenVersion};
pub use pep440::{Pep440, normalize_name as pep503_name};
pub use rpm::RpmVersion;
pub use semver::SemVer;

/// A version ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Debian (`dpkg`).
    Dpkg,
    /// Alpine (`apk`).
    Apk,
    /// Red Hat family (`rpm`).
    Rpm,
    /// Python (PEP 440).
    Pep440,
    /// SemVer 2.0 (npm, crates.io, Go).
    SemVer,
    /// Maven.
    Maven,
    /// RubyGems.
    Gem,
}

/// A version parsed under some scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    /// Debian.
    Dpkg(DpkgVersion),
    /// Alpine.
    Apk(ApkVersion),
    /// RPM.
    Rpm(RpmVersion),
    /// PEP 440.
    Pep440(Pep440),
    /// SemVer.
    SemVer(SemVer),
    /// Maven.
    Maven(MavenVersion),
    /// RubyGems.
    Gem(GemVersion),
}

impl Scheme {
    /// Parse `s` under this scheme; `None` when it is not a valid version here.
    pub fn parse(self, s: &str) -> Option<Version> {
        Some(match self {
            Scheme::Dpkg => Version::Dpkg(DpkgVersion::parse(s)?),
            Scheme::Apk => Version::Apk(ApkVersion::parse(s)?),
            Scheme::Rpm => Version::Rpm(RpmVersion::parse(s)?),
            Scheme::Pep440 => Version::Pep440(Pep440::parse(s)?),
            Scheme::SemVer => Version::SemVer(SemVer::parse(s)?),
            Scheme::Maven => Version::Maven(MavenVersion::parse(s)?),
            Scheme::Gem => Version::Gem(GemVersion::parse(s)?),
        })
    }

    /// Compare two version strings; `None` when either does not parse.
    pub fn compare(self, a: &str, b: &str) -> Option<Ordering> {
        self.parse(a)?.partial_cmp(&self.parse(b)?)
    }
}

impl PartialOrd for Version {
    /// Versions of different schemes do not compare.
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        use Version as V;
        Some(match (self, other) {
            (V::Dpkg(a), V::Dpkg(b)) => a.cmp(b),
            (V::Apk(a), V::Apk(b)) => a.cmp(b),
            (V::Rpm(a), V::Rpm(b)) => a.cmp(b),
            (V::Pep440(a), V::Pep440(b)) => a.cmp(b),
            (V::SemVer(a), V::SemVer(b)) => a.cmp(b),
            (V::Maven(a), V::Maven(b)) => a.cmp(b),
            (V::Gem(a), V::Gem(b)) => a.cmp(b),
            _ => return None,
        })
    }
}

/// An OSV ecosystem Berth matches, with its release where it has one (`Debian:12`,
/// `Alpine:v3.19`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ecosystem {
    /// Debian, with the release (`12`), if given.
    Debian(Option<String>),
    /// Ubuntu, with the release.
    Ubuntu(Option<String>),
    /// Alpine, with the branch (`v3.19`, `edge`).
    Alpine(Option<String>),
    /// Red Hat family (Red Hat, Rocky Linux, AlmaLinux, openSUSE, SUSE), by name and release.
    Rpm(String, Option<String>),
    /// Python.
    PyPI,
    /// npm.
    Npm,
    /// Rust crates.
    CratesIo,
    /// Go modules (and `stdlib`, `toolchain`).
    Go,
    /// Java.
    Maven,
    /// Ruby.
    RubyGems,
}

impl Ecosystem {
    /// Parse an OSV `ecosystem` string; `None` for ecosystems Berth does not match.
    pub fn parse(s: &str) -> Option<Ecosystem> {
        // `Ubuntu:22.04:LTS`, `Ubuntu:Pro:18.04:LTS`: the release is the numeric part.
        let (name, release) = match s.split_once(':') {
            Some((n, r)) => {
                let r = r.split(':').find(|p| p.starts_with(|c: char| c.is_ascii_digit())).unwrap_or(r);
                (n, Some(r.to_owned()).filter(|r| !r.is_empty()))
            }
            None => (s, None),
        };
        Some(match name {
            "Debian" => Ecosystem::Debian(release),
            "Ubuntu" => Ecosystem::Ubuntu(release),
            "Alpine" => Ecosystem::Alpine(release),
            "Red Hat" | "Rocky Linux" | "AlmaLinux" | "openSUSE" | "SUSE" | "Mageia" => {
                Ecosystem::Rpm(name.to_owned(), release)
            }
            "PyPI" => Ecosystem::PyPI,
            "npm" => Ecosystem::Npm,
            "crates.io" => Ecosystem::CratesIo,
            "Go" => Ecosystem::Go,
            "Maven" => Ecosystem::Maven,
            "RubyGems" => Ecosystem::RubyGems,
            _ => return None,
        })
    }

    /// The version ordering of this ecosystem's `ECOSYSTEM` ranges and packages.
    pub fn scheme(&self) -> Scheme {
        match self {
            Ecosystem::Debian(_) | Ecosystem::Ubuntu(_) => Scheme::Dpkg,
            Ecosystem::Alpine(_) => Scheme::Apk,
            Ecosystem::Rpm(..) => Scheme::Rpm,
            Ecosystem::PyPI => Scheme::Pep440,
            Ecosystem::Npm | Ecosystem::CratesIo | Ecosystem::Go => Scheme::SemVer,
            Ecosystem::Maven => Scheme::Maven,
            Ecosystem::RubyGems => Scheme::Gem,
        }
    }

    /// The same ecosystem without its release (the key advisories are indexed under).
    pub fn family(&self) -> Ecosystem {
        match self {
            Ecosystem::Debian(_) => Ecosystem::Debian(None),
            Ecosystem::Ubuntu(_) => Ecosystem::Ubuntu(None),
            Ecosystem::Alpine(_) => Ecosystem::Alpine(None),
            Ecosystem::Rpm(n, _) => Ecosystem::Rpm(n.clone(), None),
            other => other.clone(),
        }
    }

    /// The release, for OS ecosystems.
    pub fn release(&self) -> Option<&str> {
        match self {
            Ecosystem::Debian(r) | Ecosystem::Ubuntu(r) | Ecosystem::Alpine(r) | Ecosystem::Rpm(_, r) => r.as_deref(),
            _ => None,
        }
    }

    /// A package name as the ecosystem compares names (PEP 503 for PyPI; case-insensitive,
    /// `-` = `_` for crates.io; as is elsewhere).
    pub fn normalize_name(&self, name: &str) -> String {
        match self {
            Ecosystem::PyPI => pep503_name(name),
            Ecosystem::CratesIo => name.to_ascii_lowercase().replace('_', "-"),
            _ => name.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::{Equal as EQ, Greater as GT, Less as LT};

    fn check(scheme: Scheme, cases: &[(&str, &str, Ordering)]) {
        for (a, b, want) in cases {
            assert_eq!(scheme.compare(a, b), Some(*want), "{scheme:?}: {a} vs {b}");
            assert_eq!(scheme.compare(b, a), Some(want.reverse()), "{scheme:?}: {b} vs {a}");
        }
    }

    fn invalid(scheme: Scheme, versions: &[&str]) {
        for v in versions {
            assert!(scheme.parse(v).is_none(), "{scheme:?} should refuse {v:?}");
        }
    }

    #[test]
    fn dpkg() {
        check(
            Scheme::Dpkg,
            &[
                ("3.0.11-1~deb12u2", "3.0.11-1", LT),
                ("1:1.0", "2.0", GT),
                ("1.0", "1.0-0", EQ),
                ("1.0~rc1", "1.0", LT),
                ("1.0~~", "1.0~", LT),
                ("1.0a", "1.0", GT),
                ("1.0a", "1.0+", LT),
                ("1.0.10", "1.0.9", GT),
                ("2.36-9+deb12u4", "2.36-9+deb12u3", GT),
                ("2.36-9+deb12u10", "2.36-9+deb12u9", GT),
                ("1.2.3-1", "1.2.3-1+b1", LT),
                ("0:1.2", "1.2", EQ),
                ("1.001", "1.1", EQ),
                ("7.88.1-10+deb12u5", "7.88.1-10+deb12u12", LT),
                ("1.0-1ubuntu1", "1.0-1", GT),
            ],
        );
        invalid(Scheme::Dpkg, &["", "a1.0", "x:1.0", "1.0 beta", "1.0-a b"]);
    }

    #[test]
    fn apk() {
        // The ordering chain from the vulndb README, pairwise.
        let chain = ["1.2.3_rc1", "1.2.3", "1.2.3-r1", "1.2.3_p1", "1.2.3a", "1.2.3.1"];
        for w in chain.windows(2) {
            check(Scheme::Apk, &[(w[0], w[1], LT)]);
        }
        let suffixes = ["_alpha", "_beta", "_pre", "_rc", "", "_cvs", "_svn", "_git", "_hg", "_p"];
        for w in suffixes.windows(2) {
            check(Scheme::Apk, &[(&format!("1.0{}", w[0]), &format!("1.0{}", w[1]), LT)]);
        }
        check(
            Scheme::Apk,
            &[
                ("1.05", "1.5", LT),
                ("1.5", "1.10", LT),
                ("3.1.4-r5", "3.1.4-r10", LT),
                ("1.0_rc1", "1.0_rc2", LT),
                ("2.0", "2.0-r0", EQ),
                ("1.2.3_p1-r2", "1.2.3_p2", LT),
                ("3.0.12-r1", "3.1.0-r0", LT),
            ],
        );
        invalid(Scheme::Apk, &["", "abc", "1.0_foo", "1..2", "2021-03-27-r5"]);
    }

    #[test]
    fn rpm() {
        check(
            Scheme::Rpm,
            &[
                ("1.0-1", "1.0-2", LT),
                ("1:1.0-1", "2.0-1", GT),
                ("1.0~rc1-1", "1.0-1", LT),
                ("1.0^git1-1", "1.0-1", GT),
                ("1.0^git1-1", "1.0.1-1", LT),
                ("1.0a-1", "1.0-1", GT),
                ("1.0.1-1", "1.0a-1", GT),
                ("2.5.0-1.el9", "2.5.0-1.el9_2", LT),
                ("1.01-1", "1.1-1", EQ),
                ("3.0.7-24.el9", "3.0.7-6.el9", GT),
            ],
        );
        invalid(Scheme::Rpm, &["", "x:1.0", "1.0 1"]);
    }

    #[test]
    fn pep440() {
        check(
            Scheme::Pep440,
            &[
                ("1.0", "1.0.0", EQ),
                ("1.0.dev0", "1.0a1", LT),
                ("1.0a1", "1.0b1", LT),
                ("1.0b1", "1.0rc1", LT),
                ("1.0rc1", "1.0", LT),
                ("1.0", "1.0.post1", LT),
                ("1.0.post1.dev1", "1.0.post1", LT),
                ("1.0a1.dev1", "1.0a1", LT),
                ("1!0.1", "2.0", GT),
                ("1.0+local.1", "1.0", GT),
                ("1.0+abc", "1.0+1", LT),
                ("1.0-1", "1.0.post1", EQ),
                ("1.0.ALPHA1", "1.0a1", EQ),
                ("1.0c1", "1.0rc1", EQ),
                ("1.0-preview2", "1.0rc2", EQ),
                ("v2.0", "2.0", EQ),
                ("2.10", "2.9", GT),
                ("0.9.9", "0.10", LT),
                ("1.0.post1", "1.1.dev1", LT),
            ],
        );
        invalid(Scheme::Pep440, &["", "2019-09-12x", "0.2.0-n653", "1.0+", "one", "1.0.foo"]);
        assert_eq!(pep503_name("PyYAML"), "pyyaml");
        assert_eq!(pep503_name("zope.interface"), "zope-interface");
        assert_eq!(pep503_name("Foo__Bar-.baz"), "foo-bar-baz");
    }

    #[test]
    fn semver() {
        check(
            Scheme::SemVer,
            &[
                ("1.0.0-alpha", "1.0.0-alpha.1", LT),
                ("1.0.0-alpha.1", "1.0.0-alpha.beta", LT),
                ("1.0.0-alpha.beta", "1.0.0-beta", LT),
                ("1.0.0-beta.2", "1.0.0-beta.11", LT),
                ("1.0.0-rc.1", "1.0.0", LT),
                ("1.0.0+build.5", "1.0.0", EQ),
                ("v0.7.0", "0.7.0", EQ),
                ("go1.20", "1.20.0", EQ),
                ("1.20.0-0", "1.20.0", LT),
                ("1.20.0-0", "1.19.9", GT),
                ("2.0.0", "10.0.0", LT),
                ("1.2", "1.2.0", EQ),
                ("0.0.0-20230101120000-abcdef123456", "0.0.1", LT),
            ],
        );
        invalid(Scheme::SemVer, &["", "1.2.3.4", "x.y.z", "1.0.0-", "1.0.0-a..b", "1.a.0"]);
    }

    #[test]
    fn maven_and_gems() {
        check(
            Scheme::Maven,
            &[
                ("1.0-alpha-1", "1.0-beta-1", LT),
                ("1.0-beta-1", "1.0-rc1", LT),
                ("1.0-rc1", "1.0-SNAPSHOT", LT),
                ("1.0-SNAPSHOT", "1.0", LT),
                ("1.0", "1.0.0", EQ),
                ("1.0", "1-ga", EQ),
                ("1.0", "1.0-sp1", LT),
                ("1.0.1", "1.0-sp1", GT),
                ("2.12.7.1", "2.12.7", GT),
                ("2.9.10.8", "2.10.0", LT),
                ("1.2.3.Final", "1.2.3", EQ),
            ],
        );
        check(
            Scheme::Gem,
            &[
                ("1.0.0", "1.0", EQ),
                ("1.0.a", "1.0", LT),
                ("1.0.0.pre1", "1.0.0", LT),
                ("1.0.0.pre1", "1.0.0.pre2", LT),
                ("1.10", "1.9", GT),
                ("6.1.7.1", "6.1.7", GT),
            ],
        );
        invalid(Scheme::Gem, &["", "a.b"]);
    }

    #[test]
    fn ecosystems() {
        assert_eq!(Ecosystem::parse("Debian:12"), Some(Ecosystem::Debian(Some("12".into()))));
        assert_eq!(Ecosystem::parse("Alpine:v3.19").unwrap().release(), Some("v3.19"));
        assert_eq!(Ecosystem::parse("Alpine:v3.19").unwrap().family(), Ecosystem::Alpine(None));
        assert_eq!(Ecosystem::parse("crates.io").unwrap().scheme(), Scheme::SemVer);
        assert_eq!(Ecosystem::parse("Rocky Linux:9").unwrap().scheme(), Scheme::Rpm);
        assert_eq!(Ecosystem::parse("Hackage"), None);
        assert_eq!(Ecosystem::parse("Ubuntu:22.04:LTS").unwrap().release(), Some("22.04"));
        assert_eq!(Ecosystem::parse("Ubuntu:Pro:18.04:LTS").unwrap().release(), Some("18.04"));
        assert_eq!(Ecosystem::PyPI.normalize_name("Django_Rest.Framework"), "django-rest-framework");
        assert_eq!(Ecosystem::CratesIo.normalize_name("Foo_Bar"), "foo-bar");
        // Different schemes never compare.
        let a = Scheme::Dpkg.parse("1.0").unwrap();
        let b = Scheme::SemVer.parse("1.0.0").unwrap();
        assert_eq!(a.partial_cmp(&b), None);
    }
}
