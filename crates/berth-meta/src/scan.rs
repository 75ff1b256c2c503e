//! Scanner data: the imported advisory database (OSV records by source, with a generation
//! that changes on every import), image inventories by manifest digest, scan reports, and
//! CVE allowlists ([`ScanStore`]). Documents are stored as the JSON `berth-scan` writes.

use sqlx::Row;

use crate::MetaError;
use crate::events::{EventKind, NewEvent, Origin, insert_events};
use crate::sql::SqlMetaStore;

/// A scan somebody asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRequest {
    /// The manifest.
    pub digest: String,
    /// The repository it was found in.
    pub repo: String,
    /// Push an SBOM too.
    pub sbom: bool,
}

/// An imported advisory source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VulnSource {
    /// Its name (the file name without extensions, e.g. `debian-12`).
    pub name: String,
    /// Where it was imported from.
    pub location: String,
    /// When (Unix ms).
    pub imported_at: i64,
    /// Records kept.
    pub records: i64,
    /// Withdrawn records skipped.
    pub withdrawn: i64,
    /// The newest `modified` among its records.
    pub newest_modified: String,
}

/// The scan state and report of one manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRecord {
    /// Manifest digest.
    pub digest: String,
    /// Repository it was scanned in.
    pub repo: String,
    /// `queued`, `running`, `done`, `failed`.
    pub status: String,
    /// Why it failed.
    pub error: Option<String>,
    /// The report (JSON), once done.
    pub report: Option<String>,
    /// The advisory generation the report was made with.
    pub generation: i64,
    /// Start (Unix ms).
    pub started_at: Option<i64>,
    /// End (Unix ms).
    pub finished_at: Option<i64>,
}

/// Storage of scanner data. Contract: an import replaces its source's records and bumps the
/// generation in one transaction.
#[async_trait::async_trait]
pub trait ScanStore: Send + Sync + 'static {
    /// Replace the records of `source` with `records` (`(id, modified, json)`); returns the new generation.
    async fn import_vulns(&self, source: &VulnSource, records: &[(String, String, String)]) -> Result<i64, MetaError>;
    /// Up to `limit` records `(id, json)` with ids after `after`, in id order (a page: an
    /// index is built without holding every record's text at once).
    async fn vuln_records_after(&self, after: &str, limit: i64) -> Result<Vec<(String, String)>, MetaError>;
    /// The current generation (0 before any import).
    async fn vuln_generation(&self) -> Result<i64, MetaError>;
    /// Imported sources.
    async fn vuln_sources(&self) -> Result<Vec<VulnSource>, MetaError>;

    /// Store a manifest's inventory (JSON).
    async fn put_inventory(&self, digest: &str, inventory: &str, now: i64) -> Result<(), MetaError>;
    /// A manifest's inventory.
    async fn inventory(&self, digest: &str) -> Result<Option<String>, MetaError>;
    /// Up to `limit` stored inventories with a scan record, after digest `after` in digest
    /// order: `(digest, inventory, repository)`.
    async fn inventories_after(&self, after: &str, limit: i64) -> Result<Vec<(String, String, String)>, MetaError>;
    /// `(digest, repository)` of reports without an inventory of their own (indexes, and
    /// artifacts scanning does not apply to).
    async fn reports_without_inventory(&self) -> Result<Vec<(String, String)>, MetaError>;

    /// Record a scan's state (keeps an earlier report until a new one replaces it).
    async fn set_scan_state(
        &self,
        digest: &str,
        repo: &str,
        status: &str,
        error: Option<&str>,
        now: i64,
    ) -> Result<(), MetaError>;
    /// Store a finished report.
    async fn put_report(
        &self,
        digest: &str,
        repo: &str,
        report: &str,
        generation: i64,
        now: i64,
    ) -> Result<(), MetaError>;
    /// Store finished reports `(digest, repository, report)` of one generation, in one
    /// transaction (a re-evaluation writes them by the hundred).
    async fn put_reports(&self, rows: &[(String, String, String)], generation: i64, now: i64) -> Result<(), MetaError>;
    /// Store the outcome of a scan — `Ok((report, generation))` or `Err(error)` — and log
    /// `scan.completed` (by `system`), in one transaction.
    async fn complete_scan(
        &self,
        digest: &str,
        repo: &str,
        outcome: Result<(&str, i64), &str>,
        now: i64,
    ) -> Result<(), MetaError>;
    /// The scan record of a manifest.
    async fn scan(&self, digest: &str) -> Result<Option<ScanRecord>, MetaError>;
    /// Every scan record.
    async fn scans(&self) -> Result<Vec<ScanRecord>, MetaError>;
    /// The scan records of these manifests (those that have one), in one query per thousand.
    async fn scans_of(&self, digests: &[String]) -> Result<Vec<ScanRecord>, MetaError>;

    /// Replace the allowlist of `scope` (`""`: system-wide; else a project name).
    async fn put_allowlist(
        &self,
        scope: &str,
        items: &[(String, i64)],
        now: i64,
        origin: &Origin,
    ) -> Result<(), MetaError>;
    /// Ask for scans: mark each artifact `queued` (unless a scan is running) and log
    /// `scan.requested` for it, in one transaction; the scan consumer queues the jobs.
    async fn request_scans(&self, requests: &[ScanRequest], now: i64, origin: &Origin) -> Result<(), MetaError>;
    /// The allowlist of `scope`: `(cve id, expires at Unix ms or -1)`.
    async fn allowlist(&self, scope: &str) -> Result<Vec<(String, i64)>, MetaError>;

    /// Record a CVE export asked for by a user (`Running`); its id.
    async fn create_export(&self, user_id: i64, user_name: &str, request: &str, now: i64) -> Result<i64, MetaError>;
    /// One export (with its CSV, once made).
    async fn export(&self, id: i64) -> Result<Option<ExportRecord>, MetaError>;
    /// Exports, newest first (one user's, or everyone's), without their CSV.
    async fn exports(&self, user_id: Option<i64>) -> Result<Vec<ExportRecord>, MetaError>;
    /// End an export: `Success` with its CSV, or `Error` with why.
    async fn finish_export(
        &self,
        id: i64,
        status: &str,
        status_text: &str,
        csv: Option<&str>,
        now: i64,
    ) -> Result<(), MetaError>;
}

/// A CVE export (Harbor's `ScanDataExportExecution`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExportRecord {
    /// Its id.
    pub id: i64,
    /// Who asked.
    pub user_id: i64,
    /// Their name.
    pub user_name: String,
    /// The request as JSON.
    pub request: String,
    /// `Running`, `Success` or `Error`.
    pub status: String,
    /// What happened, in words.
    pub status_text: String,
    /// Started (Unix ms).
    pub started_at: i64,
    /// Ended (Unix ms).
    pub ended_at: Option<i64>,
    /// The CSV (only from [`ScanStore::export`], once made).
    pub csv: Option<String>,
    /// Whether a CSV is there to download.
    pub file_present: bool,
}

fn export_from_row(r: &sqlx::any::AnyRow, with_csv: bool) -> Result<ExportRecord, MetaError> {
    let csv: Option<String> = if with_csv { r.try_get("csv")? } else { None };
    Ok(ExportRecord {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        user_name: r.try_get("user_name")?,
        request: r.try_get("request")?,
        status: r.try_get("status")?,
        status_text: r.try_get("status_text")?,
        started_at: r.try_get("started_at")?,
        ended_at: r.try_get("ended_at")?,
        file_present: r.try_get::<i64, _>("has_csv")? != 0,
        csv,
    })
}

const EXPORT_COLS: &str = "id, user_id, user_name, request, status, status_text, started_at, ended_at, \
                           CASE WHEN csv IS NULL THEN 0 ELSE 1 END AS has_csv";

fn scan_from_row(r: &sqlx::any::AnyRow) -> Result<ScanRecord, MetaError> {
    Ok(ScanRecord {
        digest: r.try_get("digest")?,
        repo: r.try_get("repo")?,
        status: r.try_get("status")?,
        error: r.try_get("error")?,
        report: r.try_get("report")?,
        generation: r.try_get("generation")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
    })
}

const SCAN_COLS: &str = "digest, repo, status, error, report, generation, started_at, finished_at";

#[async_trait::async_trait]
impl ScanStore for SqlMetaStore {
    async fn import_vulns(&self, source: &VulnSource, records: &[(String, String, String)]) -> Result<i64, MetaError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM vuln_records WHERE source = $1").bind(&source.name).execute(&mut *tx).await?;
        for (id, modified, json) in records {
            sqlx::query(
                "INSERT INTO vuln_records (id, source, modified, record) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET source = excluded.source, modified = excluded.modified,
                 record = excluded.record",
            )
            .bind(id)
            .bind(&source.name)
            .bind(modified)
            .bind(json)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO vuln_sources (name, location, imported_at, records, withdrawn, newest_modified)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO UPDATE SET location = excluded.location,
             imported_at = excluded.imported_at, records = excluded.records, withdrawn = excluded.withdrawn,
             newest_modified = excluded.newest_modified",
        )
        .bind(&source.name)
        .bind(&source.location)
        .bind(source.imported_at)
        .bind(source.records)
        .bind(source.withdrawn)
        .bind(&source.newest_modified)
        .execute(&mut *tx)
        .await?;
        let g: i64 = sqlx::query_scalar(
            "UPDATE vuln_generation SET generation = generation + 1 WHERE id = 1 RETURNING generation",
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(g)
    }

    async fn vuln_records_after(&self, after: &str, limit: i64) -> Result<Vec<(String, String)>, MetaError> {
        let rows = sqlx::query("SELECT id, record FROM vuln_records WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| Ok((r.try_get("id")?, r.try_get("record")?))).collect()
    }

    async fn vuln_generation(&self) -> Result<i64, MetaError> {
        Ok(sqlx::query_scalar("SELECT generation FROM vuln_generation WHERE id = 1").fetch_one(self.pool()).await?)
    }

    async fn vuln_sources(&self) -> Result<Vec<VulnSource>, MetaError> {
        let rows = sqlx::query(
            "SELECT name, location, imported_at, records, withdrawn, newest_modified FROM vuln_sources ORDER BY name",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(VulnSource {
                    name: r.try_get("name")?,
                    location: r.try_get("location")?,
                    imported_at: r.try_get("imported_at")?,
                    records: r.try_get("records")?,
                    withdrawn: r.try_get("withdrawn")?,
                    newest_modified: r.try_get("newest_modified")?,
                })
            })
            .collect()
    }

    async fn put_inventory(&self, digest: &str, inventory: &str, now: i64) -> Result<(), MetaError> {
        sqlx::query(
            "INSERT INTO inventories (digest, inventory, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (digest) DO UPDATE SET inventory = excluded.inventory, created_at = excluded.created_at",
        )
        .bind(digest)
        .bind(inventory)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn inventory(&self, digest: &str) -> Result<Option<String>, MetaError> {
        Ok(sqlx::query_scalar("SELECT inventory FROM inventories WHERE digest = $1")
            .bind(digest)
            .fetch_optional(self.pool())
            .await?)
    }

    async fn inventories_after(&self, after: &str, limit: i64) -> Result<Vec<(String, String, String)>, MetaError> {
        let rows = sqlx::query(
            "SELECT i.digest, i.inventory, s.repo FROM inventories i JOIN scan_reports s ON s.digest = i.digest
             WHERE i.digest > $1 ORDER BY i.digest LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| Ok((r.try_get("digest")?, r.try_get("inventory")?, r.try_get("repo")?))).collect()
    }

    async fn reports_without_inventory(&self) -> Result<Vec<(String, String)>, MetaError> {
        let rows = sqlx::query(
            "SELECT digest, repo FROM scan_reports s WHERE report IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM inventories i WHERE i.digest = s.digest) ORDER BY digest",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| Ok((r.try_get("digest")?, r.try_get("repo")?))).collect()
    }

    async fn set_scan_state(
        &self,
        digest: &str,
        repo: &str,
        status: &str,
        error: Option<&str>,
        now: i64,
    ) -> Result<(), MetaError> {
        sqlx::query(
            "INSERT INTO scan_reports (digest, repo, status, error, report, generation, started_at, finished_at)
             VALUES ($1, $2, $3, $4, NULL, 0, $5, NULL)
             ON CONFLICT (digest) DO UPDATE SET repo = excluded.repo, status = excluded.status, error = excluded.error,
             started_at = CASE WHEN excluded.status = 'running' THEN excluded.started_at ELSE scan_reports.started_at END",
        )
        .bind(digest)
        .bind(repo)
        .bind(status)
        .bind(error)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn put_report(
        &self,
        digest: &str,
        repo: &str,
        report: &str,
        generation: i64,
        now: i64,
    ) -> Result<(), MetaError> {
        self.put_reports(&[(digest.to_owned(), repo.to_owned(), report.to_owned())], generation, now).await
    }

    async fn put_reports(&self, rows: &[(String, String, String)], generation: i64, now: i64) -> Result<(), MetaError> {
        let mut tx = self.begin_write().await?;
        for (digest, repo, report) in rows {
            sqlx::query(
                "INSERT INTO scan_reports (digest, repo, status, error, report, generation, started_at, finished_at)
                 VALUES ($1, $2, 'done', NULL, $3, $4, $5, $5)
                 ON CONFLICT (digest) DO UPDATE SET status = 'done', error = NULL, report = excluded.report,
                 generation = excluded.generation, finished_at = excluded.finished_at",
            )
            .bind(digest)
            .bind(repo)
            .bind(report)
            .bind(generation)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn complete_scan(
        &self,
        digest: &str,
        repo: &str,
        outcome: Result<(&str, i64), &str>,
        now: i64,
    ) -> Result<(), MetaError> {
        let mut tx = self.begin_write().await?;
        let (status, error, report, generation) = match outcome {
            Ok((report, generation)) => ("done", None, Some(report), generation),
            Err(e) => ("failed", Some(e), None, 0),
        };
        sqlx::query(
            "INSERT INTO scan_reports (digest, repo, status, error, report, generation, started_at, finished_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
             ON CONFLICT (digest) DO UPDATE SET status = excluded.status, error = excluded.error,
             report = CASE WHEN excluded.report IS NULL THEN scan_reports.report ELSE excluded.report END,
             generation = CASE WHEN excluded.report IS NULL THEN scan_reports.generation ELSE excluded.generation END,
             finished_at = excluded.finished_at",
        )
        .bind(digest)
        .bind(repo)
        .bind(status)
        .bind(error)
        .bind(report)
        .bind(generation)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let e = crate::NewEvent::new(crate::EventKind::ScanCompleted, now, &crate::Origin::system())
            .repo(repo)
            .digest(digest)
            .data(serde_json::json!({ "status": status, "error": error }));
        crate::events::insert_events(&mut tx, self.backend(), &[e]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn scan(&self, digest: &str) -> Result<Option<ScanRecord>, MetaError> {
        let row = sqlx::query(&format!("SELECT {SCAN_COLS} FROM scan_reports WHERE digest = $1"))
            .bind(digest)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(scan_from_row).transpose()
    }

    async fn scans_of(&self, digests: &[String]) -> Result<Vec<ScanRecord>, MetaError> {
        let mut out = Vec::new();
        for chunk in digests.chunks(crate::sql::MAX_BINDS) {
            let sql = format!(
                "SELECT {SCAN_COLS} FROM scan_reports WHERE digest IN ({})",
                crate::sql::placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for d in chunk {
                q = q.bind(d);
            }
            for row in q.fetch_all(self.pool()).await? {
                out.push(scan_from_row(&row)?);
            }
        }
        Ok(out)
    }

    async fn create_export(&self, user_id: i64, user_name: &str, request: &str, now: i64) -> Result<i64, MetaError> {
        let mut tx = self.begin_write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO cve_exports (user_id, user_name, request, status, status_text, started_at)
             VALUES ($1, $2, $3, 'Running', '', $4) RETURNING id",
        )
        .bind(user_id)
        .bind(user_name)
        .bind(request)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn export(&self, id: i64) -> Result<Option<ExportRecord>, MetaError> {
        let row = sqlx::query(&format!("SELECT {EXPORT_COLS}, csv FROM cve_exports WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(|r| export_from_row(r, true)).transpose()
    }

    async fn exports(&self, user_id: Option<i64>) -> Result<Vec<ExportRecord>, MetaError> {
        let rows = match user_id {
            Some(u) => {
                sqlx::query(&format!("SELECT {EXPORT_COLS} FROM cve_exports WHERE user_id = $1 ORDER BY id DESC"))
                    .bind(u)
                    .fetch_all(self.pool())
                    .await?
            }
            None => {
                sqlx::query(&format!("SELECT {EXPORT_COLS} FROM cve_exports ORDER BY id DESC"))
                    .fetch_all(self.pool())
                    .await?
            }
        };
        rows.iter().map(|r| export_from_row(r, false)).collect()
    }

    async fn finish_export(
        &self,
        id: i64,
        status: &str,
        status_text: &str,
        csv: Option<&str>,
        now: i64,
    ) -> Result<(), MetaError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE cve_exports SET status = $2, status_text = $3, csv = $4, ended_at = $5
             WHERE id = $1 AND status = 'Running'",
        )
        .bind(id)
        .bind(status)
        .bind(status_text)
        .bind(csv)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn scans(&self) -> Result<Vec<ScanRecord>, MetaError> {
        let rows = sqlx::query(&format!("SELECT {SCAN_COLS} FROM scan_reports ORDER BY digest"))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(scan_from_row).collect()
    }

    async fn request_scans(&self, requests: &[ScanRequest], now: i64, origin: &Origin) -> Result<(), MetaError> {
        let mut tx = self.begin_write().await?;
        let mut events = Vec::with_capacity(requests.len());
        for r in requests {
            sqlx::query(
                "INSERT INTO scan_reports (digest, repo, status, error, report, generation, started_at, finished_at)
                 VALUES ($1, $2, 'queued', NULL, NULL, 0, $3, NULL)
                 ON CONFLICT (digest) DO UPDATE SET repo = excluded.repo, status = 'queued', error = NULL
                 WHERE scan_reports.status <> 'running'",
            )
            .bind(&r.digest)
            .bind(&r.repo)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            events.push(
                NewEvent::new(EventKind::ScanRequested, now, origin)
                    .repo(&r.repo)
                    .digest(&r.digest)
                    .data(serde_json::json!({ "sbom": r.sbom })),
            );
        }
        for chunk in events.chunks(500) {
            insert_events(&mut tx, self.backend(), chunk).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn put_allowlist(
        &self,
        scope: &str,
        items: &[(String, i64)],
        now: i64,
        origin: &Origin,
    ) -> Result<(), MetaError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM cve_allowlist WHERE scope = $1").bind(scope).execute(&mut *tx).await?;
        for (cve, exp) in items {
            sqlx::query(
                "INSERT INTO cve_allowlist (scope, cve_id, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(scope)
            .bind(cve)
            .bind(exp)
            .execute(&mut *tx)
            .await?;
        }
        let mut e = NewEvent::new(EventKind::AllowlistChanged, now, origin).data(
            serde_json::json!({ "scope": if scope.is_empty() { "system" } else { scope }, "count": items.len() }),
        );
        if !scope.is_empty() {
            e = e.project(scope);
        }
        insert_events(&mut tx, self.backend(), &[e]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn allowlist(&self, scope: &str) -> Result<Vec<(String, i64)>, MetaError> {
        let rows = sqlx::query("SELECT cve_id, expires_at FROM cve_allowlist WHERE scope = $1 ORDER BY cve_id")
            .bind(scope)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| Ok((r.try_get("cve_id")?, r.try_get("expires_at")?))).collect()
    }
}
