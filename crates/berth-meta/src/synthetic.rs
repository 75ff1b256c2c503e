//! A synthetic registry for scale benchmarks (`berth admin fill`): many repositories of small
//! images written straight into the tables, in large multi-row statements, so that a million
//! manifests take minutes rather than the hours a million pushes would.
//!
//! The rows are the ones a push writes (repository, blob links, manifest, its bytes, its
//! references, tags, quota objects), consistent with each other and with the blobs given
//! (which the caller stored through the registry, so pulls of synthetic images work). No
//! events are written: consumers have nothing to catch up on.

use std::collections::HashMap;

use berth_types::Digest;

use crate::MetaError;
use crate::sql::SqlMetaStore;

/// What to make.
#[derive(Debug, Clone)]
pub struct FillSpec {
    /// Projects (`proj-000` …), which must exist; repositories are spread over them evenly.
    pub projects: Vec<String>,
    /// Repositories of small images (`<project>/repo-000000` …).
    pub repos: usize,
    /// Manifests in each repository, each with its own tag (`v0` …).
    pub manifests_per_repo: usize,
    /// Blobs linked into each repository (drawn from the pool; at most the pool's size).
    pub links_per_repo: usize,
    /// One more repository (`<first project>/big`) with this many tagged manifests.
    pub big_repo_tags: usize,
    /// One more repository (`<first project>/signed`) whose one image (`latest`) has this many
    /// referrers (artifacts with a `subject`, artifact type `application/vnd.example.sbom`).
    pub referrers: usize,
}

/// What was made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FillStats {
    /// Repositories made.
    pub repositories: u64,
    /// Manifests written (each with its content and references).
    pub manifests: u64,
    /// Tags set.
    pub tags: u64,
    /// Blobs linked into repositories.
    pub blob_links: u64,
}

/// The artifact type of the synthetic referrers.
pub const REFERRER_TYPE: &str = "application/vnd.example.sbom";
const IMAGE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const EMPTY: &str = "application/vnd.oci.empty.v1+json";

#[derive(Clone)]
enum V {
    I(i64),
    S(String),
    N,
    B(Vec<u8>),
}

/// Rows of one table, written in statements of as many rows as the bind limits allow.
struct Rows {
    table: &'static str,
    cols: &'static [&'static str],
    tail: &'static str,
    rows: Vec<Vec<V>>,
}

impl Rows {
    fn new(table: &'static str, cols: &'static [&'static str], tail: &'static str) -> Rows {
        Rows { table, cols, tail, rows: Vec::new() }
    }

    async fn write(&mut self, tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<(), MetaError> {
        let per = (crate::sql::MAX_BINDS / self.cols.len()).max(1);
        for chunk in self.rows.chunks(per) {
            let sql = format!(
                "INSERT INTO {} ({}) VALUES {} {}",
                self.table,
                self.cols.join(", "),
                crate::sql::value_rows(crate::sql::Backend::of(tx), chunk.len(), self.cols.len()),
                self.tail
            );
            let mut q = sqlx::query(&sql);
            for row in chunk {
                for v in row {
                    q = match v {
                        V::I(i) => q.bind(*i),
                        V::S(s) => q.bind(s.as_str()),
                        V::N => q.bind(None::<String>),
                        V::B(b) => q.bind(b.as_slice()),
                    };
                }
            }
            q.execute(&mut **tx).await?;
        }
        self.rows.clear();
        Ok(())
    }
}

/// The tables one batch of repositories writes.
struct Batch {
    repositories: Rows,
    repo_blobs: Rows,
    manifests: Rows,
    content: Rows,
    refs: Rows,
    tags: Rows,
    /// (digest → (size, links)) of the project being filled.
    quota: HashMap<String, (i64, i64)>,
    stats: FillStats,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            repositories: Rows::new("repositories", &["name", "created_at"], ""),
            repo_blobs: Rows::new("repo_blobs", &["repo", "digest", "created_at"], ""),
            manifests: Rows::new(
                "manifests",
                &["repo", "digest", "media_type", "artifact_type", "size", "subject", "annotations", "created_at"],
                "",
            ),
            content: Rows::new("manifest_content", &["digest", "content"], "ON CONFLICT DO NOTHING"),
            refs: Rows::new("manifest_refs", &["repo", "digest", "child", "kind"], ""),
            tags: Rows::new("tags", &["repo", "name", "digest", "updated_at"], ""),
            quota: HashMap::new(),
            stats: FillStats::default(),
        }
    }

    fn pending(&self) -> usize {
        self.repo_blobs.rows.len() + self.manifests.rows.len() + self.tags.rows.len()
    }

    fn repo(&mut self, name: &str, links: &[&(Digest, i64)], at: i64) {
        self.repositories.rows.push(vec![V::S(name.to_owned()), V::I(at)]);
        self.stats.repositories += 1;
        for (d, size) in links {
            self.repo_blobs.rows.push(vec![V::S(name.to_owned()), V::S(d.to_string()), V::I(at)]);
            self.count(d.to_string(), *size);
            self.stats.blob_links += 1;
        }
    }

    fn count(&mut self, digest: String, size: i64) {
        self.quota.entry(digest).or_insert((size, 0)).1 += 1;
    }

    /// One manifest of `repo` referencing `blobs` (config first), with `tag` and `subject`.
    #[allow(clippy::too_many_arguments)]
    fn manifest(
        &mut self,
        repo: &str,
        blobs: &[(&str, &(Digest, i64))],
        artifact_type: Option<&str>,
        subject: Option<(&Digest, i64)>,
        label: &str,
        tag: Option<&str>,
        at: i64,
    ) -> (Digest, i64) {
        let desc = |(mt, (d, size)): &(&str, &(Digest, i64))| serde_json::json!({"mediaType": mt, "digest": d.to_string(), "size": size});
        let mut doc = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": IMAGE,
            "config": desc(&blobs[0]),
            "layers": blobs[1..].iter().map(desc).collect::<Vec<_>>(),
            "annotations": {"org.example.synthetic": label},
        });
        if let Some(a) = artifact_type {
            doc["artifactType"] = a.into();
        }
        if let Some((d, size)) = subject {
            doc["subject"] = serde_json::json!({"mediaType": IMAGE, "digest": d.to_string(), "size": size});
        }
        let body = serde_json::to_vec(&doc).expect("a JSON value serializes");
        let digest = Digest::sha256_of(&body);
        let d = digest.to_string();
        let size = body.len() as i64;
        self.manifests.rows.push(vec![
            V::S(repo.to_owned()),
            V::S(d.clone()),
            V::S(IMAGE.to_owned()),
            V::S(artifact_type.unwrap_or(blobs[0].0).to_owned()),
            V::I(size),
            subject.map_or(V::N, |(s, _)| V::S(s.to_string())),
            V::S(doc["annotations"].to_string()),
            V::I(at),
        ]);
        self.content.rows.push(vec![V::S(d.clone()), V::B(body)]);
        let mut seen = Vec::new();
        for (_, (b, _)) in blobs {
            if !seen.contains(&b) {
                seen.push(b);
                self.refs.rows.push(vec![
                    V::S(repo.to_owned()),
                    V::S(d.clone()),
                    V::S(b.to_string()),
                    V::S("blob".into()),
                ]);
            }
        }
        self.count(d.clone(), size);
        if let Some(t) = tag {
            self.tags.rows.push(vec![V::S(repo.to_owned()), V::S(t.to_owned()), V::S(d), V::I(at)]);
            self.stats.tags += 1;
        }
        self.stats.manifests += 1;
        (digest, size)
    }

    async fn flush(&mut self, store: &SqlMetaStore) -> Result<(), MetaError> {
        let mut tx = store.begin_write().await?;
        for rows in [
            &mut self.repositories,
            &mut self.repo_blobs,
            &mut self.content,
            &mut self.manifests,
            &mut self.refs,
            &mut self.tags,
        ] {
            rows.write(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Write the project's quota objects and usage.
    async fn close_project(&mut self, store: &SqlMetaStore, project: &str, now: i64) -> Result<(), MetaError> {
        self.flush(store).await?;
        let mut objects = Rows::new(
            "quota_objects",
            &["project", "digest", "size", "refs"],
            "ON CONFLICT (project, digest) DO UPDATE SET refs = quota_objects.refs + excluded.refs",
        );
        let mut added = 0i64;
        for (d, (size, links)) in self.quota.drain() {
            objects.rows.push(vec![V::S(project.to_owned()), V::S(d), V::I(size), V::I(links)]);
            added += size;
        }
        let mut tx = store.begin_write().await?;
        objects.write(&mut tx).await?;
        // The blobs the caller pushed are counted already; recount the project from its objects.
        sqlx::query(
            "INSERT INTO quotas (project, hard, used, updated_at) VALUES ($1, -1, $2, $3)
             ON CONFLICT (project) DO UPDATE SET used = (SELECT COALESCE(SUM(size), 0) FROM quota_objects
             WHERE quota_objects.project = excluded.project), updated_at = excluded.updated_at",
        )
        .bind(project)
        .bind(added)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // Each repository's manifest count, as pushes keep it.
        sqlx::query(
            "UPDATE repositories SET manifest_count = c.n FROM (SELECT repo, COUNT(*) AS n FROM manifests
             WHERE repo >= $1 AND repo < $2 GROUP BY repo) AS c WHERE repositories.name = c.repo",
        )
        .bind(format!("{project}/"))
        .bind(format!("{project}0"))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Fill the store as `spec` says, with blobs from `pool` (stored already, at least 2;
/// the first is the referrers' empty config when it is `{}`). `progress` is called with the manifests written so far.
pub async fn fill(
    store: &SqlMetaStore,
    spec: &FillSpec,
    pool: &[(Digest, i64)],
    mut progress: impl FnMut(&FillStats),
) -> Result<FillStats, MetaError> {
    assert!(pool.len() >= 2 && !spec.projects.is_empty(), "a fill needs projects and at least two pool blobs");
    let links = spec.links_per_repo.clamp(2, pool.len());
    let start = crate::now_ms() - 86_400_000;
    let mut batch = Batch::new();
    let mut total = FillStats::default();
    let per_project = spec.repos.div_ceil(spec.projects.len());
    let mut r = 0usize;
    for (pi, project) in spec.projects.iter().enumerate() {
        let mut repos: Vec<(String, usize)> = Vec::new();
        while r < spec.repos && repos.len() < per_project {
            repos.push((format!("{project}/repo-{r:06}"), r));
            r += 1;
        }
        for (name, r) in &repos {
            let at = start + (*r as i64) * 16;
            let linked: Vec<&(Digest, i64)> = (0..links).map(|k| &pool[(r * 7 + k) % pool.len()]).collect();
            batch.repo(name, &linked, at);
            for j in 0..spec.manifests_per_repo {
                let blobs = [(CONFIG, linked[(2 * j) % links]), (LAYER, linked[(2 * j + 1) % links])];
                batch.manifest(name, &blobs, None, None, &format!("{name}:{j}"), Some(&format!("v{j}")), at + j as i64);
            }
            if batch.pending() >= 50_000 {
                batch.flush(store).await?;
                add(&mut total, &mut batch.stats);
                progress(&total);
            }
        }
        if pi == 0 {
            let linked: Vec<&(Digest, i64)> = pool.iter().take(links).collect();
            if spec.big_repo_tags > 0 {
                let name = format!("{project}/big");
                batch.repo(&name, &linked, start);
                for j in 0..spec.big_repo_tags {
                    let blobs = [(CONFIG, linked[j % links]), (LAYER, linked[(j + 1) % links])];
                    let tag = format!("t{j:06}");
                    batch.manifest(&name, &blobs, None, None, &format!("{name}:{j}"), Some(&tag), start + j as i64);
                    if batch.pending() >= 50_000 {
                        batch.flush(store).await?;
                        add(&mut total, &mut batch.stats);
                        progress(&total);
                    }
                }
            }
            if spec.referrers > 0 {
                let name = format!("{project}/signed");
                batch.repo(&name, &linked, start);
                let subject = batch.manifest(
                    &name,
                    &[(CONFIG, linked[0]), (LAYER, linked[1])],
                    None,
                    None,
                    &name,
                    Some("latest"),
                    start,
                );
                let config = if pool[0].0 == Digest::sha256_of(b"{}") { EMPTY } else { CONFIG };
                for j in 0..spec.referrers {
                    let blobs = [(config, linked[0]), (LAYER, linked[1 + j % (links - 1)])];
                    let label = format!("{name}@sbom-{j}");
                    batch.manifest(
                        &name,
                        &blobs,
                        Some(REFERRER_TYPE),
                        Some((&subject.0, subject.1)),
                        &label,
                        None,
                        start + 1 + j as i64,
                    );
                    if batch.pending() >= 50_000 {
                        batch.flush(store).await?;
                        add(&mut total, &mut batch.stats);
                        progress(&total);
                    }
                }
            }
        }
        batch.close_project(store, project, crate::now_ms()).await?;
        add(&mut total, &mut batch.stats);
        progress(&total);
    }
    Ok(total)
}

fn add(total: &mut FillStats, part: &mut FillStats) {
    total.repositories += part.repositories;
    total.manifests += part.manifests;
    total.tags += part.tags;
    total.blob_links += part.blob_links;
    *part = FillStats::default();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MetaStore, QuotaStore};
    use berth_types::{RepoName, Tag};

    /// A small fill must read back as pushes would have written it: listings, tags, referrers,
    /// artifacts with their sizes, and quotas that `verify_quotas` finds exact.
    async fn fill_reads_back(store: &SqlMetaStore) {
        let seed: RepoName = "proj-000/seed".parse().unwrap();
        let mut pool = Vec::new();
        for i in 0..6u8 {
            let data = if i == 0 { b"{}".to_vec() } else { vec![i; 100 + i as usize] };
            let d = Digest::sha256_of(&data);
            store.pin_blob(&d, data.len() as i64, 1, i64::MAX / 2).await.unwrap();
            store.link_blob(&seed, &d, 1, 2, None).await.unwrap();
            pool.push((d, data.len() as i64));
        }
        let spec = FillSpec {
            projects: vec!["proj-000".into(), "proj-001".into()],
            repos: 5,
            manifests_per_repo: 3,
            links_per_repo: 4,
            big_repo_tags: 250,
            referrers: 30,
        };
        let mut calls = 0;
        let stats = fill(store, &spec, &pool, |_| calls += 1).await.unwrap();
        assert!(calls >= 2);
        assert_eq!(
            stats,
            FillStats { repositories: 7, manifests: 5 * 3 + 250 + 31, tags: 5 * 3 + 250 + 1, blob_links: 7 * 4 }
        );
        let repos = store.list_repos(None, 100).await.unwrap();
        assert_eq!(
            repos,
            [
                "proj-000/big",
                "proj-000/repo-000000",
                "proj-000/repo-000001",
                "proj-000/repo-000002",
                "proj-000/seed",
                "proj-000/signed",
                "proj-001/repo-000003",
                "proj-001/repo-000004"
            ]
        );
        let big: RepoName = "proj-000/big".parse().unwrap();
        let page = store.list_tags(&big, Some("t000099"), 3).await.unwrap();
        assert_eq!(page, ["t000100", "t000101", "t000102"]);
        let r: RepoName = "proj-001/repo-000004".parse().unwrap();
        let m = store.get_tagged_manifest(&r, &"v2".parse::<Tag>().unwrap()).await.unwrap().unwrap();
        let body = store.manifest_content(&m.digest).await.unwrap().unwrap();
        assert_eq!(Digest::sha256_of(&body), m.digest);
        assert_eq!(m.size, body.len() as i64);
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(doc["annotations"]["org.example.synthetic"], "proj-001/repo-000004:2");
        // Everything it references is linked in its repository.
        let refs: Vec<(Digest, i64)> = [&doc["config"], &doc["layers"][0]]
            .iter()
            .map(|d| (d["digest"].as_str().unwrap().parse().unwrap(), d["size"].as_i64().unwrap()))
            .collect();
        let digests: Vec<Digest> = refs.iter().map(|(d, _)| d.clone()).collect();
        let mut linked = store.repo_blob_sizes(&r, &digests).await.unwrap();
        linked.sort();
        let mut want = refs.clone();
        want.sort();
        assert_eq!(linked, want);
        let arts = store.repo_artifacts(&r).await.unwrap();
        assert_eq!(arts.len(), 3);
        // Repository pages carry each repository's manifest count, as pushes keep it.
        let counts: Vec<(String, i64)> =
            store.project_repos("proj-000").await.unwrap().into_iter().map(|r| (r.name, r.artifact_count)).collect();
        assert_eq!(
            counts,
            [
                ("proj-000/big", 250),
                ("proj-000/repo-000000", 3),
                ("proj-000/repo-000001", 3),
                ("proj-000/repo-000002", 3)
            ]
            .into_iter()
            .chain([("proj-000/seed", 0), ("proj-000/signed", 31)])
            .map(|(n, c)| (n.to_owned(), c))
            .collect::<Vec<_>>()
        );
        let a = arts.iter().find(|a| a.record.digest == m.digest).unwrap();
        assert_eq!(a.tags.iter().map(|t| t.0.as_str()).collect::<Vec<_>>(), ["v2"]);
        assert_eq!(a.total_size, m.size + refs.iter().map(|r| r.1).sum::<i64>());
        // The referrers of the signed image.
        let signed: RepoName = "proj-000/signed".parse().unwrap();
        let subject = store.resolve_tag(&signed, &"latest".parse::<Tag>().unwrap()).await.unwrap().unwrap();
        let referrers = store.referrers(&signed, &subject, Some(REFERRER_TYPE)).await.unwrap();
        assert_eq!(referrers.len(), 30);
        assert!(referrers.iter().all(|m| m.subject.as_ref() == Some(&subject)));
        // Their pages, by index, add up to the same list in the same order.
        let mut paged: Vec<crate::ManifestRecord> = Vec::new();
        loop {
            let after = paged.last().map(|m| (m.created_at, &m.digest));
            let page = store.referrers_page(&signed, &subject, None, after, 7).await.unwrap();
            if page.is_empty() {
                break;
            }
            paged.extend(page);
        }
        assert_eq!(
            paged.iter().map(|m| &m.digest).collect::<Vec<_>>(),
            referrers.iter().map(|m| &m.digest).collect::<Vec<_>>()
        );
        assert!(store.referrers_page(&signed, &subject, Some("other/type"), None, 7).await.unwrap().is_empty());
        // A plain repository's artifacts are paged by the database, the same as the whole list.
        let all = store.repo_artifacts(&big).await.unwrap();
        let (page, total) = store.repo_artifacts_page(&big, 10, 5).await.unwrap().unwrap();
        assert_eq!(total, 250);
        let digests = |rows: &[crate::ArtifactRow]| {
            rows.iter().map(|a| (a.record.digest.clone(), a.tags.clone(), a.total_size)).collect::<Vec<_>>()
        };
        assert_eq!(digests(&page), digests(&all[10..15]));
        // One with accessories is not.
        assert!(store.repo_artifacts_page(&signed, 0, 5).await.unwrap().is_none());
        // Quotas are exact: the fill counted what the pushes would have.
        let checks = store.verify_quotas(false).await.unwrap();
        assert_eq!(checks.len(), 2, "{checks:?}");
        for c in &checks {
            assert_eq!((c.stored, c.objects_off), (c.computed, 0), "{c:?}");
            assert!(c.computed > 0);
        }
    }

    #[tokio::test]
    async fn a_sqlite_fill_reads_back_as_pushes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlMetaStore::open_sqlite(dir.path().join("meta.db")).await.unwrap();
        fill_reads_back(&store).await;
    }

    #[tokio::test]
    async fn a_postgres_fill_reads_back_as_pushes() {
        let url = berth_test_support::postgres_database().await;
        let store = SqlMetaStore::open_postgres(&url, 4).await.unwrap();
        fill_reads_back(&store).await;
    }
}
