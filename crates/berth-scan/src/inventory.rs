//! The inventory of an image: its layers applied in order (whiteouts and opaque directories
//! honoured), then the package databases and manifests found in the result.
//!
//! Layers stream through once (gzip, zstd or plain tar); only the files that can describe
//! packages are kept in memory: `var/lib/dpkg/status` (and `status.d/`), `lib/apk/db/installed`,
//! `etc/os-release`, Python `*.dist-info/METADATA` and `*.egg-info`, npm
//! `node_modules/<name>/package.json` and `package-lock.json`, `Cargo.lock`, RubyGems
//! `specifications/*.gemspec`, Java archives, and ELF executables (for Go build info and
//! `cargo auditable` data). Nothing is unpacked to disk.

use std::collections::BTreeMap;
use std::io::{self, Read};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::db::Package;
use crate::version::Ecosystem;

/// Largest file kept for inspection (archives and executables).
const MAX_CAPTURE: u64 = 128 * 1024 * 1024;
/// Most bytes kept for one image, all files together; past it, files are skipped and counted
/// as unreadable (a layer of many large executables cannot exhaust memory). With the parsing
/// on top, a scan stays well under 512 MiB whatever the image.
const MAX_CAPTURE_TOTAL: u64 = 256 * 1024 * 1024;
/// Most bytes read from one entry of a JAR (metadata files are small; a nested JAR is kept
/// whole): whatever an entry's header declares, a zip bomb stops here.
const MAX_JAR_ENTRY: u64 = 32 * 1024 * 1024;
/// Most packages one image's inventory holds (a Debian image has a few hundred, the
/// largest real images tens of thousands); past it the rest count as unreadable, so the
/// inventory, its report and their JSON stay bounded.
const MAX_PACKAGES: usize = 50_000;
/// Metadata files inside a JAR (pom.properties, MANIFEST.MF) are read up to this.
const MAX_JAR_METADATA: u64 = 1024 * 1024;

/// What kind of package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Debian package.
    Deb,
    /// Alpine package.
    Apk,
    /// RPM package.
    Rpm,
    /// Python distribution.
    Python,
    /// npm package.
    Npm,
    /// Rust crate.
    Cargo,
    /// Go module.
    Go,
    /// The Go standard library a binary was built with.
    GoStdlib,
    /// Java archive.
    Maven,
    /// Ruby gem.
    Gem,
}

impl Kind {
    /// The PURL type.
    pub fn purl_type(self) -> &'static str {
        match self {
            Kind::Deb => "deb",
            Kind::Apk => "apk",
            Kind::Rpm => "rpm",
            Kind::Python => "pypi",
            Kind::Npm => "npm",
            Kind::Cargo => "cargo",
            Kind::Go | Kind::GoStdlib => "golang",
            Kind::Maven => "maven",
            Kind::Gem => "gem",
        }
    }

    /// Is it an operating-system package?
    pub fn is_os(self) -> bool {
        matches!(self, Kind::Deb | Kind::Apk | Kind::Rpm)
    }
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InstalledPackage {
    /// What kind.
    pub kind: Kind,
    /// Name (for Maven `group:artifact`).
    pub name: String,
    /// Installed version.
    pub version: String,
    /// Source package (Debian) or origin (Alpine), when it differs or is known.
    pub source_name: Option<String>,
    /// Source version (Debian, when a binNMU makes it differ).
    pub source_version: Option<String>,
    /// The layer it came from (index in the manifest, 0 = base).
    pub layer: usize,
    /// The file that recorded it.
    pub path: String,
    /// Architecture, where recorded.
    pub arch: Option<String>,
    /// Licence, where recorded.
    pub license: Option<String>,
    /// How the package is known, when not by its own installed metadata.
    #[serde(default, skip_serializing_if = "Evidence::is_installed")]
    pub evidence: Evidence,
    /// The revision of the version-control checkout it was built from (a Go main module's
    /// `vcs.revision`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

/// How a package is known to be in the image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Evidence {
    /// Its own metadata is installed (a dpkg status entry, a `node_modules/*/package.json`, …).
    #[default]
    Installed,
    /// Only a lock file names it (a `package-lock.json` with no `node_modules` beside it, a
    /// `Cargo.lock`): a production install or build would have it. Dev-only entries of an npm
    /// lock are not reported.
    Lockfile,
}

impl Evidence {
    /// Is the package's own metadata installed?
    pub fn is_installed(&self) -> bool {
        *self == Evidence::Installed
    }
}

/// The operating system of the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsRelease {
    /// `ID` of os-release (`debian`, `alpine`, `ubuntu`).
    pub id: String,
    /// `VERSION_ID` (`12`, `3.19.1`).
    pub version_id: String,
    /// `PRETTY_NAME`.
    pub pretty_name: String,
}

impl OsRelease {
    /// The OSV ecosystem of this distribution's packages (`Debian:12`, `Alpine:v3.19`).
    pub fn ecosystem(&self) -> Option<Ecosystem> {
        match self.id.as_str() {
            "debian" => Some(Ecosystem::Debian(self.version_id.split('.').next().map(str::to_owned))),
            "ubuntu" => Some(Ecosystem::Ubuntu(Some(self.version_id.clone()))),
            "rhel" | "centos" | "rocky" | "almalinux" | "fedora" | "ol" | "amzn" | "opensuse-leap" | "sles" => {
                let name = match self.id.as_str() {
                    "rhel" | "centos" | "ol" | "amzn" | "fedora" => "Red Hat",
                    "rocky" => "Rocky Linux",
                    "almalinux" => "AlmaLinux",
                    "sles" => "SUSE",
                    _ => "openSUSE",
                };
                Some(Ecosystem::Rpm(name.to_owned(), self.version_id.split('.').next().map(str::to_owned)))
            }
            "alpine" => {
                let mut p = self.version_id.split('.');
                let release = match (p.next(), p.next()) {
                    (Some(a), Some(b)) if a.bytes().all(|c| c.is_ascii_digit()) => format!("v{a}.{b}"),
                    _ => "edge".to_owned(),
                };
                Some(Ecosystem::Alpine(Some(release)))
            }
            _ => None,
        }
    }
}

/// The inventory of one image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// The distribution, if the image has one.
    pub os: Option<OsRelease>,
    /// Packages, sorted.
    pub packages: Vec<InstalledPackage>,
    /// Package files that could not be read (counted, never fatal).
    pub unreadable: usize,
}

impl Inventory {
    /// The packages as advisories name them: `(index into packages, package to match)`.
    /// Debian packages match by source name and version; Alpine by origin; RPM by package
    /// name and EVR; OS packages only when the distribution is known.
    pub fn to_match(&self) -> Vec<(usize, Package)> {
        let os = self.os.as_ref().and_then(OsRelease::ecosystem);
        let mut out = Vec::new();
        for (i, p) in self.packages.iter().enumerate() {
            if p.version == GO_DEVEL {
                continue; // a Go main module built from a checkout: no version to compare
            }
            let ecosystem = match p.kind {
                Kind::Deb | Kind::Apk | Kind::Rpm => match &os {
                    Some(e) => e.clone(),
                    None => continue,
                },
                Kind::Python => Ecosystem::PyPI,
                Kind::Npm => Ecosystem::Npm,
                Kind::Cargo => Ecosystem::CratesIo,
                Kind::Go | Kind::GoStdlib => Ecosystem::Go,
                Kind::Maven => Ecosystem::Maven,
                Kind::Gem => Ecosystem::RubyGems,
            };
            // Debian advisories name source packages, Alpine's origins; RPM distributions'
            // OSV records name binary packages.
            let name = match p.kind {
                Kind::Deb | Kind::Apk => p.source_name.clone().unwrap_or_else(|| p.name.clone()),
                _ => p.name.clone(),
            };
            let version = p.source_version.clone().unwrap_or_else(|| p.version.clone());
            out.push((i, Package { ecosystem, name, version }));
        }
        out
    }

    /// The package URL of a package in the purl specification's canonical form
    /// (`pkg:deb/debian/libssl3@3.0.11-1~deb12u1?arch=amd64&distro=debian-12`): names
    /// normalised as each type requires (PyPI per PEP 503, npm lowercase), Go versions with
    /// their `v`, RPM epochs as a qualifier, qualifiers sorted, everything but RFC 3986's
    /// unreserved characters and `:` percent-encoded.
    pub fn purl(&self, p: &InstalledPackage) -> String {
        const UNRESERVED: &percent_encoding::AsciiSet =
            &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b':');
        let enc = |s: &str| percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string();
        let (namespace, name) = match p.kind {
            Kind::Deb | Kind::Apk | Kind::Rpm => (self.os.as_ref().map(|o| o.id.clone()), p.name.clone()),
            Kind::Maven => match p.name.split_once(':') {
                Some((g, a)) => (Some(g.to_owned()), a.to_owned()),
                None => (None, p.name.clone()),
            },
            Kind::Npm => match p.name.strip_prefix('@').and_then(|n| n.split_once('/')) {
                Some((scope, n)) => (Some(format!("@{}", scope.to_lowercase())), n.to_lowercase()),
                None => (None, p.name.to_lowercase()),
            },
            Kind::Python => (None, crate::version::pep503_name(&p.name)),
            Kind::GoStdlib => (None, "stdlib".to_owned()),
            Kind::Go => match p.name.rsplit_once('/') {
                Some((ns, n)) => (Some(ns.to_owned()), n.to_owned()),
                None => (None, p.name.clone()),
            },
            _ => (None, p.name.clone()),
        };
        let mut s = format!("pkg:{}/", p.kind.purl_type());
        if let Some(ns) = namespace {
            let parts: Vec<String> = ns
                .split('/')
                .map(|x| match x.strip_prefix('@') {
                    Some(scope) => format!("%40{}", enc(scope)),
                    None => enc(x),
                })
                .collect();
            s.push_str(&parts.join("/"));
            s.push('/');
        }
        s.push_str(&enc(&name));
        s.push('@');
        // An RPM epoch is a qualifier (the deb type keeps it in the version, as dpkg does).
        let (epoch, version) = match (p.kind, p.version.split_once(':')) {
            (Kind::Rpm, Some((e, v))) if e.bytes().all(|b| b.is_ascii_digit()) => (Some(e), v.to_owned()),
            // Go module versions are stored without their `v` (for matching); PURLs carry it.
            (Kind::Go | Kind::GoStdlib, _) if p.version != GO_DEVEL && !p.version.starts_with('v') => {
                (None, format!("v{}", p.version))
            }
            _ => (None, p.version.clone()),
        };
        s.push_str(&enc(&version));
        let mut q = Vec::new();
        if let Some(a) = &p.arch {
            q.push(format!("arch={}", enc(a)));
        }
        if p.kind.is_os()
            && let Some(o) = &self.os
        {
            q.push(format!("distro={}-{}", enc(&o.id), enc(&o.version_id)));
        }
        if let Some(e) = epoch {
            q.push(format!("epoch={e}"));
        }
        if !q.is_empty() {
            s.push('?');
            s.push_str(&q.join("&"));
        }
        s
    }
}

/// A file kept from the layers.
#[derive(Debug, Clone)]
struct Captured {
    layer: usize,
    /// Shared by every application of its layer (`Bytes::from(Vec)` takes the buffer, no copy).
    data: bytes::Bytes,
}

/// What one layer does to the stack: the package-describing files it adds, and what it
/// deletes (whiteouts, replacements) or clears (opaque directories). Read once per layer
/// digest, applied as often as the layer appears, so an image repeating a layer thousands
/// of times costs one read.
#[derive(Debug, Default)]
pub struct LayerDelta {
    added: BTreeMap<String, Captured>,
    deleted: Vec<String>,
    opaque: Vec<String>,
}

/// Applies layers in order and keeps the files that describe packages.
#[derive(Default)]
pub struct LayerStack {
    files: BTreeMap<String, Captured>,
    unreadable: usize,
    captured_bytes: u64,
}

/// Which files to keep, by path (without a leading `/` or `./`).
fn wanted(path: &str, executable: bool) -> bool {
    const EXACT: &[&str] = &[
        "var/lib/dpkg/status",
        "lib/apk/db/installed",
        "etc/os-release",
        "usr/lib/os-release",
        "etc/alpine-release",
        "etc/debian_version",
    ];
    if EXACT.contains(&path) || path.starts_with("var/lib/dpkg/status.d/") || is_rpmdb(path) {
        return true;
    }
    let file = path.rsplit('/').next().unwrap_or(path);
    if path.ends_with(".dist-info/METADATA") || path.ends_with(".egg-info/PKG-INFO") || path.ends_with(".egg-info") {
        return true;
    }
    if file == "package.json" {
        // node_modules/<name>/package.json or node_modules/@scope/<name>/package.json
        let parts: Vec<&str> = path.split('/').collect();
        let n = parts.len();
        return (n >= 3 && parts[n - 3] == "node_modules")
            || (n >= 4 && parts[n - 4] == "node_modules" && parts[n - 3].starts_with('@'));
    }
    if (file == "package-lock.json" || file == "Cargo.lock") && !path.contains("/node_modules/") {
        return true;
    }
    if file.ends_with(".gemspec") && path.contains("/specifications/") {
        return true;
    }
    if file.ends_with(".jar") || file.ends_with(".war") || file.ends_with(".ear") {
        return true;
    }
    executable
}

/// The RPM database (SQLite, rpm 4.16 and later).
pub fn is_rpmdb(path: &str) -> bool {
    path == "var/lib/rpm/rpmdb.sqlite" || path == "usr/lib/sysimage/rpm/rpmdb.sqlite"
}

fn clean(path: &str) -> String {
    let p = path.trim_start_matches("./").trim_start_matches('/');
    p.trim_end_matches('/').to_owned()
}

/// Open a layer blob: gzip, zstd or plain tar, recognised by magic bytes.
pub fn decompress<'a>(mut r: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut magic = [0u8; 4];
    let mut n = 0;
    while n < 4 {
        match r.read(&mut magic[n..])? {
            0 => break,
            k => n += k,
        }
    }
    let head = io::Cursor::new(magic[..n].to_vec()).chain(r);
    Ok(if magic[..n].starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(head))
    } else if magic[..n] == [0x28, 0xb5, 0x2f, 0xfd] {
        Box::new(ruzstd::decoding::StreamingDecoder::new(head).map_err(io::Error::other)?)
    } else {
        Box::new(head)
    })
}

impl LayerStack {
    /// An empty stack.
    pub fn new() -> LayerStack {
        LayerStack::default()
    }

    /// Apply layer `index` (a tar stream, compressed or not) on top of the earlier ones.
    pub fn apply(&mut self, index: usize, blob: impl Read) -> io::Result<()> {
        let delta = self.read_layer(blob)?;
        self.apply_delta(index, &delta);
        Ok(())
    }

    /// Read a layer (a tar stream, compressed or not) into what it changes, counting its
    /// captured bytes against this stack's limit.
    pub fn read_layer(&mut self, blob: impl Read) -> io::Result<LayerDelta> {
        let mut archive = tar::Archive::new(decompress(blob)?);
        let mut added: BTreeMap<String, Captured> = BTreeMap::new();
        let mut deleted: Vec<String> = Vec::new();
        let mut opaque: Vec<String> = Vec::new();
        for entry in archive.entries()? {
            let mut e = entry?;
            let path = clean(&String::from_utf8_lossy(&e.path_bytes()));
            let (dir, file) = match path.rsplit_once('/') {
                Some((d, f)) => (d.to_owned(), f),
                None => (String::new(), path.as_str()),
            };
            if file == ".wh..wh..opq" {
                opaque.push(dir);
                continue;
            }
            if let Some(name) = file.strip_prefix(".wh.") {
                deleted.push(if dir.is_empty() { name.to_owned() } else { format!("{dir}/{name}") });
                continue;
            }
            let kind = e.header().entry_type();
            if !kind.is_file() {
                // A directory or link replaces a file of the same name, from below or from
                // earlier in this layer (the runtime extracts the last entry).
                if !kind.is_dir() {
                    added.remove(&path);
                    deleted.push(path.clone());
                }
                continue;
            }
            let size = e.header().size().unwrap_or(0);
            let exec = e.header().mode().unwrap_or(0) & 0o111 != 0;
            if size > MAX_CAPTURE || !wanted(&path, exec) {
                added.remove(&path);
                deleted.push(path);
                continue;
            }
            if self.captured_bytes + size > MAX_CAPTURE_TOTAL {
                self.unreadable += 1;
                added.remove(&path);
                deleted.push(path);
                continue;
            }
            let mut data = Vec::with_capacity(size as usize);
            if exec && !wanted(&path, false) {
                // an executable: keep it only if it is ELF
                let mut magic = [0u8; 4];
                let n = e.read(&mut magic)?;
                if n < 4 || magic != *b"\x7fELF" {
                    added.remove(&path);
                    deleted.push(path);
                    continue;
                }
                data.extend_from_slice(&magic);
            }
            e.read_to_end(&mut data)?;
            self.captured_bytes += data.len() as u64;
            // The layer index is set when the delta is applied.
            added.insert(path, Captured { layer: 0, data: data.into() });
        }
        Ok(LayerDelta { added, deleted, opaque })
    }

    /// Apply a layer read by [`LayerStack::read_layer`] as layer `index`.
    pub fn apply_delta(&mut self, index: usize, delta: &LayerDelta) {
        // Whiteouts and replacements remove what lower layers had (not this layer's files).
        for d in &delta.opaque {
            if d.is_empty() {
                self.files.clear();
            } else {
                self.remove_below(&format!("{d}/"));
            }
        }
        for p in &delta.deleted {
            self.files.remove(p);
            self.remove_below(&format!("{p}/"));
        }
        self.files
            .extend(delta.added.iter().map(|(p, c)| (p.clone(), Captured { layer: index, data: c.data.clone() })));
    }

    /// The RPM database of the stacked filesystem, if any: `(layer, path, SQLite file bytes)`.
    /// Reading SQLite is the caller's (this crate has no database engine); each row's header
    /// blob then goes to [`rpm_header`].
    pub fn rpm_database(&self) -> Option<(usize, &str, &[u8])> {
        self.files.iter().find(|(p, _)| is_rpmdb(p)).map(|(p, f)| (f.layer, p.as_str(), &f.data[..]))
    }

    /// Forget every kept file under `prefix` (a range query: layers have many files).
    fn remove_below(&mut self, prefix: &str) {
        let doomed: Vec<String> = self
            .files
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.files.remove(&k);
        }
    }

    /// Read the package databases of the stacked filesystem.
    pub fn inventory(&self) -> Inventory {
        let mut inv = Inventory { os: self.os_release(), ..Default::default() };
        let mut unreadable = self.unreadable;
        for (path, f) in &self.files {
            // Borrowed when the file is valid UTF-8 (no copy of a large status file).
            let text = || String::from_utf8_lossy(&f.data);
            let found = if path == "var/lib/dpkg/status" || path.starts_with("var/lib/dpkg/status.d/") {
                parse_dpkg(&text(), f.layer, path)
            } else if path == "lib/apk/db/installed" {
                parse_apk(&text(), f.layer, path)
            } else if path.ends_with(".dist-info/METADATA")
                || path.ends_with(".egg-info/PKG-INFO")
                || path.ends_with(".egg-info")
            {
                parse_python(&text(), f.layer, path).map(|p| vec![p])
            } else if is_rpmdb(path) {
                continue; // read by the caller through rpm_database()
            } else if path.ends_with("/package.json") {
                parse_package_json(&f.data, f.layer, path).map(|p| vec![p])
            } else if path == "package-lock.json" || path.ends_with("/package-lock.json") {
                parse_package_lock(&f.data, f.layer, path)
            } else if path.ends_with("Cargo.lock") {
                parse_cargo_lock(&text(), f.layer, path)
            } else if path.ends_with(".gemspec") {
                parse_gemspec_name(path, f.layer).map(|p| vec![p])
            } else if path.ends_with(".jar") || path.ends_with(".war") || path.ends_with(".ear") {
                parse_jar(&f.data, f.layer, path, 0)
            } else if f.data.starts_with(b"\x7fELF") {
                let mut v = parse_go_buildinfo(&f.data, f.layer, path);
                v.extend(parse_cargo_auditable(&f.data, f.layer, path));
                Some(v)
            } else {
                continue;
            };
            match found {
                Some(list) => inv.packages.extend(list),
                None => unreadable += 1,
            }
            if inv.packages.len() > MAX_PACKAGES {
                // No real image comes near this; a crafted one is cut here (and says so).
                inv.packages.truncate(MAX_PACKAGES);
                unreadable += 1;
                break;
            }
        }
        lock_or_tree(&mut inv.packages);
        inv.packages.sort();
        inv.packages
            .dedup_by(|a, b| a.kind == b.kind && a.name == b.name && a.version == b.version && a.path == b.path);
        inv.unreadable = unreadable;
        inv
    }

    fn os_release(&self) -> Option<OsRelease> {
        let text = ["etc/os-release", "usr/lib/os-release"].iter().find_map(|p| self.files.get(*p))?;
        let mut fields = BTreeMap::new();
        for line in String::from_utf8_lossy(&text.data).lines() {
            if let Some((k, v)) = line.split_once('=') {
                fields.insert(k.trim().to_owned(), v.trim().trim_matches('"').to_owned());
            }
        }
        let mut version_id = fields.get("VERSION_ID").cloned().unwrap_or_default();
        // Alpine's point release is in /etc/alpine-release.
        if let Some(a) = self.files.get("etc/alpine-release") {
            let v = String::from_utf8_lossy(&a.data).trim().to_owned();
            if !v.is_empty() {
                version_id = v;
            }
        }
        Some(OsRelease {
            id: fields.get("ID").cloned().unwrap_or_default(),
            version_id,
            pretty_name: fields.get("PRETTY_NAME").cloned().unwrap_or_default(),
        })
    }
}

/// A `package-lock.json` next to an installed `node_modules` tree says nothing the tree does
/// not (and may list what `--omit=dev` left out): the tree's `package.json` files are what is
/// installed, and the lock's entries go. A lock alone stays (its entries marked as such).
fn lock_or_tree(packages: &mut Vec<InstalledPackage>) {
    let lock_dir = |p: &InstalledPackage| -> Option<String> {
        (p.kind == Kind::Npm).then(|| p.path.strip_suffix("package-lock.json").map(str::to_owned)).flatten()
    };
    let trees: std::collections::BTreeSet<String> = packages
        .iter()
        .filter(|p| p.kind == Kind::Npm && p.path.ends_with("/package.json"))
        .filter_map(|p| p.path.split_once("node_modules/").map(|(dir, _)| dir.to_owned()))
        .collect();
    packages.retain(|p| !lock_dir(p).is_some_and(|d| trees.contains(&d)));
}

fn locked(p: InstalledPackage) -> InstalledPackage {
    InstalledPackage { evidence: Evidence::Lockfile, ..p }
}

/// The version Go stamps on a main module built from a checkout without a version.
pub const GO_DEVEL: &str = "(devel)";

fn pkg(kind: Kind, name: &str, version: &str, layer: usize, path: &str) -> InstalledPackage {
    InstalledPackage {
        kind,
        name: name.to_owned(),
        version: version.to_owned(),
        source_name: None,
        source_version: None,
        layer,
        path: path.to_owned(),
        arch: None,
        license: None,
        evidence: Evidence::Installed,
        revision: None,
    }
}

/// Paragraphs of `Key: value` lines (continuation lines start with a space).
/// Deb822 paragraphs (`Key: value`, continuation lines, blank-line separated), one at a time:
/// a status file of hundreds of thousands of entries is never held parsed all at once.
fn paragraphs(text: &str) -> impl Iterator<Item = BTreeMap<String, String>> + '_ {
    let mut lines = text.lines();
    std::iter::from_fn(move || {
        let mut cur: BTreeMap<String, String> = BTreeMap::new();
        let mut last: Option<String> = None;
        for line in lines.by_ref() {
            if line.trim().is_empty() {
                if !cur.is_empty() {
                    return Some(cur);
                }
                last = None;
                continue;
            }
            if line.starts_with([' ', '\t']) {
                // Continuation lines (descriptions) are not read by any parser: skip them.
                if let Some(k) = &last
                    && k != "Description"
                    && let Some(v) = cur.get_mut(k)
                {
                    v.push('\n');
                    v.push_str(line.trim());
                }
                continue;
            }
            if let Some((k, v)) = line.split_once(':') {
                cur.insert(k.trim().to_owned(), v.trim().to_owned());
                last = Some(k.trim().to_owned());
            }
        }
        (!cur.is_empty()).then_some(cur)
    })
}

fn parse_dpkg(text: &str, layer: usize, path: &str) -> Option<Vec<InstalledPackage>> {
    let mut out = Vec::new();
    for p in paragraphs(text) {
        if out.len() > MAX_PACKAGES {
            break;
        }
        let (Some(name), Some(version)) = (p.get("Package"), p.get("Version")) else { continue };
        // status.d files (distroless) have no Status; dpkg's own file must say installed.
        if let Some(st) = p.get("Status")
            && !st.ends_with(" installed")
        {
            continue;
        }
        let mut ip = pkg(Kind::Deb, name, version, layer, path);
        ip.arch = p.get("Architecture").cloned();
        if let Some(src) = p.get("Source") {
            // `Source: glibc (2.36-9+deb12u4)`: the source name, and its version if it differs
            let mut it = src.splitn(2, ' ');
            let sname = it.next().unwrap_or(name).to_owned();
            let sver = it.next().map(|v| v.trim().trim_start_matches('(').trim_end_matches(')').to_owned());
            ip.source_name = Some(sname);
            ip.source_version = sver.filter(|v| !v.is_empty());
        } else {
            ip.source_name = Some(name.clone());
        }
        out.push(ip);
    }
    Some(out)
}

fn parse_apk(text: &str, layer: usize, path: &str) -> Option<Vec<InstalledPackage>> {
    let mut out = Vec::new();
    let mut cur: BTreeMap<char, String> = BTreeMap::new();
    let mut flush = |cur: &mut BTreeMap<char, String>| {
        if let (Some(n), Some(v)) = (cur.get(&'P'), cur.get(&'V')) {
            let mut ip = pkg(Kind::Apk, n, v, layer, path);
            ip.source_name = Some(cur.get(&'o').cloned().unwrap_or_else(|| n.clone()));
            ip.arch = cur.get(&'A').cloned();
            ip.license = cur.get(&'L').cloned();
            out.push(ip);
        }
        cur.clear();
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut cur);
            continue;
        }
        let mut chars = line.chars();
        if let (Some(k), Some(':')) = (chars.next(), chars.next()) {
            cur.entry(k).or_insert_with(|| chars.as_str().to_owned());
        }
    }
    flush(&mut cur);
    Some(out)
}

fn parse_python(text: &str, layer: usize, path: &str) -> Option<InstalledPackage> {
    // METADATA / PKG-INFO: RFC 822 headers up to the first blank line.
    let head = text.split("\n\n").next().unwrap_or(text);
    let p = paragraphs(head).next()?;
    let mut ip = pkg(Kind::Python, p.get("Name")?, p.get("Version")?, layer, path);
    ip.license = p.get("License").filter(|l| !l.is_empty() && l.len() < 100).cloned();
    Some(ip)
}

fn parse_package_json(data: &[u8], layer: usize, path: &str) -> Option<InstalledPackage> {
    let v: Value = serde_json::from_slice(data).ok()?;
    let mut ip = pkg(Kind::Npm, v["name"].as_str()?, v["version"].as_str()?, layer, path);
    ip.license = v["license"].as_str().map(str::to_owned);
    Some(ip)
}

fn parse_package_lock(data: &[u8], layer: usize, path: &str) -> Option<Vec<InstalledPackage>> {
    let v: Value = serde_json::from_slice(data).ok()?;
    let mut out = Vec::new();
    if let Some(pkgs) = v["packages"].as_object() {
        // lockfile v2/v3: "node_modules/a/node_modules/b": {"version": …}
        for (k, p) in pkgs {
            let Some(name) = k.rsplit("node_modules/").next().filter(|n| !n.is_empty() && k.contains("node_modules/"))
            else {
                continue;
            };
            // A link is the project itself; `dev` entries are not in a production install
            // (`devOptional` ones are, unless optional dependencies are left out too).
            if p["link"].as_bool() == Some(true) || p["dev"].as_bool() == Some(true) {
                continue;
            }
            if let Some(ver) = p["version"].as_str() {
                out.push(locked(pkg(Kind::Npm, p["name"].as_str().unwrap_or(name), ver, layer, path)));
            }
        }
    } else if let Some(deps) = v["dependencies"].as_object() {
        // lockfile v1: nested "dependencies"
        fn walk(deps: &serde_json::Map<String, Value>, layer: usize, path: &str, out: &mut Vec<InstalledPackage>) {
            for (name, d) in deps {
                if d["dev"].as_bool() == Some(true) {
                    continue; // nor anything below it: a dev dependency's dependencies are dev too
                }
                if let Some(ver) = d["version"].as_str() {
                    out.push(locked(pkg(Kind::Npm, name, ver, layer, path)));
                }
                if let Some(sub) = d["dependencies"].as_object() {
                    walk(sub, layer, path, out);
                }
            }
        }
        walk(deps, layer, path, &mut out);
    }
    Some(out)
}

fn parse_cargo_lock(text: &str, layer: usize, path: &str) -> Option<Vec<InstalledPackage>> {
    let doc: toml::Table = text.parse().ok()?;
    let mut out = Vec::new();
    for p in doc.get("package").and_then(|p| p.as_array()).into_iter().flatten() {
        // Only crates from a registry: path and git dependencies are the project itself.
        let registry = p.get("source").and_then(|s| s.as_str()).is_some_and(|s| s.starts_with("registry+"));
        if let (true, Some(n), Some(v)) =
            (registry, p.get("name").and_then(|x| x.as_str()), p.get("version").and_then(|x| x.as_str()))
        {
            out.push(locked(pkg(Kind::Cargo, n, v, layer, path)));
        }
    }
    Some(out)
}

fn parse_gemspec_name(path: &str, layer: usize) -> Option<InstalledPackage> {
    // specifications/<name>-<version>.gemspec; the version is the last `-` part that starts with a digit
    let file = path.rsplit('/').next()?.strip_suffix(".gemspec")?;
    let (name, version) = file.rsplit_once('-')?;
    version.as_bytes().first().filter(|b| b.is_ascii_digit())?;
    Some(pkg(Kind::Gem, name, version, layer, path))
}

fn parse_jar(data: &[u8], layer: usize, path: &str, depth: usize) -> Option<Vec<InstalledPackage>> {
    let mut zip = zip::ZipArchive::new(io::Cursor::new(data)).ok()?;
    let mut out = Vec::new();
    let mut nested = Vec::new();
    for i in 0..zip.len() {
        let Ok(mut f) = zip.by_index(i) else { continue };
        let name = f.name().to_owned();
        if name.starts_with("META-INF/maven/") && name.ends_with("/pom.properties") {
            let mut s = String::new();
            if (&mut f).take(MAX_JAR_METADATA).read_to_string(&mut s).is_ok() {
                let mut props = BTreeMap::new();
                for l in s.lines() {
                    if let Some((k, v)) = l.split_once('=') {
                        props.insert(k.trim().to_owned(), v.trim().to_owned());
                    }
                }
                if let (Some(g), Some(a), Some(v)) =
                    (props.get("groupId"), props.get("artifactId"), props.get("version"))
                {
                    out.push(pkg(Kind::Maven, &format!("{g}:{a}"), v, layer, &format!("{path}!/{name}")));
                }
            }
        } else if depth == 0 && name.ends_with(".jar") && f.size() <= MAX_JAR_ENTRY {
            // The declared size may lie: read one byte past the limit to know.
            let mut b = Vec::new();
            if (&mut f).take(MAX_JAR_ENTRY + 1).read_to_end(&mut b).is_ok() && b.len() as u64 <= MAX_JAR_ENTRY {
                nested.push((name, b));
            }
        }
    }
    if out.is_empty()
        && let Some(p) = jar_by_manifest(&mut zip, path)
    {
        out.push(InstalledPackage { layer, ..p });
    }
    for (name, b) in nested {
        out.extend(parse_jar(&b, layer, &format!("{path}!/{name}"), depth + 1).unwrap_or_default());
    }
    Some(out)
}

/// A JAR without Maven metadata, named from its file name (`jackson-core-2.14.0.jar`) and
/// versioned by its manifest (`Implementation-Version`, `Bundle-Version`) or else the file
/// name; the group from `Implementation-Vendor-Id`, or from `Bundle-SymbolicName` when that is
/// `<group>.<artifact>`. Titles are free text and never name a package.
fn jar_by_manifest(zip: &mut zip::ZipArchive<io::Cursor<&[u8]>>, path: &str) -> Option<InstalledPackage> {
    let mut manifest = String::new();
    if let Ok(f) = zip.by_name("META-INF/MANIFEST.MF") {
        f.take(MAX_JAR_METADATA).read_to_string(&mut manifest).ok()?;
    }
    let field = |k: &str| {
        manifest.lines().find_map(|l| {
            l.strip_prefix(k).and_then(|v| v.strip_prefix(':')).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
        })
    };
    let file = path.rsplit(['/', '!']).next()?;
    let stem = [".jar", ".war", ".ear"].iter().find_map(|x| file.strip_suffix(x))?;
    // `name-1.2.3`: the version starts at the first `-` followed by a digit.
    let split = stem.match_indices('-').find(|(i, _)| stem[i + 1..].starts_with(|c: char| c.is_ascii_digit()));
    let (artifact, file_version) = match split {
        Some((i, _)) => (&stem[..i], Some(&stem[i + 1..])),
        None => (stem, None),
    };
    let version = field("Implementation-Version")
        .or_else(|| field("Bundle-Version"))
        .or_else(|| file_version.map(str::to_owned))?;
    let group = field("Implementation-Vendor-Id").or_else(|| {
        let symbolic = field("Bundle-SymbolicName")?;
        let symbolic = symbolic.split(';').next()?.trim();
        symbolic.strip_suffix(artifact)?.strip_suffix('.').map(str::to_owned)
    });
    let name = match group {
        Some(g) => format!("{g}:{artifact}"),
        None => artifact.to_owned(),
    };
    let evidence = if manifest.is_empty() { path.to_owned() } else { format!("{path}!/META-INF/MANIFEST.MF") };
    Some(pkg(Kind::Maven, &name, &version, 0, &evidence))
}

fn varint(b: &[u8], at: &mut usize) -> Option<usize> {
    let mut v: usize = 0;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= ((byte & 0x7f) as usize) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// One RPM header blob (as the `Packages` table of `rpmdb.sqlite` stores it: entry count and
/// data length, big-endian, then 16-byte index entries, then the data) as a package;
/// `None` for unreadable blobs and for `gpg-pubkey` pseudo-packages.
pub fn rpm_header(blob: &[u8], layer: usize, path: &str) -> Option<InstalledPackage> {
    let u32_at = |o: usize| Some(u32::from_be_bytes(blob.get(o..o + 4)?.try_into().ok()?) as usize);
    let (il, dl) = (u32_at(0)?, u32_at(4)?);
    let data_start = 8 + il.checked_mul(16)?;
    let data = blob.get(data_start..data_start.checked_add(dl)?)?;
    let mut tags: BTreeMap<u32, (u32, usize)> = BTreeMap::new();
    for k in 0..il {
        let e = 8 + k * 16;
        tags.insert(u32_at(e)? as u32, (u32_at(e + 4)? as u32, u32_at(e + 8)?));
    }
    let string = |tag: u32| -> Option<String> {
        let (ty, off) = *tags.get(&tag)?;
        // STRING (6), STRING_ARRAY (8) and I18NSTRING (9): take the first string
        if !matches!(ty, 6 | 8 | 9) {
            return None;
        }
        let s = data.get(off..)?;
        let end = s.iter().position(|b| *b == 0)?;
        Some(String::from_utf8_lossy(&s[..end]).into_owned())
    };
    let name = string(1000)?;
    if name == "gpg-pubkey" {
        return None;
    }
    let version = string(1001)?;
    let release = string(1002)?;
    let epoch = tags
        .get(&1003)
        .filter(|(ty, _)| *ty == 4)
        .and_then(|(_, off)| Some(u32::from_be_bytes(data.get(*off..*off + 4)?.try_into().ok()?)));
    let evr = match epoch {
        Some(e) if e > 0 => format!("{e}:{version}-{release}"),
        _ => format!("{version}-{release}"),
    };
    let mut p = pkg(Kind::Rpm, &name, &evr, layer, path);
    p.arch = string(1022);
    p.license = string(1014);
    // SOURCERPM `openssl-1.1.1k-7.el8.src.rpm`: the source name is what precedes version-release.
    if let Some(src) = string(1044) {
        let base = src.strip_suffix(".src.rpm").or_else(|| src.strip_suffix(".nosrc.rpm")).unwrap_or(&src);
        let mut parts = base.rsplitn(3, '-');
        let (_rel, _ver, n) = (parts.next(), parts.next(), parts.next());
        p.source_name = n.map(str::to_owned);
    }
    if p.source_name.is_none() {
        p.source_name = Some(name);
    }
    Some(p)
}

/// Go build info (Go 1.18+ inline format): the toolchain version and the module list.
fn parse_go_buildinfo(data: &[u8], layer: usize, path: &str) -> Vec<InstalledPackage> {
    const MAGIC: &[u8] = b"\xff Go buildinf:";
    let Some(at) = data.windows(MAGIC.len()).position(|w| w == MAGIC) else { return Vec::new() };
    let flags = data.get(at + 15).copied().unwrap_or(0);
    if flags & 0x2 == 0 {
        return Vec::new(); // pre-1.18 pointer format: not read
    }
    let mut i = at + 32;
    let mut read = || -> Option<String> {
        let n = varint(data, &mut i)?;
        let s = data.get(i..i + n)?;
        i += n;
        Some(String::from_utf8_lossy(s).into_owned())
    };
    let (Some(go), Some(mut modinfo)) = (read(), read()) else { return Vec::new() };
    let mut out = Vec::new();
    if let Some(v) = go.strip_prefix("go").filter(|v| v.as_bytes().first().is_some_and(u8::is_ascii_digit)) {
        // `go1.21.5` (possibly with ` X:…` experiment suffixes)
        let v = v.split([' ', '-']).next().unwrap_or(v);
        out.push(pkg(Kind::GoStdlib, "stdlib", v, layer, path));
    }
    if modinfo.len() >= 33 && modinfo.is_char_boundary(16) && modinfo.is_char_boundary(modinfo.len() - 16) {
        modinfo = modinfo[16..modinfo.len() - 16].to_owned();
    }
    let mut main = None;
    for line in modinfo.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            // The main module: `(devel)` when built from a checkout without a version (Go
            // 1.24 and later stamp a pseudo-version from the checkout instead).
            ["mod", p, v, ..] => {
                main = Some(out.len());
                out.push(pkg(Kind::Go, p, v.trim_start_matches('v'), layer, path))
            }
            ["dep", p, v, ..] => out.push(pkg(Kind::Go, p, v.trim_start_matches('v'), layer, path)),
            ["build", setting] => {
                if let (Some(rev), Some(m)) = (setting.strip_prefix("vcs.revision="), main) {
                    out[m].revision = Some(rev.to_owned());
                }
            }
            ["=>", p, v, ..] => {
                // a replacement of the previous dependency
                if let Some(last) = out.last_mut().filter(|l| l.kind == Kind::Go) {
                    last.name = (*p).to_owned();
                    last.version = v.trim_start_matches('v').to_owned();
                }
            }
            _ => {}
        }
    }
    out
}

/// The bytes of an ELF section by name (32- or 64-bit, little-endian).
fn elf_section<'a>(data: &'a [u8], want: &str) -> Option<&'a [u8]> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(data.get(o..o + 2)?.try_into().ok()?) as usize);
    let u32_at = |o: usize| Some(u32::from_le_bytes(data.get(o..o + 4)?.try_into().ok()?) as usize);
    let u64_at = |o: usize| Some(u64::from_le_bytes(data.get(o..o + 8)?.try_into().ok()?) as usize);
    if data.get(5) != Some(&1) {
        return None; // big-endian
    }
    let is64 = data.get(4) == Some(&2);
    let (shoff, shentsize, shnum, shstrndx) = if is64 {
        (u64_at(0x28)?, u16_at(0x3a)?, u16_at(0x3c)?, u16_at(0x3e)?)
    } else {
        (u32_at(0x20)?, u16_at(0x2e)?, u16_at(0x30)?, u16_at(0x32)?)
    };
    let section = |k: usize| -> Option<(usize, usize, usize)> {
        let h = shoff + k * shentsize;
        if is64 {
            Some((u32_at(h)?, u64_at(h + 0x18)?, u64_at(h + 0x20)?))
        } else {
            Some((u32_at(h)?, u32_at(h + 0x10)?, u32_at(h + 0x14)?))
        }
    };
    let (_, str_off, str_size) = section(shstrndx)?;
    let names = data.get(str_off..str_off + str_size)?;
    for k in 0..shnum {
        let (name_off, off, size) = section(k)?;
        let name = names.get(name_off..)?.split(|b| *b == 0).next()?;
        if name == want.as_bytes() {
            return data.get(off..off + size);
        }
    }
    None
}

/// `cargo auditable` data: zlib-compressed JSON in the `.dep-v0` section.
fn parse_cargo_auditable(data: &[u8], layer: usize, path: &str) -> Vec<InstalledPackage> {
    let Some(section) = elf_section(data, ".dep-v0") else { return Vec::new() };
    let mut json = Vec::new();
    if flate2::read::ZlibDecoder::new(section).take(16 * 1024 * 1024).read_to_end(&mut json).is_err() {
        return Vec::new();
    }
    let Ok(v) = serde_json::from_slice::<Value>(&json) else { return Vec::new() };
    v["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| {
            p["source"].as_str() == Some("crates.io") || p["source"].as_str().is_some_and(|s| s.starts_with("registry"))
        })
        // Build scripts' and proc-macros' dependencies ran at build time; they are not in the binary.
        .filter(|p| p["kind"].as_str() != Some("build"))
        .filter_map(|p| Some(pkg(Kind::Cargo, p["name"].as_str()?, p["version"].as_str()?, layer, path)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data, mode) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(*mode);
            h.set_cksum();
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    const STATUS: &str = "Package: libssl3\nStatus: install ok installed\nArchitecture: amd64\nSource: openssl\nVersion: 3.0.11-1~deb12u1\n\n\
Package: libc6\nStatus: install ok installed\nSource: glibc (2.36-9+deb12u4)\nVersion: 2.36-9+deb12u4+b1\nDescription: x\n continued line\n\n\
Package: removed\nStatus: deinstall ok config-files\nVersion: 1.0\n";

    #[test]
    fn gzip_layers_are_read() {
        use std::io::Write;
        let t = tar(&[("etc/os-release", b"ID=debian\nVERSION_ID=12\n", 0o644)]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&t).unwrap();
        let gz = gz.finish().unwrap();
        let mut s = LayerStack::new();
        s.apply(0, &gz[..]).unwrap();
        assert_eq!(s.inventory().os.map(|o| o.id), Some("debian".to_owned()));
    }

    #[test]
    fn a_layer_read_once_and_applied_again_is_the_layer_applied_again() {
        let a = tar(&[
            ("etc/os-release", b"ID=debian\nVERSION_ID=12\n", 0o644),
            ("var/lib/dpkg/status", b"Package: a\nStatus: install ok installed\nVersion: 1\n\n", 0o644),
        ]);
        let b = tar(&[("var/lib/dpkg/.wh.status", b"", 0o644)]);
        // a, b, a, b, a by reading each time, and by reading each layer once
        let mut read = LayerStack::new();
        let mut once = LayerStack::new();
        let (da, db) = (once.read_layer(&a[..]).unwrap(), once.read_layer(&b[..]).unwrap());
        for (i, (blob, delta)) in [(&a, &da), (&b, &db), (&a, &da), (&b, &db), (&a, &da)].into_iter().enumerate() {
            read.apply(i, &blob[..]).unwrap();
            once.apply_delta(i, delta);
        }
        let (r, o) = (read.inventory(), once.inventory());
        assert_eq!(format!("{:?}", r.packages), format!("{:?}", o.packages));
        assert_eq!(o.packages.len(), 1, "the last layer re-adds the status file");
        assert_eq!(o.packages[0].layer, 4, "attributed to the layer that put it there");
        assert!(
            once.captured_bytes < read.captured_bytes,
            "read once: {} vs {}",
            once.captured_bytes,
            read.captured_bytes
        );
    }

    #[test]
    fn layers_stack_with_whiteouts_and_packages_are_read() {
        let base = tar(&[
            (
                "etc/os-release",
                b"ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
                0o644,
            ),
            ("var/lib/dpkg/status", STATUS.as_bytes(), 0o644),
            (
                "usr/lib/python3/dist-packages/PyYAML-5.3.dist-info/METADATA",
                b"Metadata-Version: 2.1\nName: PyYAML\nVersion: 5.3\n\nbody",
                0o644,
            ),
            ("app/node_modules/lodash/package.json", br#"{"name": "lodash", "version": "4.17.15"}"#, 0o644),
            ("app/node_modules/lodash/node_modules/x/package.json", br#"{"name": "x", "version": "1.0.0"}"#, 0o644),
            ("app/node_modules/lodash/docs/package.json", br#"{"name": "docs", "version": "0.0.1"}"#, 0o644),
            ("app/node_modules/@scope/pkg/package.json", br#"{"name": "@scope/pkg", "version": "2.0.0"}"#, 0o644),
            ("gone/node_modules/minimist/package.json", br#"{"name": "minimist", "version": "1.2.0"}"#, 0o644),
            ("opaque/node_modules/axios/package.json", br#"{"name": "axios", "version": "0.21.0"}"#, 0o644),
            ("usr/bin/script", b"#!/bin/sh\necho", 0o755),
        ]);
        let top = tar(&[
            ("gone/.wh.node_modules", b"", 0o644),
            ("opaque/.wh..wh..opq", b"", 0o644),
            ("opaque/node_modules/axios/package.json", br#"{"name": "axios", "version": "1.6.0"}"#, 0o644),
            ("src/Cargo.lock", b"version = 3\n[[package]]\nname = \"smallvec\"\nversion = \"0.6.10\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\n[[package]]\nname = \"myapp\"\nversion = \"0.1.0\"\n", 0o644),
            ("usr/lib/ruby/gems/3.1.0/specifications/rack-2.2.3.gemspec", b"", 0o644),
        ]);
        let mut s = LayerStack::new();
        s.apply(0, &base[..]).unwrap();
        // the second layer gzipped, as registries store them
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &top).unwrap();
        s.apply(1, &gz.finish().unwrap()[..]).unwrap();
        let inv = s.inventory();
        assert_eq!(inv.os.as_ref().unwrap().ecosystem(), Some(Ecosystem::Debian(Some("12".into()))));
        let got: Vec<(Kind, &str, &str, usize)> =
            inv.packages.iter().map(|p| (p.kind, p.name.as_str(), p.version.as_str(), p.layer)).collect();
        assert_eq!(
            got,
            vec![
                (Kind::Deb, "libc6", "2.36-9+deb12u4+b1", 0),
                (Kind::Deb, "libssl3", "3.0.11-1~deb12u1", 0),
                (Kind::Python, "PyYAML", "5.3", 0),
                (Kind::Npm, "@scope/pkg", "2.0.0", 0),
                (Kind::Npm, "axios", "1.6.0", 1),
                (Kind::Npm, "lodash", "4.17.15", 0),
                (Kind::Npm, "x", "1.0.0", 0),
                (Kind::Cargo, "smallvec", "0.6.10", 1),
                (Kind::Gem, "rack", "2.2.3", 1),
            ]
        );
        let libc = &inv.packages[0];
        assert_eq!(
            (libc.source_name.as_deref(), libc.source_version.as_deref()),
            (Some("glibc"), Some("2.36-9+deb12u4"))
        );
        let m = inv.to_match();
        let glibc = m.iter().find(|(i, _)| *i == 0).unwrap();
        assert_eq!((glibc.1.name.as_str(), glibc.1.version.as_str()), ("glibc", "2.36-9+deb12u4"));
        assert_eq!(inv.purl(&inv.packages[1]), "pkg:deb/debian/libssl3@3.0.11-1~deb12u1?arch=amd64&distro=debian-12");
        assert_eq!(inv.purl(&inv.packages[3]), "pkg:npm/%40scope/pkg@2.0.0");
    }

    #[test]
    fn jar_entries_are_read_within_bounds_whatever_they_expand_to() {
        use std::io::Write;
        let deflate = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        // A nested JAR of 40 MiB holding a package: past the entry bound, so not read.
        let mut inner = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        inner.start_file("META-INF/maven/org.x/nested/pom.properties", stored).unwrap();
        inner.write_all(b"groupId=org.x\nartifactId=nested\nversion=2.0\n").unwrap();
        inner.start_file("padding.bin", stored).unwrap();
        inner.write_all(&vec![0u8; 40 << 20]).unwrap();
        let inner = inner.finish().unwrap().into_inner();
        let mut jar = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        // pom.properties expanding to 3 MiB: only its first MiB counts (a later `version`
        // line would win if it were all read).
        jar.start_file("META-INF/maven/org.x/bomb/pom.properties", deflate).unwrap();
        jar.write_all(b"groupId=org.x\nartifactId=bomb\nversion=1.0\n").unwrap();
        for _ in 0..(2 << 20) / 64 {
            jar.write_all(&[b'#'; 63]).unwrap();
            jar.write_all(b"\n").unwrap();
        }
        jar.write_all(b"version=9.9\n").unwrap();
        jar.start_file("BOOT-INF/lib/nested.jar", deflate).unwrap();
        jar.write_all(&inner).unwrap();
        let jar = jar.finish().unwrap().into_inner();
        assert!(jar.len() < 1 << 20, "a bomb: {} bytes on disk", jar.len());
        let got = parse_jar(&jar, 0, "app.jar", 0).unwrap();
        let got: Vec<_> = got.iter().map(|p| (p.name.as_str(), p.version.as_str())).collect();
        assert_eq!(got, vec![("org.x:bomb", "1.0")], "neither the tail of the bomb nor the 40 MiB JAR was read");
    }

    #[test]
    fn zstd_layers_egg_info_and_jar_manifests() {
        let mut jar = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        jar.start_file("META-INF/MANIFEST.MF", zip::write::SimpleFileOptions::default()).unwrap();
        std::io::Write::write_all(&mut jar, b"Manifest-Version: 1.0\r\nImplementation-Title: commons-text\r\nImplementation-Version: 1.9\r\nImplementation-Vendor-Id: org.apache.commons\r\n").unwrap();
        let jar = jar.finish().unwrap().into_inner();
        let layer = tar(&[
            (
                "usr/lib/python3/site-packages/six-1.15.0-py3.9.egg-info",
                b"Metadata-Version: 1.0\nName: six\nVersion: 1.15.0\n",
                0o644,
            ),
            ("opt/app/lib/commons-text.jar", &jar, 0o644),
        ]);
        let zst = ruzstd::encoding::compress_to_vec(&layer[..], ruzstd::encoding::CompressionLevel::Fastest);
        assert_eq!(&zst[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
        let mut s = LayerStack::new();
        s.apply(0, &zst[..]).unwrap();
        let got: Vec<_> = s.inventory().packages.into_iter().map(|p| (p.kind, p.name, p.version)).collect();
        assert_eq!(
            got,
            vec![
                (Kind::Python, "six".to_owned(), "1.15.0".to_owned()),
                (Kind::Maven, "org.apache.commons:commons-text".to_owned(), "1.9".to_owned()),
            ]
        );
    }

    #[test]
    fn alpine_and_distroless_databases() {
        let apk = "C:Q1abc\nP:libcrypto3\nV:3.1.4-r0\nA:x86_64\no:openssl\nL:Apache-2.0\n\nP:busybox\nV:1.36.1-r15\n";
        let layer = tar(&[
            ("etc/os-release", b"ID=alpine\nVERSION_ID=3.19.0\n", 0o644),
            ("etc/alpine-release", b"3.19.1\n", 0o644),
            ("lib/apk/db/installed", apk.as_bytes(), 0o644),
        ]);
        let mut s = LayerStack::new();
        s.apply(0, &layer[..]).unwrap();
        let inv = s.inventory();
        assert_eq!(inv.os.as_ref().unwrap().ecosystem(), Some(Ecosystem::Alpine(Some("v3.19".into()))));
        let m = inv.to_match();
        assert_eq!(
            m.iter().map(|(_, p)| (p.name.as_str(), p.version.as_str())).collect::<Vec<_>>(),
            vec![("busybox", "1.36.1-r15"), ("openssl", "3.1.4-r0")]
        );
        // distroless: status.d without Status lines
        let layer = tar(&[("var/lib/dpkg/status.d/base", b"Package: base-files\nVersion: 12.4+deb12u5\n", 0o644)]);
        let mut s = LayerStack::new();
        s.apply(0, &layer[..]).unwrap();
        assert_eq!(s.inventory().packages[0].name, "base-files");
    }

    #[test]
    fn go_build_info_is_read_from_binaries() {
        let mut modinfo = vec![b'x'; 16];
        modinfo.extend_from_slice(
            b"path\texample.com/app\nmod\texample.com/app\t(devel)\t\ndep\tgolang.org/x/net\tv0.7.0\th1:abc\nbuild\tvcs=git\nbuild\tvcs.revision=0123abc\n",
        );
        modinfo.extend(vec![b'y'; 16]);
        let mut bin = b"\x7fELF".to_vec();
        bin.extend(vec![0; 60]);
        bin.extend_from_slice(b"\xff Go buildinf:");
        bin.push(8);
        bin.push(2);
        bin.extend(vec![0; 16]);
        let go = b"go1.20.2";
        bin.push(go.len() as u8);
        bin.extend_from_slice(go);
        // a varint length
        bin.extend([(modinfo.len() as u8 & 0x7f) | 0x80, (modinfo.len() >> 7) as u8]);
        bin.extend_from_slice(&modinfo);
        let layer = tar(&[("usr/local/bin/app", &bin, 0o755)]);
        let mut s = LayerStack::new();
        s.apply(0, &layer[..]).unwrap();
        let inv = s.inventory();
        let got: Vec<_> = inv.packages.iter().map(|p| (p.kind, p.name.as_str(), p.version.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (Kind::Go, "example.com/app", "(devel)"),
                (Kind::Go, "golang.org/x/net", "0.7.0"),
                (Kind::GoStdlib, "stdlib", "1.20.2")
            ]
        );
        let purls: Vec<String> = inv.packages.iter().map(|p| inv.purl(p)).collect();
        assert_eq!(
            purls,
            [
                "pkg:golang/example.com/app@%28devel%29",
                "pkg:golang/golang.org/x/net@v0.7.0",
                "pkg:golang/stdlib@v1.20.2"
            ]
        );
        assert_eq!(inv.packages[0].revision.as_deref(), Some("0123abc"));
        // The main module has no version to compare; the standard library matches as Go's
        // vulnerability database names it.
        let m: Vec<(String, String)> = inv.to_match().into_iter().map(|(_, p)| (p.name, p.version)).collect();
        assert_eq!(
            m,
            [("golang.org/x/net".to_owned(), "0.7.0".to_owned()), ("stdlib".to_owned(), "1.20.2".to_owned())]
        );
    }

    #[test]
    fn a_lock_file_alone_reports_a_production_install_and_an_installed_tree_wins() {
        let lock3 = br#"{"lockfileVersion": 3, "packages": {
            "": {"name": "app", "version": "1.0.0"},
            "node_modules/lodash": {"version": "4.17.15"},
            "node_modules/handlebars": {"version": "4.0.11", "dev": true},
            "node_modules/fsevents": {"version": "2.3.2", "devOptional": true},
            "node_modules/@types/node": {"version": "20.1.0", "dev": true},
            "node_modules/@scope/lib": {"version": "1.0.0"}
        }}"#;
        let lock1 = br#"{"lockfileVersion": 1, "dependencies": {
            "minimist": {"version": "1.2.0"},
            "mocha": {"version": "5.0.0", "dev": true, "dependencies": {"debug": {"version": "3.1.0", "dev": true}}}
        }}"#;
        let layer = tar(&[
            ("srv/a/package-lock.json", lock3, 0o644),
            ("srv/b/package-lock.json", lock1, 0o644),
            // c: installed with `npm ci --omit=dev`: the tree is what is there
            ("srv/c/package-lock.json", lock3, 0o644),
            ("srv/c/node_modules/lodash/package.json", br#"{"name": "lodash", "version": "4.17.15"}"#, 0o644),
        ]);
        let mut s = LayerStack::new();
        s.apply(0, &layer[..]).unwrap();
        let inv = s.inventory();
        let got: Vec<(&str, &str, Evidence)> =
            inv.packages.iter().map(|p| (p.path.as_str(), p.name.as_str(), p.evidence)).collect();
        assert_eq!(
            got,
            [
                ("srv/a/package-lock.json", "@scope/lib", Evidence::Lockfile),
                ("srv/a/package-lock.json", "fsevents", Evidence::Lockfile),
                ("srv/a/package-lock.json", "lodash", Evidence::Lockfile),
                ("srv/c/node_modules/lodash/package.json", "lodash", Evidence::Installed),
                ("srv/b/package-lock.json", "minimist", Evidence::Lockfile),
            ]
        );
        // Stored inventories from before the field read back as installed; lock entries say so.
        let json = serde_json::to_value(&inv.packages[0]).unwrap();
        assert_eq!(json["evidence"], "lockfile");
        assert!(serde_json::to_value(&inv.packages[3]).unwrap().get("evidence").is_none());
        let mut old = serde_json::to_value(&inv.packages[3]).unwrap();
        old.as_object_mut().unwrap().remove("revision");
        assert_eq!(serde_json::from_value::<InstalledPackage>(old).unwrap().evidence, Evidence::Installed);
    }

    #[test]
    fn package_urls_are_canonical_for_every_type() {
        let mut inv = Inventory {
            os: Some(OsRelease { id: "debian".into(), version_id: "12".into(), pretty_name: String::new() }),
            ..Default::default()
        };
        let with_arch = |mut p: InstalledPackage, a: &str| {
            p.arch = Some(a.to_owned());
            p
        };
        inv.packages = vec![
            with_arch(pkg(Kind::Deb, "zlib1g", "1:1.2.13.dfsg-1", 0, ""), "amd64"),
            pkg(Kind::Python, "Flask_Cors", "3.0.8", 0, ""),
            pkg(Kind::Python, "zope.interface", "5.0", 0, ""),
            pkg(Kind::Npm, "@Types/Node", "20.1.0", 0, ""),
            pkg(Kind::Maven, "org.apache.logging.log4j:log4j-core", "2.19.0", 0, ""),
            pkg(Kind::Cargo, "smallvec", "0.6.9", 0, ""),
            pkg(Kind::Gem, "rack", "2.2.3+x", 0, ""),
            pkg(Kind::Go, "github.com/Foo/bar/v2", "2.0.0-20230101000000-abcdef012345", 0, ""),
        ];
        let purls: Vec<String> = inv.packages.iter().map(|p| inv.purl(p)).collect();
        assert_eq!(
            purls,
            [
                "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12",
                "pkg:pypi/flask-cors@3.0.8",
                "pkg:pypi/zope-interface@5.0",
                "pkg:npm/%40types/node@20.1.0",
                "pkg:maven/org.apache.logging.log4j/log4j-core@2.19.0",
                "pkg:cargo/smallvec@0.6.9",
                "pkg:gem/rack@2.2.3%2Bx",
                "pkg:golang/github.com/Foo/bar/v2@v2.0.0-20230101000000-abcdef012345",
            ]
        );
        inv.os = Some(OsRelease { id: "rocky".into(), version_id: "9.3".into(), pretty_name: String::new() });
        let rpm = with_arch(pkg(Kind::Rpm, "openssl-libs", "1:3.0.7-25.el9_3", 0, ""), "x86_64");
        assert_eq!(inv.purl(&rpm), "pkg:rpm/rocky/openssl-libs@3.0.7-25.el9_3?arch=x86_64&distro=rocky-9.3&epoch=1");
    }

    #[test]
    fn jars_are_named_by_pom_properties_then_file_name_never_by_title() {
        let jar = |entries: &[(&str, &str)]| {
            let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
            for (name, body) in entries {
                z.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
                std::io::Write::write_all(&mut z, body.as_bytes()).unwrap();
            }
            z.finish().unwrap().into_inner()
        };
        let titled =
            "Manifest-Version: 1.0\r\nImplementation-Title: Apache Log4j Core\r\nImplementation-Version: 2.19.0\r\n";
        let with_pom = jar(&[
            ("META-INF/MANIFEST.MF", titled),
            (
                "META-INF/maven/org.apache.logging.log4j/log4j-core/pom.properties",
                "groupId=org.apache.logging.log4j\nartifactId=log4j-core\nversion=2.19.0\n",
            ),
        ]);
        let bundle = jar(&[(
            "META-INF/MANIFEST.MF",
            "Implementation-Title: Jackson-core\r\nBundle-SymbolicName: com.fasterxml.jackson.core.jackson-core;singleton:=true\r\nBundle-Version: 2.14.0\r\n",
        )]);
        let bare = jar(&[("META-INF/MANIFEST.MF", "Implementation-Title: Some Library\r\n")]);
        let layer = tar(&[
            ("opt/a/log4j-core.jar", &with_pom, 0o644),
            ("opt/a/jackson-core-2.14.0.jar", &bundle, 0o644),
            ("opt/a/some-lib-1.2.jar", &bare, 0o644),
            ("opt/a/titled.jar", &jar(&[("META-INF/MANIFEST.MF", titled)]), 0o644),
        ]);
        let mut s = LayerStack::new();
        s.apply(0, &layer[..]).unwrap();
        let got: Vec<(String, String)> = s.inventory().packages.into_iter().map(|p| (p.name, p.version)).collect();
        assert_eq!(
            got,
            [
                ("com.fasterxml.jackson.core:jackson-core".to_owned(), "2.14.0".to_owned()),
                ("org.apache.logging.log4j:log4j-core".to_owned(), "2.19.0".to_owned()),
                ("some-lib".to_owned(), "1.2".to_owned()),
                ("titled".to_owned(), "2.19.0".to_owned()),
            ]
        );
    }
}
