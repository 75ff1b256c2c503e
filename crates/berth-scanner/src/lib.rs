//! The scanner service: importing OSV data (`berth vulndb import`), scanning
//! manifests as background jobs (inventory from layers, report, optional SBOM referrers),
//! and re-evaluating every stored inventory when the advisory data changes.
//!
//! Jobs: `scan` (payload `{"repo", "digest", "sbom"}`, de-duplicated per digest, so one
//! digest is never scanned twice at once) and `vulndb-reevaluate` (after an import; re-matches
//! stored inventories without reading a layer).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use berth_blob::BlobBody;
pub use berth_meta::{ExportRecord, MetaError, Origin, ProjectRecord, ScanRecord, ScanRequest, VulnSource};
use berth_meta::{NewJob, ScanStore, SqlMetaStore};
use berth_policy::{PatternOptions, PatternSet, Syntax};
use berth_registry::Registry;
use berth_scan::inventory::{Inventory, LayerDelta, LayerStack};
use berth_scan::report::{Report, scan};
use berth_scan::{Database, OsvRecord};
use berth_types::{Digest, Reference, RepoName};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::RwLock;
use tracing::{info, warn};

/// The report MIME type Harbor keys scan reports by.
pub const REPORT_MIME: &str = "application/vnd.security.vulnerability.report; version=1.1";

/// This scanner as Harbor's `Scanner`.
pub fn scanner_json() -> Value {
    json!({"name": "Berth", "vendor": "Berth", "version": env!("CARGO_PKG_VERSION")})
}

/// A scan record's status in Harbor's words.
pub fn status_word(rec: &ScanRecord) -> &'static str {
    match rec.status.as_str() {
        "done" => "Success",
        "running" => "Running",
        "failed" => "Error",
        _ => "Pending",
    }
}

/// Kind of the scan job.
pub const SCAN: &str = "scan";
/// Kind of the re-evaluation job.
pub const REEVALUATE: &str = "vulndb-reevaluate";

/// The payload of a scan job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanPayload {
    /// Repository.
    pub repo: String,
    /// Manifest digest.
    pub digest: String,
    /// Also push SBOM referrers.
    #[serde(default)]
    pub sbom: bool,
}

/// What an import read.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ImportStats {
    /// Sources (files or directories) imported.
    pub sources: Vec<String>,
    /// Records stored.
    pub records: usize,
    /// Withdrawn records among them.
    pub withdrawn: usize,
    /// Lines or files that were not OSV records.
    pub invalid: usize,
    /// The advisory generation after the import.
    pub generation: i64,
}

fn stem(p: &Path) -> String {
    let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    name.trim_end_matches(".gz")
        .trim_end_matches(".jsonl")
        .trim_end_matches(".json")
        .trim_end_matches(".zip")
        .to_owned()
}

/// One source's records: `(id, modified, json)`, withdrawn count, invalid count.
type Collected = (Vec<(String, String, String)>, usize, usize);

fn collect_jsonl(reader: impl std::io::BufRead) -> anyhow::Result<Collected> {
    let mut out = Vec::new();
    let mut withdrawn = 0;
    let mut invalid = 0;
    for line in reader.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        push_record(&line, &mut out, &mut withdrawn, &mut invalid);
    }
    Ok((out, withdrawn, invalid))
}

/// One JSON document: an OSV record, or NVD, CVE List V5 or Debian security tracker data
/// converted to OSV records (`berth_scan::formats`).
fn push_document(text: &str, c: &mut Collected) {
    match berth_scan::formats::to_osv(text) {
        Ok(records) => {
            for r in records {
                push_record(&r.to_string(), &mut c.0, &mut c.1, &mut c.2);
            }
        }
        Err(_) => c.2 += 1,
    }
}

fn push_record(text: &str, out: &mut Vec<(String, String, String)>, withdrawn: &mut usize, invalid: &mut usize) {
    match serde_json::from_str::<OsvRecord>(text) {
        Ok(r) => {
            if r.withdrawn.is_some() {
                *withdrawn += 1;
            }
            // Store compact JSON (the input may be pretty-printed).
            let compact =
                serde_json::from_str::<Value>(text).map(|v| v.to_string()).unwrap_or_else(|_| text.to_owned());
            out.push((r.id, r.modified, compact));
        }
        Err(_) => *invalid += 1,
    }
}

/// Read one path: a `*.jsonl[.gz]` file of OSV records, a `*.json[.gz]` document (an OSV
/// record, an NVD CVE JSON 2.0 feed, a CVE List V5 record, the Debian security tracker's
/// JSON), a `*.zip` of documents, or a directory of any of these (each file of JSON Lines or
/// whole feed is a source; loose `*.json` files of a directory together are one source named
/// after the directory).
fn read_sources(path: &Path) -> anyhow::Result<Vec<(String, Collected)>> {
    let mut out = Vec::new();
    if path.is_dir() {
        let mut loose: Collected = (Vec::new(), 0, 0);
        let mut entries: Vec<PathBuf> =
            std::fs::read_dir(path)?.filter_map(|e| e.ok().map(|e| e.path())).collect::<Vec<_>>();
        entries.sort();
        for p in entries {
            let name = p.to_string_lossy();
            if p.is_dir() {
                out.extend(read_sources(&p)?);
            } else if name.ends_with(".json") {
                let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
                push_document(&text, &mut loose);
            } else if name.ends_with(".jsonl") || name.ends_with(".gz") || name.ends_with(".zip") {
                out.extend(read_sources(&p)?);
            }
        }
        if !loose.0.is_empty() || loose.2 > 0 {
            out.push((stem(path), loose));
        }
        return Ok(out);
    }
    let name = path.to_string_lossy().into_owned();
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let collected = if name.ends_with(".json.gz") {
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(file)
            .read_to_string(&mut text)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut c: Collected = (Vec::new(), 0, 0);
        push_document(&text, &mut c);
        c
    } else if name.ends_with(".gz") {
        collect_jsonl(std::io::BufReader::new(flate2::read::MultiGzDecoder::new(file)))?
    } else if name.ends_with(".jsonl") {
        collect_jsonl(std::io::BufReader::new(file))?
    } else if name.ends_with(".zip") {
        let mut zip = zip::ZipArchive::new(file).with_context(|| format!("{} is not a zip archive", path.display()))?;
        let mut c: Collected = (Vec::new(), 0, 0);
        for i in 0..zip.len() {
            let mut f = zip.by_index(i)?;
            if f.is_dir() || !f.name().ends_with(".json") {
                continue;
            }
            let mut text = String::new();
            f.read_to_string(&mut text)?;
            push_document(&text, &mut c);
        }
        c
    } else if name.ends_with(".json") {
        let text = std::fs::read_to_string(path)?;
        let mut c: Collected = (Vec::new(), 0, 0);
        push_document(&text, &mut c);
        c
    } else {
        bail!("{}: expected a directory, *.json, *.json.gz, *.jsonl, *.jsonl.gz or *.zip", path.display());
    };
    out.push((stem(path), collected));
    Ok(out)
}

/// Import OSV data from `path` into the metadata database, then queue a re-evaluation.
/// Works whether or not a server runs (it only needs the database).
pub async fn import(store: &SqlMetaStore, path: &Path) -> anyhow::Result<ImportStats> {
    let location = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned()).display().to_string();
    let stats = import_into(store, path, &location).await?;
    use berth_meta::JobQueue;
    store.enqueue(&reevaluate_job(), berth_auth::now_ms()).await?;
    Ok(stats)
}

/// The job that re-evaluates stored inventories against a new advisory generation.
pub fn reevaluate_job() -> NewJob {
    NewJob {
        kind: REEVALUATE.into(),
        payload: "{}".into(),
        dedup_key: Some(REEVALUATE.into()),
        max_attempts: 5,
        run_after: 0,
    }
}

/// Import OSV data from `path` into `store`, recording `location` as where it came from
/// (the caller queues [`reevaluate_job`]).
pub async fn import_into(store: &dyn ScanStore, path: &Path, location: &str) -> anyhow::Result<ImportStats> {
    let p = path.to_owned();
    let sources = tokio::task::spawn_blocking(move || read_sources(&p)).await??;
    if sources.is_empty() {
        bail!("{}: no OSV records found", path.display());
    }
    let mut stats = ImportStats::default();
    for (name, (records, withdrawn, invalid)) in sources {
        let newest = records.iter().map(|r| r.1.clone()).max().unwrap_or_default();
        let src = VulnSource {
            name: name.clone(),
            location: location.to_owned(),
            imported_at: berth_auth::now_ms(),
            records: records.len() as i64,
            withdrawn: withdrawn as i64,
            newest_modified: newest,
        };
        stats.generation = store.import_vulns(&src, &records).await?;
        stats.records += records.len();
        stats.withdrawn += withdrawn;
        stats.invalid += invalid;
        stats.sources.push(name);
    }
    Ok(stats)
}

/// The scanner: the advisory index (reloaded when the generation changes) over the registry.
pub struct Scanner {
    registry: Arc<Registry>,
    store: Arc<SqlMetaStore>,
    db: RwLock<Option<(i64, Arc<Database>)>>,
    /// Held while an index is built: one build at a time, however many scans ask.
    building: tokio::sync::Mutex<()>,
    budget: std::time::Duration,
}

/// Advisory records read from the database per page while an index is built, and stored
/// inventories per batch of a re-evaluation (one transaction writes a batch's reports).
const PAGE: i64 = 2_000;
const BATCH: i64 = 250;

/// How long one scan may take by default (`scanner.timeout`).
pub const DEFAULT_BUDGET: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// A reader that fails once its deadline has passed, so layer reading and decompression on
/// the blocking pool stop with the scan's budget (a blocking task cannot be cancelled).
struct DeadlineReader<R> {
    inner: R,
    deadline: std::time::Instant,
}

impl<R: Read> Read for DeadlineReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if std::time::Instant::now() > self.deadline {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the scan ran out of time"));
        }
        self.inner.read(buf)
    }
}

const EMPTY_CONFIG: &[u8] = b"{}";

/// Layer media types that hold a filesystem tar.
fn is_fs_layer(media_type: &str) -> bool {
    media_type.contains("tar") || media_type.contains("rootfs")
}

impl Scanner {
    /// A scanner over the registry and metadata store.
    pub fn new(registry: Arc<Registry>, store: Arc<SqlMetaStore>) -> Scanner {
        Scanner { registry, store, db: RwLock::new(None), building: Default::default(), budget: DEFAULT_BUDGET }
    }

    /// With a time budget per scan (`scanner.timeout`): a scan past it fails with a reason.
    pub fn with_budget(mut self, budget: std::time::Duration) -> Scanner {
        self.budget = budget;
        self
    }

    /// The advisory index of the current generation.
    pub async fn database(&self) -> anyhow::Result<(i64, Arc<Database>)> {
        let generation = self.store.vuln_generation().await?;
        if let Some((g, db)) = self.db.read().await.as_ref()
            && *g == generation
        {
            return Ok((*g, db.clone()));
        }
        let _one_build = self.building.lock().await;
        if let Some((g, db)) = self.db.read().await.as_ref()
            && *g == generation
        {
            return Ok((*g, db.clone())); // built while this waited
        }
        // The old index goes first (scans still using it keep it until they end): two whole
        // indexes are never held for one cache.
        *self.db.write().await = None;
        // Records are read a page at a time, so their text is never all in memory at once.
        let mut db = Database::new();
        let mut after = String::new();
        loop {
            let page = self.store.vuln_records_after(&after, PAGE).await?;
            let Some((last, _)) = page.last() else { break };
            after = last.clone();
            db = tokio::task::spawn_blocking(move || {
                for (_, r) in &page {
                    if let Ok(rec) = serde_json::from_str::<OsvRecord>(r) {
                        db.add(&rec);
                    }
                }
                db
            })
            .await?;
        }
        info!(generation, advisories = db.len(), "loaded the vulnerability database");
        let db = Arc::new(db);
        *self.db.write().await = Some((generation, db.clone()));
        Ok((generation, db))
    }

    /// Read a blob into the layer stack (on a blocking thread; streams from S3).
    async fn apply_layer(
        &self,
        stack: LayerStack,
        index: usize,
        repo: &RepoName,
        digest: &Digest,
        deadline: std::time::Instant,
    ) -> anyhow::Result<(LayerStack, Arc<LayerDelta>)> {
        let (_, body) = self.registry.blob_get(repo, digest, None).await?;
        let mut stack = stack;
        let read = move |stack: &mut LayerStack, r: &mut dyn Read| -> anyhow::Result<Arc<LayerDelta>> {
            let delta = Arc::new(stack.read_layer(DeadlineReader { inner: r, deadline })?);
            stack.apply_delta(index, &delta);
            Ok(delta)
        };
        let delta;
        match body {
            BlobBody::Bytes(b) => {
                (stack, delta) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                    let d = read(&mut stack, &mut &b[..])?;
                    Ok((stack, d))
                })
                .await??;
            }
            BlobBody::Stream(s) => {
                let reader = tokio_util::io::StreamReader::new(s.map_err(std::io::Error::other));
                let mut bridge = tokio_util::io::SyncIoBridge::new(reader);
                (stack, delta) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                    let d = read(&mut stack, &mut bridge)?;
                    Ok((stack, d))
                })
                .await??;
            }
        }
        Ok((stack, delta))
    }

    /// Inventory of an image manifest: its layers in order.
    async fn inventory_of(
        &self,
        repo: &RepoName,
        manifest: &Value,
        deadline: std::time::Instant,
    ) -> anyhow::Result<(Inventory, Vec<String>)> {
        let mut stack = LayerStack::new();
        let mut layers = Vec::new();
        // Each distinct layer is read once, however often the image lists it.
        let mut read: std::collections::HashMap<Digest, Arc<LayerDelta>> = Default::default();
        for (i, l) in manifest["layers"].as_array().into_iter().flatten().enumerate() {
            let d = l["digest"].as_str().unwrap_or("");
            layers.push(d.to_owned());
            if !is_fs_layer(l["mediaType"].as_str().unwrap_or("")) {
                continue;
            }
            let digest: Digest = d.parse().with_context(|| format!("layer digest {d:?}"))?;
            if let Some(delta) = read.get(&digest) {
                stack.apply_delta(i, delta);
                continue;
            }
            let delta;
            (stack, delta) = self
                .apply_layer(stack, i, repo, &digest, deadline)
                .await
                .with_context(|| format!("reading layer {d}"))?;
            read.insert(digest, delta);
        }
        // Parsing is CPU work: off the async threads.
        let (mut inv, rpmdb) = tokio::task::spawn_blocking(move || {
            let inv = stack.inventory();
            let rpmdb = stack.rpm_database().map(|(l, p, b)| (l, p.to_owned(), b.to_vec()));
            (inv, rpmdb)
        })
        .await?;
        if let Some((layer, path, bytes)) = rpmdb.as_ref().map(|(l, p, b)| (*l, p.as_str(), &b[..])) {
            match read_rpmdb(bytes, layer, path).await {
                Ok(pkgs) => {
                    inv.packages.extend(pkgs);
                    inv.packages.sort();
                }
                Err(e) => {
                    warn!(error = %format!("{e:#}"), "failed to read the RPM database");
                    inv.unreadable += 1;
                }
            }
        }
        Ok((inv, layers))
    }

    /// Scan one manifest (an image, or an index and each of its images).
    pub async fn scan(&self, p: &ScanPayload) -> anyhow::Result<()> {
        let repo: RepoName = p.repo.parse()?;
        let digest: Digest = p.digest.parse()?;
        let now = berth_auth::now_ms();
        self.store.set_scan_state(&p.digest, &p.repo, "running", None, now).await?;
        let result = match tokio::time::timeout(self.budget, self.scan_inner(&repo, &digest, p.sbom)).await {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!("the scan ran out of time")),
        };
        // Running out of time anywhere (reading layers included) gets one readable reason.
        let result = result.map_err(|e| {
            if format!("{e:#}").contains("the scan ran out of time") {
                anyhow::anyhow!(
                    "the scan took longer than its budget of {:?} (scanner.timeout); the image is too large or too \
                     complex to scan within it",
                    self.budget
                )
            } else {
                e
            }
        });
        if let Err(e) = &result {
            self.store.complete_scan(&p.digest, &p.repo, Err(&format!("{e:#}")), berth_auth::now_ms()).await?;
        }
        result
    }

    /// Record that a scan will not be tried again (its job was given up): the artifact's scan
    /// status becomes `failed` with `reason`, never `running` for ever.
    pub async fn give_up(&self, p: &ScanPayload, reason: &str) -> anyhow::Result<()> {
        self.store.complete_scan(&p.digest, &p.repo, Err(reason), berth_auth::now_ms()).await?;
        Ok(())
    }

    async fn scan_inner(&self, repo: &RepoName, digest: &Digest, sbom: bool) -> anyhow::Result<()> {
        let (generation, db) = self.database().await?;
        let m = self.registry.manifest_get(repo, &Reference::Digest(digest.clone()), true).await?;
        let bytes = m.bytes.context("manifest bytes")?;
        let manifest: Value = serde_json::from_slice(&bytes)?;
        if let Some(children) = manifest["manifests"].as_array() {
            // An index: scan each image; the index's report is the union of theirs.
            for c in children {
                let Some(cd) = c["digest"].as_str() else { continue };
                let child: Digest = cd.parse()?;
                Box::pin(self.scan_image(repo, &child, &db, generation, sbom)).await?;
            }
            let all = self.index_report(repo, digest).await?.context("an index")?;
            let all = serde_json::to_string(&all)?;
            self.store
                .complete_scan(&digest.to_string(), repo.as_str(), Ok((&all, generation)), berth_auth::now_ms())
                .await?;
            return Ok(());
        }
        self.scan_image(repo, digest, &db, generation, sbom).await?;
        Ok(())
    }

    async fn scan_image(
        &self,
        repo: &RepoName,
        digest: &Digest,
        db: &Database,
        generation: i64,
        sbom: bool,
    ) -> anyhow::Result<Report> {
        let m = self.registry.manifest_get(repo, &Reference::Digest(digest.clone()), true).await?;
        let bytes = m.bytes.context("manifest bytes")?;
        let manifest: Value = serde_json::from_slice(&bytes)?;
        let now = berth_auth::now_ms();
        let d = digest.to_string();
        // A Helm chart or another artifact: no layer is read, no inventory kept, and the report
        // says why there are no findings.
        let config_type = manifest["config"]["mediaType"].as_str().unwrap_or("");
        if let Some(why) = berth_scan::report::not_an_image(config_type, manifest["artifactType"].as_str()) {
            let report = Report { not_applicable: Some(why), ..Report::default() };
            self.store
                .complete_scan(&d, repo.as_str(), Ok((&serde_json::to_string(&report)?, generation)), now)
                .await?;
            return Ok(report);
        }
        let deadline = std::time::Instant::now() + self.budget;
        let (inv, layers) = self.inventory_of(repo, &manifest, deadline).await?;
        self.store
            .put_inventory(&d, &serde_json::to_string(&json!({"inventory": inv, "layers": layers}))?, now)
            .await?;
        let mut report = scan(&inv, db);
        self.store.complete_scan(&d, repo.as_str(), Ok((&serde_json::to_string(&report)?, generation)), now).await?;
        // An import that landed while the layers were read: match again (a re-evaluation that
        // ran meanwhile may not have seen this inventory yet).
        if self.store.vuln_generation().await? != generation {
            let (g, fresh) = self.database().await?;
            report = scan(&inv, &fresh);
            self.store.put_report(&d, repo.as_str(), &serde_json::to_string(&report)?, g, berth_auth::now_ms()).await?;
        }
        if sbom {
            for format in ["cyclonedx", "spdx"] {
                self.push_sbom(repo, digest, &m.record.media_type, bytes.len(), format).await?;
            }
        }
        Ok(report)
    }

    /// The union of the stored reports of an index's images (`None` if it is not an index).
    async fn index_report(&self, repo: &RepoName, digest: &Digest) -> anyhow::Result<Option<Report>> {
        let m = self.registry.manifest_get(repo, &Reference::Digest(digest.clone()), true).await?;
        let manifest: Value = serde_json::from_slice(&m.bytes.context("manifest bytes")?)?;
        let Some(children) = manifest["manifests"].as_array() else { return Ok(None) };
        let mut all = Report::default();
        let mut not_applicable = Vec::new();
        for c in children {
            let Some(cd) = c["digest"].as_str() else { continue };
            let Some(text) = self.store.scan(cd).await?.and_then(|r| r.report) else { continue };
            let r: Report = serde_json::from_str(&text)?;
            not_applicable.extend(r.not_applicable.clone());
            all.packages += r.packages;
            all.unparsable += r.unparsable;
            all.unreadable += r.unreadable;
            for f in r.findings {
                if !all.findings.iter().any(|x| x.id == f.id && x.package == f.package && x.version == f.version) {
                    all.findings.push(f);
                }
            }
        }
        all.findings.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.id.cmp(&b.id)));
        // Not applicable only when it applies to none of the images.
        if !children.is_empty() && not_applicable.len() == children.len() {
            all.not_applicable = not_applicable.into_iter().next();
        }
        Ok(Some(all))
    }

    /// Push an SBOM of `subject` as a referrer artifact.
    async fn push_sbom(
        &self,
        repo: &RepoName,
        subject: &Digest,
        subject_media_type: &str,
        subject_size: usize,
        format: &str,
    ) -> anyhow::Result<Digest> {
        let doc =
            sbom_document(&*self.store, repo.as_str(), &subject.to_string(), format).await?.context("no inventory")?;
        let bytes = serde_json::to_vec_pretty(&doc)?;
        let media = sbom_media_type(format);
        let layer = Digest::sha256_of(&bytes);
        let config = Digest::sha256_of(EMPTY_CONFIG);
        for (d, b) in [(&config, EMPTY_CONFIG.to_vec()), (&layer, bytes.clone())] {
            let stream: berth_blob::ByteStream =
                Box::pin(futures::stream::once(async move { Ok::<_, std::io::Error>(bytes::Bytes::from(b)) }));
            self.registry.upload_monolithic(repo, "system", d, stream).await?;
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": berth_types::media::OCI_MANIFEST,
            "artifactType": media,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config.to_string(), "size": EMPTY_CONFIG.len()},
            "layers": [{"mediaType": media, "digest": layer.to_string(), "size": bytes.len(),
                        "annotations": {"org.opencontainers.image.title": format!("sbom.{format}.json")}}],
            "subject": {"mediaType": subject_media_type, "digest": subject.to_string(), "size": subject_size},
            "annotations": {"org.opencontainers.image.created": berth_auth::rfc3339(berth_auth::now_ms()),
                            "dev.berth.sbom.format": format},
        });
        let body = bytes::Bytes::from(serde_json::to_vec(&manifest)?);
        let digest = Digest::sha256_of(&body);
        self.registry
            .manifest_put(
                repo,
                &Reference::Digest(digest.clone()),
                Some(berth_types::media::OCI_MANIFEST),
                body,
                &[],
                &berth_meta::Origin::system(),
            )
            .await?;
        Ok(digest)
    }

    /// Re-match every stored inventory against the current advisories (no layer is read),
    /// again if another import landed meanwhile (its own job was a no-op while this ran).
    pub async fn reevaluate(&self) -> anyhow::Result<usize> {
        loop {
            let (n, generation) = self.reevaluate_once().await?;
            if self.store.vuln_generation().await? == generation {
                return Ok(n);
            }
        }
    }

    async fn reevaluate_once(&self) -> anyhow::Result<(usize, i64)> {
        let (generation, db) = self.database().await?;
        let mut n = 0;
        let mut after = String::new();
        // A batch at a time, matched on two blocking threads (half each) while the previous
        // batch's reports are written in one transaction.
        let mut writing: Option<Vec<(String, String, String)>> = None;
        loop {
            let batch = self.store.inventories_after(&after, BATCH).await?;
            let Some((last, _, _)) = batch.last() else { break };
            after = last.clone();
            let write = async {
                match writing.take() {
                    Some(w) => self.store.put_reports(&w, generation, berth_auth::now_ms()).await,
                    None => Ok(()),
                }
            };
            let (written, reports) = tokio::join!(write, rematch(batch, db.clone()));
            written?;
            let reports = reports?;
            n += reports.len();
            writing = Some(reports);
        }
        if let Some(w) = writing {
            self.store.put_reports(&w, generation, berth_auth::now_ms()).await?;
        }
        // Indexes have no inventory of their own: their report is the union of their images'
        // (just re-evaluated); only manifest bytes are read, never a layer.
        for (d, r) in self.store.reports_without_inventory().await? {
            let (Ok(repo), Ok(digest)) = (r.parse::<RepoName>(), d.parse::<Digest>()) else { continue };
            match self.index_report(&repo, &digest).await {
                Ok(Some(all)) => {
                    self.store
                        .put_reports(&[(d, r, serde_json::to_string(&all)?)], generation, berth_auth::now_ms())
                        .await?;
                }
                Ok(None) => {}
                Err(e) => warn!(error = %format!("{e:#}"), digest = %d, "re-evaluating an index failed"),
            }
        }
        info!(generation, inventories = n, "re-evaluated stored inventories");
        Ok((n, generation))
    }
}

/// Match stored inventories `(digest, inventory, repository)` again: `(digest, repository,
/// report)`, on two blocking threads (half the batch each).
async fn rematch(
    mut batch: Vec<(String, String, String)>,
    db: Arc<Database>,
) -> anyhow::Result<Vec<(String, String, String)>> {
    let half = batch.split_off(batch.len() / 2);
    let run = |part: Vec<(String, String, String)>, db: Arc<Database>| {
        tokio::task::spawn_blocking(move || {
            part.into_iter()
                .map(|(digest, text, repo)| {
                    let stored: StoredInventory = serde_json::from_str(&text)?;
                    Ok((digest, repo, serde_json::to_string(&scan(&stored.inventory, &db))?))
                })
                .collect::<anyhow::Result<Vec<_>>>()
        })
    };
    let (a, b) = tokio::join!(run(batch, db.clone()), run(half, db));
    let mut out = a??;
    out.extend(b??);
    Ok(out)
}

/// Most RPM header rows read from one database, and most bytes of them in all.
const RPMDB_MAX_ROWS: usize = 50_000;
const RPMDB_MAX_BYTES: usize = 256 * 1024 * 1024;

/// The packages of an RPM database (`rpmdb.sqlite`): the file is written to a temporary
/// place and opened read-only with SQLite; each header blob is decoded by `berth-scan`.
///
/// The file comes from an image and is hostile until proven otherwise: `Packages` must be a
/// plain table (a view could compute rows without end), rows are streamed with a cap on their
/// number and bytes, and the whole read has a deadline.
async fn read_rpmdb(
    bytes: &[u8],
    layer: usize,
    path: &str,
) -> anyhow::Result<Vec<berth_scan::inventory::InstalledPackage>> {
    use futures::TryStreamExt;
    use sqlx::{ConnectOptions, Row};
    let tmp = tempfile::tempdir()?;
    let file = tmp.path().join("rpmdb.sqlite");
    tokio::fs::write(&file, bytes).await?;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&file)
        .read_only(true)
        .pragma("trusted_schema", "OFF")
        .connect()
        .await?;
    let read = async {
        let kind: Option<String> = sqlx::query_scalar("SELECT type FROM sqlite_master WHERE name = 'Packages'")
            .fetch_optional(&mut conn)
            .await?;
        if kind.as_deref() != Some("table") {
            anyhow::bail!("the RPM database has no Packages table (found {})", kind.as_deref().unwrap_or("nothing"));
        }
        let mut out = Vec::new();
        let (mut rows, mut total) = (0usize, 0usize);
        let mut stream = sqlx::query("SELECT blob FROM Packages").fetch(&mut conn);
        while let Some(r) = stream.try_next().await? {
            let blob: Vec<u8> = r.try_get("blob")?;
            rows += 1;
            total += blob.len();
            if rows > RPMDB_MAX_ROWS || total > RPMDB_MAX_BYTES {
                anyhow::bail!(
                    "the RPM database holds more than {RPMDB_MAX_ROWS} packages or {} of headers; not read",
                    berth_types::human_bytes(RPMDB_MAX_BYTES as u64)
                );
            }
            if let Some(p) = berth_scan::inventory::rpm_header(&blob, layer, path) {
                out.push(p);
            }
        }
        Ok(out)
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), read)
        .await
        .context("reading the RPM database took too long")?
}

/// An inventory as stored, with the layer digests SBOMs name.
#[derive(Debug, Deserialize)]
pub struct StoredInventory {
    /// The inventory.
    pub inventory: Inventory,
    /// Layer digests in order.
    #[serde(default)]
    pub layers: Vec<String>,
}

/// The media type of an SBOM format.
pub fn sbom_media_type(format: &str) -> &'static str {
    if format == "spdx" { "application/spdx+json" } else { "application/vnd.cyclonedx+json" }
}

/// The SBOM of a stored inventory, in `cyclonedx` or `spdx` format (deterministic: its time
/// is the scan's, its id derives from the digest).
pub async fn sbom_document(
    store: &dyn ScanStore,
    repo: &str,
    digest: &str,
    format: &str,
) -> anyhow::Result<Option<Value>> {
    let Some(text) = store.inventory(digest).await? else { return Ok(None) };
    let stored: StoredInventory = serde_json::from_str(&text)?;
    let created = store.scan(digest).await?.and_then(|r| r.finished_at).unwrap_or(0);
    let created = berth_auth::rfc3339(created);
    use sha2::Digest as _;
    let h = hex::encode(sha2::Sha256::digest(format!("{digest}/{format}").as_bytes()));
    let uuid = format!("{}-{}-5{}-8{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32]);
    let subject = berth_scan::sbom::Subject { repository: repo, digest, layers: &stored.layers };
    let info = berth_scan::sbom::DocInfo { created: &created, uuid: &uuid, tool_version: env!("CARGO_PKG_VERSION") };
    Ok(Some(match format {
        "spdx" => berth_scan::sbom::spdx(&stored.inventory, &subject, &info),
        _ => berth_scan::sbom::cyclonedx(&stored.inventory, &subject, &info),
    }))
}

/// The job that scans `digest` in `repo` (de-duplicated while one is queued or running).
pub fn scan_job(repo: &str, digest: &str, sbom: bool) -> NewJob {
    let payload = ScanPayload { repo: repo.to_owned(), digest: digest.to_owned(), sbom };
    NewJob {
        kind: SCAN.into(),
        payload: serde_json::to_string(&payload).unwrap_or_default(),
        dedup_key: Some(format!("scan:{digest}")),
        max_attempts: 3,
        run_after: 0,
    }
}

/// The scanner's severity for a project's threshold.
fn severity_of(t: berth_types::SeverityThreshold) -> berth_scan::Severity {
    berth_scan::Severity::parse(t.as_str()).unwrap_or(berth_scan::Severity::Low)
}

/// The scanning service as the HTTP crates see it: scan records, requests for scans,
/// CVE allowlists, pull blocking and SBOM documents.
pub struct Scanning {
    store: Arc<dyn ScanStore>,
}

impl Scanning {
    /// The service over `store`.
    pub fn new(store: Arc<dyn ScanStore>) -> Self {
        Scanning { store }
    }

    /// Record a CVE export asked for by a user; its id.
    pub async fn create_export(&self, user_id: i64, user_name: &str, request: &str) -> Result<i64, MetaError> {
        self.store.create_export(user_id, user_name, request, berth_auth::now_ms()).await
    }

    /// One CVE export, with its CSV once made.
    pub async fn export(&self, id: i64) -> Result<Option<berth_meta::ExportRecord>, MetaError> {
        self.store.export(id).await
    }

    /// CVE exports, newest first (one user's, or everyone's).
    pub async fn exports(&self, user_id: Option<i64>) -> Result<Vec<berth_meta::ExportRecord>, MetaError> {
        self.store.exports(user_id).await
    }

    /// End a CVE export.
    pub async fn finish_export(&self, id: i64, status: &str, text: &str, csv: Option<&str>) -> Result<(), MetaError> {
        self.store.finish_export(id, status, text, csv, berth_auth::now_ms()).await
    }

    /// The scan record of a manifest.
    pub async fn record(&self, digest: &str) -> Result<Option<ScanRecord>, MetaError> {
        self.store.scan(digest).await
    }

    /// Every scan record.
    pub async fn records(&self) -> Result<Vec<ScanRecord>, MetaError> {
        self.store.scans().await
    }

    /// Ask for scans (logged as `scan.requested`; the `scan-on-push` consumer queues the jobs).
    pub async fn request(&self, requests: &[ScanRequest], origin: &Origin) -> Result<(), MetaError> {
        self.store.request_scans(requests, berth_auth::now_ms(), origin).await
    }

    /// The allowlist of `scope` (`""` the system's, else a project name).
    pub async fn allowlist(&self, scope: &str) -> Result<Vec<(String, i64)>, MetaError> {
        self.store.allowlist(scope).await
    }

    /// Replace the allowlist of `scope` (logged as `allowlist.changed`).
    pub async fn put_allowlist(&self, scope: &str, items: &[(String, i64)], origin: &Origin) -> Result<(), MetaError> {
        self.store.put_allowlist(scope, items, berth_auth::now_ms(), origin).await
    }

    /// The `scan_overview` of a manifest in Harbor's shape (keyed by [`REPORT_MIME`]), with
    /// the project's allowlist applied; `None` when it was never scanned. The management API's
    /// artifacts and the webhooks' scan events both show it.
    pub async fn harbor_overview(&self, project: &ProjectRecord, digest: &str) -> anyhow::Result<Option<Value>> {
        let Some(rec) = self.record(digest).await? else { return Ok(None) };
        let ids = if rec.report.is_some() { self.allowed_ids(project).await? } else { Vec::new() };
        overview_of(&rec, &ids).map(Some)
    }

    /// [`Scans::harbor_overview`] of each of `digests` that has a scan record, by digest: two
    /// queries for a page of artifacts, not two per artifact.
    pub async fn harbor_overviews(
        &self,
        project: &ProjectRecord,
        digests: &[String],
    ) -> anyhow::Result<std::collections::HashMap<String, Value>> {
        let records = self.store.scans_of(digests).await?;
        let ids =
            if records.iter().any(|r| r.report.is_some()) { self.allowed_ids(project).await? } else { Vec::new() };
        let mut out = std::collections::HashMap::new();
        for rec in &records {
            out.insert(rec.digest.clone(), overview_of(rec, &ids)?);
        }
        Ok(out)
    }

    /// The CVE ids exempt in `project` now.
    pub async fn allowed_ids(&self, project: &ProjectRecord) -> anyhow::Result<Vec<String>> {
        allowed_ids(&*self.store, project, berth_auth::now_ms()).await
    }

    /// Why a pull must be refused by the project's vulnerability policy, if it must.
    pub async fn pull_blocked(
        &self,
        project: &ProjectRecord,
        repo: &str,
        digest: &str,
        artifact_type: Option<&str>,
    ) -> anyhow::Result<Option<String>> {
        pull_blocked(&*self.store, project, repo, digest, artifact_type, berth_auth::now_ms()).await
    }

    /// Import OSV data from `path`, which came from `location` (the caller queues
    /// [`reevaluate_job`]).
    pub async fn import(&self, path: &Path, location: &str) -> anyhow::Result<ImportStats> {
        import_into(&*self.store, path, location).await
    }

    /// The imported advisory sources and the import generation (`berth vulndb status`).
    pub async fn vulndb_status(&self) -> Result<(Vec<VulnSource>, i64), MetaError> {
        Ok((self.store.vuln_sources().await?, self.store.vuln_generation().await?))
    }

    /// The SBOM (`spdx` or `cyclonedx`) of a scanned manifest.
    pub async fn sbom_document(&self, repo: &str, digest: &str, format: &str) -> anyhow::Result<Option<Value>> {
        sbom_document(&*self.store, repo, digest, format).await
    }
}

/// Queues a scan of every pushed manifest whose project asks for scans or SBOMs on push,
/// and of every manifest somebody asked to scan (`scan.requested`) (consumer
/// `scan-on-push`); the job is enqueued in the same transaction as the cursor moves, so a
/// push is scanned once even across a crash. SBOMs Berth pushes are not scanned.
pub struct ScanOnPush {
    auth: std::sync::Arc<berth_auth::Auth>,
    meta: Arc<SqlMetaStore>,
}

impl ScanOnPush {
    /// The consumer, reading project settings through `auth`, repository settings (ECR's
    /// `scanOnPush`) from `meta`.
    pub fn new(auth: std::sync::Arc<berth_auth::Auth>, meta: Arc<SqlMetaStore>) -> Self {
        ScanOnPush { auth, meta }
    }
}

/// The settings key of ECR's registry scanning configuration.
pub const REGISTRY_SCANNING: &str = "registry_scanning";

/// ECR's registry scanning configuration (`PutRegistryScanningConfiguration`), in its JSON
/// shape: rules that scan repositories matching wildcard filters on push (`SCAN_ON_PUSH`, and
/// `CONTINUOUS_SCAN`, which Berth's re-evaluation of stored reports on every database update
/// already gives) or only when asked (`MANUAL`). Both scan types run Berth's scanner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryScanning {
    /// `BASIC` or `ENHANCED`.
    #[serde(rename = "scanType")]
    pub scan_type: String,
    /// At most two rules.
    #[serde(default)]
    pub rules: Vec<ScanningRule>,
}

/// One rule of [`RegistryScanning`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanningRule {
    /// `SCAN_ON_PUSH`, `CONTINUOUS_SCAN` or `MANUAL`.
    #[serde(rename = "scanFrequency")]
    pub scan_frequency: String,
    /// Which repositories (full names) the rule covers.
    #[serde(rename = "repositoryFilters")]
    pub repository_filters: Vec<ScanningFilter>,
}

/// A repository filter: a `*` wildcard on the full repository name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanningFilter {
    /// The pattern.
    pub filter: String,
    /// `WILDCARD`.
    #[serde(rename = "filterType")]
    pub filter_type: String,
}

impl Default for RegistryScanning {
    fn default() -> Self {
        RegistryScanning { scan_type: "BASIC".into(), rules: Vec::new() }
    }
}

impl RegistryScanning {
    /// Check it as ECR does; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !matches!(self.scan_type.as_str(), "BASIC" | "ENHANCED") {
            return Err(format!("scanType is BASIC or ENHANCED, not {:?}", self.scan_type));
        }
        if self.rules.len() > 2 {
            return Err(format!("at most 2 rules, not {}", self.rules.len()));
        }
        for r in &self.rules {
            if !matches!(r.scan_frequency.as_str(), "SCAN_ON_PUSH" | "CONTINUOUS_SCAN" | "MANUAL") {
                return Err(format!(
                    "scanFrequency is SCAN_ON_PUSH, CONTINUOUS_SCAN or MANUAL, not {:?}",
                    r.scan_frequency
                ));
            }
            if r.repository_filters.is_empty() || r.repository_filters.len() > 100 {
                return Err("each rule must have 1 to 100 repositoryFilters".into());
            }
            for f in &r.repository_filters {
                if f.filter_type != "WILDCARD" {
                    return Err(format!("filterType is WILDCARD, not {:?}", f.filter_type));
                }
                let ok = !f.filter.is_empty()
                    && f.filter.len() <= 256
                    && f.filter.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"*/._-".contains(&b));
                if !ok {
                    return Err(format!(
                        "filter {:?} must be 1 to 256 of a-z, 0-9, '*', '/', '.', '_' and '-'",
                        f.filter
                    ));
                }
            }
            check_scan_filters(r.repository_filters.iter().map(|f| f.filter.as_str()))?;
        }
        Ok(())
    }

    /// Does a rule scan pushes to `repo` (its full name)?
    pub fn on_push(&self, repo: &str) -> bool {
        self.rules.iter().filter(|r| r.scan_frequency != "MANUAL").any(|r| {
            PatternSet::new(
                r.repository_filters.iter().map(|f| f.filter.as_str()),
                Syntax::Wildcard,
                PatternOptions::default(),
            )
            .is_ok_and(|set| set.matches(repo))
        })
    }
}

#[async_trait::async_trait]
impl berth_meta::Consumer for ScanOnPush {
    fn name(&self) -> &str {
        "scan-on-push"
    }

    async fn effects(
        &self,
        events: &[berth_meta::EventRecord],
    ) -> Result<Vec<berth_meta::Effect>, berth_meta::ConsumerError> {
        let mut out = Vec::new();
        let mut registry: Option<Option<RegistryScanning>> = None;
        for e in events.iter().map(|e| &e.event) {
            let (Some(repo), Some(digest)) = (e.repo.as_deref(), e.digest.as_deref()) else { continue };
            if e.kind == berth_meta::EventKind::ScanRequested {
                let sbom = e.data.get("sbom").and_then(|v| v.as_bool()).unwrap_or(false);
                out.push(berth_meta::Effect::Job(scan_job(repo, digest, sbom)));
                continue;
            }
            if e.kind != berth_meta::EventKind::ArtifactPushed {
                continue;
            }
            if is_sbom(e.data.get("artifact_type").and_then(|t| t.as_str())) {
                continue;
            }
            let Some(project) = self.auth.project(berth_auth::project_of(repo)).await? else { continue };
            if let Some(sbom) = wants_scan(&project, repo) {
                out.push(berth_meta::Effect::Job(scan_job(repo, digest, sbom)));
                continue;
            }
            // ECR's settings: the repository's scanOnPush, the registry's scanning rules.
            let repo_wants = match repo.parse::<RepoName>() {
                Ok(name) => berth_meta::MetaStore::repo_setting(&*self.meta, &name, "scanning")
                    .await?
                    .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                    .is_some_and(|v| v["scanOnPush"] == true),
                Err(_) => false,
            };
            // The registry's rules are read once per batch, and only if some push needs them.
            if !repo_wants && registry.is_none() {
                let stored = self.auth.stored_setting(REGISTRY_SCANNING).await?;
                registry = Some(stored.and_then(|v| serde_json::from_value::<RegistryScanning>(v).ok()));
            }
            let registry_wants = || registry.as_ref().and_then(Option::as_ref).is_some_and(|r| r.on_push(repo));
            if repo_wants || registry_wants() {
                out.push(berth_meta::Effect::Job(scan_job(repo, digest, project.settings.auto_sbom)));
            }
        }
        Ok(out)
    }
}

/// Does a project want this push scanned (`auto_scan`, or `auto_sbom_generation`), given its
/// `scan_filters` (comma-separated `*` patterns on the repository name within the project,
/// as ECR's scanning filters; `?` is one character)? Returns `Some(sbom)` when it does.
pub fn wants_scan(project: &berth_meta::ProjectRecord, repo: &str) -> Option<bool> {
    let settings = &project.settings;
    if !settings.auto_scan && !settings.auto_sbom {
        return None;
    }
    let short = repo.strip_prefix(&format!("{}/", project.name)).unwrap_or(repo);
    if !settings.scan_filters.is_empty()
        && !PatternSet::new(
            settings.scan_filters.iter().map(String::as_str),
            Syntax::Wildcard,
            PatternOptions::default(),
        )
        .is_ok_and(|set| set.matches(short) || set.matches(repo))
    {
        return None;
    }
    Some(settings.auto_sbom)
}

/// Do these scan filters compile as patterns (within the engine's limits)?
pub fn check_scan_filters<'a>(filters: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
    PatternSet::new(filters, Syntax::Wildcard, PatternOptions::default()).map(|_| ()).map_err(|e| e.to_string())
}

/// Is this an SBOM artifact (which the scanner itself pushes)?
pub fn is_sbom(artifact_type: Option<&str>) -> bool {
    artifact_type.is_some_and(|t| t == "application/spdx+json" || t == "application/vnd.cyclonedx+json")
}

/// The CVE ids exempt for a project now (items past their expiry do not count): as Harbor,
/// metadata `reuse_sys_cve_allowlist` `true` means the system list only and `false` the
/// project's only; unset, both.
pub async fn allowed_ids(
    store: &dyn ScanStore,
    project: &berth_meta::ProjectRecord,
    now: i64,
) -> anyhow::Result<Vec<String>> {
    let scopes: &[&str] = match project.settings.reuse_sys_cve_allowlist {
        Some(true) => &[""],
        Some(false) => &[project.name.as_str()],
        None => &["", project.name.as_str()],
    };
    let mut ids = Vec::new();
    for scope in scopes {
        for (id, exp) in store.allowlist(scope).await? {
            if exp < 0 || exp > now {
                ids.push(id);
            }
        }
    }
    Ok(ids)
}

/// Why a pull of `digest` must be refused under the project's `prevent_vul` policy, if it
/// must: findings at or above `severity` (not allowlisted), or, with `prevent_unscanned`, no
/// report yet.
pub async fn pull_blocked(
    store: &dyn ScanStore,
    project: &berth_meta::ProjectRecord,
    repo: &str,
    digest: &str,
    artifact_type: Option<&str>,
    now: i64,
) -> anyhow::Result<Option<String>> {
    if !project.settings.prevent_vulnerable {
        return Ok(None);
    }
    let threshold = severity_of(project.settings.severity);
    let rec = store.scan(digest).await?;
    let Some(text) = rec.as_ref().and_then(|r| r.report.as_deref()) else {
        if project.settings.prevent_unscanned && !is_sbom(artifact_type) {
            return Ok(Some(format!(
                "{repo}@{digest} has not been scanned yet; project {} blocks unscanned images",
                project.name
            )));
        }
        return Ok(None);
    };
    let report: Report = serde_json::from_str(text)?;
    let ids = allowed_ids(store, project, now).await?;
    let (count, highest) = report.blocking(threshold, &berth_scan::report::allowlisted(&ids));
    Ok((count > 0).then(|| {
        format!(
            "{repo}@{digest} has {count} vulnerabilit{} at or above {threshold} (highest: {}); project {} \
             prevents pulling it (prevent_vul); fix them or allowlist the CVE ids",
            if count == 1 { "y" } else { "ies" },
            highest.unwrap_or(threshold),
            project.name
        )
    }))
}

/// Harbor's `scan_overview` of one scan record, with `ids` allowlisted.
fn overview_of(rec: &ScanRecord, ids: &[String]) -> anyhow::Result<Value> {
    let time = berth_auth::rfc3339;
    let mut o = json!({
        "report_id": rec.digest, "scan_status": status_word(rec), "scanner": scanner_json(),
        "start_time": rec.started_at.map(time), "end_time": rec.finished_at.map(time),
        "complete_percent": if rec.status == "done" { 100 } else { 0 },
    });
    if let (Some(start), Some(end)) = (rec.started_at, rec.finished_at) {
        o["duration"] = json!((end - start).max(0) / 1000);
    }
    if let Some(e) = &rec.error {
        o["error"] = json!(e);
    }
    if let Some(text) = &rec.report {
        let report: Report = serde_json::from_str(text).context("a stored scan report")?;
        let sum = report.summary(&berth_scan::report::allowlisted(ids));
        o["severity"] = json!(sum.highest.map(|h| h.as_str()).unwrap_or("None"));
        o["summary"] = json!({"total": sum.total, "fixable": sum.fixable, "summary": sum.by_severity});
        if let Some(why) = &report.not_applicable {
            o["not_applicable"] = json!(why);
        }
    }
    Ok(json!({ REPORT_MIME: o }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(pattern: &str, text: &str) -> bool {
        berth_policy::Pattern::new(pattern, Syntax::Wildcard, PatternOptions::default()).unwrap().matches(text)
    }

    /// An rpmdb.sqlite built by `sql`, as bytes.
    async fn rpmdb(sql: &[&str]) -> Vec<u8> {
        use sqlx::ConnectOptions;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rpmdb.sqlite");
        let mut conn =
            sqlx::sqlite::SqliteConnectOptions::new().filename(&path).create_if_missing(true).connect().await.unwrap();
        for q in sql {
            sqlx::query(q).execute(&mut conn).await.unwrap();
        }
        drop(conn);
        std::fs::read(&path).unwrap()
    }

    #[tokio::test]
    async fn crafted_rpm_databases_are_refused_within_bounds() {
        // A view that would compute megabyte rows without end.
        let endless =
            rpmdb(&["CREATE VIEW Packages AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)
             SELECT zeroblob(1000000) AS blob FROM c"])
            .await;
        let started = std::time::Instant::now();
        let err = read_rpmdb(&endless, 0, "var/lib/rpm/rpmdb.sqlite").await.unwrap_err();
        assert!(format!("{err:#}").contains("no Packages table (found view)"), "{err:#}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // Too many rows: refused once past the cap, not read to the end.
        let many = rpmdb(&[
            "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY, blob BLOB)",
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 60000)
             INSERT INTO Packages (blob) SELECT x'00' FROM c",
        ])
        .await;
        let err = read_rpmdb(&many, 0, "var/lib/rpm/rpmdb.sqlite").await.unwrap_err();
        assert!(format!("{err:#}").contains("more than 50000 packages"), "{err:#}");
        // Garbage headers (lying counts and offsets) are skipped, not trusted.
        let lying = rpmdb(&[
            "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY, blob BLOB)",
            "INSERT INTO Packages (blob) VALUES (x'ffffffffffffffff'), (x'0000000100000010000003e8000000067fffffff'), (x'')",
        ])
        .await;
        assert!(read_rpmdb(&lying, 0, "var/lib/rpm/rpmdb.sqlite").await.unwrap().is_empty());
        // Not a database at all.
        assert!(read_rpmdb(b"not sqlite", 0, "var/lib/rpm/rpmdb.sqlite").await.is_err());
    }

    #[test]
    fn scan_filters_are_wildcards() {
        assert!(glob("prod-*", "prod-web"));
        assert!(glob("*", "anything"));
        assert!(glob("team/*/api", "team/a/api"));
        assert!(!glob("prod-*", "dev-web"));
        assert!(glob("exact", "exact") && !glob("exact", "exactly"));
        assert!(!glob(&"*a".repeat(40), &"a".repeat(30)), "linear, not exponential");
        assert!(glob("*", "") && glob("a*b*c", "abxxbc") && !glob("a*b*c", "abxxb"));
        let mut p = berth_meta::ProjectRecord {
            id: 1,
            name: "p".into(),
            owner_id: 1,
            settings: Default::default(),
            created_at: 0,
            updated_at: 0,
        };
        assert_eq!(wants_scan(&p, "p/app"), None);
        p.settings.auto_scan = true;
        assert_eq!(wants_scan(&p, "p/app"), Some(false));
        p.settings.scan_filters = vec!["prod-*".into(), "web".into()];
        assert_eq!(wants_scan(&p, "p/app"), None);
        assert_eq!(wants_scan(&p, "p/prod-api"), Some(false));
        assert_eq!(wants_scan(&p, "p/web"), Some(false));
        p.settings.auto_sbom = true;
        assert_eq!(wants_scan(&p, "p/web"), Some(true));
    }
}
