//! A project's settings, typed.
//!
//! Harbor keeps project settings as a map of strings (`"public": "true"`, `"severity":
//! "high"`). Berth parses that map once, where it enters — the management API, or a row read
//! from the database — into [`ProjectSettings`]; nothing below those edges sees the strings.
//! A bad value is a [`SettingError`] naming the key and the values it accepts.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Who may see and pull from a project without being a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Visibility {
    /// Members only.
    #[default]
    Private,
    /// Anybody, anonymous users included, may see the project and pull.
    Public,
}

/// The lowest severity that blocks pulls when deployment prevention is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum SeverityThreshold {
    /// Any finding, even one without a severity.
    None,
    /// Low and above (Berth's default, as Harbor's).
    #[default]
    Low,
    /// Medium and above.
    Medium,
    /// High and above.
    High,
    /// Critical only.
    Critical,
}

impl SeverityThreshold {
    /// Harbor's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SeverityThreshold::None => "none",
            SeverityThreshold::Low => "low",
            SeverityThreshold::Medium => "medium",
            SeverityThreshold::High => "high",
            SeverityThreshold::Critical => "critical",
        }
    }
}

impl FromStr for SeverityThreshold {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "none" | "negligible" | "unknown" => SeverityThreshold::None,
            "low" => SeverityThreshold::Low,
            "medium" => SeverityThreshold::Medium,
            "high" => SeverityThreshold::High,
            "critical" => SeverityThreshold::Critical,
            _ => return Err(()),
        })
    }
}

impl fmt::Display for SeverityThreshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A project's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectSettings {
    /// Public or private.
    pub visibility: Visibility,
    /// Scan every artifact pushed (`auto_scan`).
    pub auto_scan: bool,
    /// Generate an SBOM for every artifact pushed (`auto_sbom_generation`).
    pub auto_sbom: bool,
    /// Only scan on push the repositories matching one of these `*` patterns (empty: all).
    pub scan_filters: Vec<String>,
    /// Refuse pulls of artifacts with findings at or above `severity` (`prevent_vul`).
    pub prevent_vulnerable: bool,
    /// The threshold of `prevent_vulnerable`.
    pub severity: SeverityThreshold,
    /// Refuse pulls of artifacts that have not been scanned (`prevent_unscanned`).
    pub prevent_unscanned: bool,
    /// Only signed artifacts may be pulled (`enable_content_trust`; stored, not yet enforced).
    pub content_trust: bool,
    /// Only cosign-signed artifacts may be pulled (`enable_content_trust_cosign`; stored).
    pub content_trust_cosign: bool,
    /// Which CVE allowlist applies (`reuse_sys_cve_allowlist`): `Some(true)` the system's,
    /// `Some(false)` the project's own, unset both.
    pub reuse_sys_cve_allowlist: Option<bool>,
}

impl Default for ProjectSettings {
    fn default() -> Self {
        ProjectSettings {
            visibility: Visibility::Private,
            auto_scan: false,
            auto_sbom: false,
            scan_filters: Vec::new(),
            prevent_vulnerable: false,
            severity: SeverityThreshold::default(),
            prevent_unscanned: false,
            content_trust: false,
            content_trust_cosign: false,
            reuse_sys_cve_allowlist: None,
        }
    }
}

/// A setting that was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    /// Not a setting Berth knows.
    #[error("unknown setting {key:?}; the settings are {}", ProjectSettings::KEYS.join(", "))]
    UnknownKey {
        /// The key given.
        key: String,
    },
    /// A value the setting does not take.
    #[error("{key}: {value:?} is not {expected}")]
    BadValue {
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// What it takes, in words.
        expected: &'static str,
    },
}

fn flag(key: &str, value: &str) -> Result<bool, SettingError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(SettingError::BadValue { key: key.into(), value: value.into(), expected: "true or false" }),
    }
}

impl ProjectSettings {
    /// Harbor's names of the settings, as the management API takes them.
    pub const KEYS: &'static [&'static str] = &[
        "public",
        "auto_scan",
        "auto_sbom_generation",
        "scan_filters",
        "prevent_vul",
        "severity",
        "prevent_unscanned",
        "enable_content_trust",
        "enable_content_trust_cosign",
        "reuse_sys_cve_allowlist",
    ];

    /// Is the project public?
    pub fn public(&self) -> bool {
        self.visibility == Visibility::Public
    }

    /// Set one setting from Harbor's key and text form.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), SettingError> {
        match key {
            "public" => {
                self.visibility = if flag(key, value)? { Visibility::Public } else { Visibility::Private };
            }
            "auto_scan" => self.auto_scan = flag(key, value)?,
            "auto_sbom_generation" => self.auto_sbom = flag(key, value)?,
            "prevent_vul" => self.prevent_vulnerable = flag(key, value)?,
            "prevent_unscanned" => self.prevent_unscanned = flag(key, value)?,
            "enable_content_trust" => self.content_trust = flag(key, value)?,
            "enable_content_trust_cosign" => self.content_trust_cosign = flag(key, value)?,
            "reuse_sys_cve_allowlist" => self.reuse_sys_cve_allowlist = Some(flag(key, value)?),
            "severity" => {
                self.severity = value.parse().map_err(|()| SettingError::BadValue {
                    key: key.into(),
                    value: value.into(),
                    expected: "one of none, low, medium, high, critical",
                })?;
            }
            "scan_filters" => {
                let filters: Vec<String> =
                    value.split(',').map(str::trim).filter(|f| !f.is_empty()).map(str::to_owned).collect();
                if filters.iter().any(|f| f.len() > 256) || filters.len() > 64 {
                    return Err(SettingError::BadValue {
                        key: key.into(),
                        value: value.chars().take(64).collect(),
                        expected: "at most 64 comma-separated patterns of at most 256 characters",
                    });
                }
                self.scan_filters = filters;
            }
            other => return Err(SettingError::UnknownKey { key: other.into() }),
        }
        Ok(())
    }

    /// Settings from Harbor's map; the first bad entry is the error.
    pub fn from_map<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, SettingError> {
        let mut s = ProjectSettings::default();
        for (k, v) in entries {
            s.set(k, v)?;
        }
        Ok(s)
    }

    /// Every setting as Harbor's map of strings.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let b = |v: bool| v.to_string();
        let mut map = BTreeMap::from([
            ("public".into(), b(self.public())),
            ("auto_scan".into(), b(self.auto_scan)),
            ("auto_sbom_generation".into(), b(self.auto_sbom)),
            ("scan_filters".into(), self.scan_filters.join(",")),
            ("prevent_vul".into(), b(self.prevent_vulnerable)),
            ("severity".into(), self.severity.as_str().into()),
            ("prevent_unscanned".into(), b(self.prevent_unscanned)),
            ("enable_content_trust".into(), b(self.content_trust)),
            ("enable_content_trust_cosign".into(), b(self.content_trust_cosign)),
        ]);
        if let Some(reuse) = self.reuse_sys_cve_allowlist {
            map.insert("reuse_sys_cve_allowlist".into(), b(reuse));
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let mut s = ProjectSettings::default();
        for (k, v) in
            [("public", "true"), ("severity", "high"), ("prevent_vul", "true"), ("scan_filters", " prod-*, web ,")]
        {
            s.set(k, v).unwrap();
        }
        assert!(s.public());
        assert_eq!(s.severity, SeverityThreshold::High);
        assert_eq!(s.scan_filters, ["prod-*", "web"]);
        let map = s.to_map();
        let back = ProjectSettings::from_map(map.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(back, s);
        assert_eq!(map.len(), ProjectSettings::KEYS.len() - 1, "reuse_sys_cve_allowlist unset");
        assert_eq!(s.set("public", "yes").unwrap_err().to_string(), "public: \"yes\" is not true or false");
        assert_eq!(
            s.set("severity", "urgent").unwrap_err().to_string(),
            "severity: \"urgent\" is not one of none, low, medium, high, critical"
        );
        assert!(s.set("colour", "blue").unwrap_err().to_string().starts_with("unknown setting \"colour\""));
    }
}
