//! `berth admin fill`: a synthetic registry for scale benchmarks (see `bench/scale.py`).
//!
//! The blobs go through the registry (real files, real rows); the rest is written in bulk by
//! [`berth_meta::synthetic::fill`].

use std::time::Instant;

use anyhow::Context;
use berth_config::Config;
use berth_meta::{AccessStore, MetaStore, Origin, synthetic::FillSpec};
use berth_types::{Digest, ProjectSettings, RepoName, Visibility};
use bytes::Bytes;

/// What `berth admin fill` makes (its command-line options).
#[derive(Debug, Clone, clap::Args)]
pub struct FillOptions {
    /// Projects, proj-000 …
    #[arg(long, default_value_t = 100)]
    pub projects: usize,
    /// Repositories of small images, spread over the projects.
    #[arg(long, default_value_t = 100_000)]
    pub repos: usize,
    /// Tagged manifests in each repository (tags v0 …).
    #[arg(long, default_value_t = 10)]
    pub manifests_per_repo: usize,
    /// Blobs linked into each repository.
    #[arg(long, default_value_t = 20)]
    pub links_per_repo: usize,
    /// Tags (and manifests) of proj-000/big.
    #[arg(long, default_value_t = 100_000)]
    pub big_repo_tags: usize,
    /// Referrers of proj-000/signed:latest.
    #[arg(long, default_value_t = 10_000)]
    pub referrers: usize,
    /// Distinct blobs of 1 KiB stored for the repositories to link.
    #[arg(long, default_value_t = 1000)]
    pub pool: usize,
}

/// Fill an empty registry (offline); prints progress and a summary.
pub async fn fill(cfg: &Config, o: &FillOptions) -> anyhow::Result<()> {
    anyhow::ensure!(o.projects >= 1 && o.projects <= 1000, "--projects must be between 1 and 1000");
    anyhow::ensure!(o.pool >= 2, "--pool must be at least 2");
    anyhow::ensure!(
        o.links_per_repo >= 2 && o.links_per_repo <= o.pool,
        "--links-per-repo must be between 2 and --pool ({})",
        o.pool
    );
    let t0 = Instant::now();
    let (registry, sql) = crate::open_all(cfg).await?;
    if let Some(first) = sql.list_repos(None, 1).await?.first() {
        anyhow::bail!("berth admin fill fills only an empty registry, and {} holds {first}", crate::describe_meta(cfg));
    }
    let owner = sql.user_by_name("admin").await?.map_or(0, |u| u.id);
    let origin = Origin::new("admin fill", None);
    let settings = ProjectSettings { visibility: Visibility::Public, ..ProjectSettings::default() };
    let projects: Vec<String> = (0..o.projects).map(|i| format!("proj-{i:03}")).collect();
    for p in &projects {
        if sql.project_by_name(p).await?.is_none() {
            sql.create_project(p, owner, &settings, berth_auth::now_ms(), &origin).await?;
        }
    }
    // The pool: `{}` (the empty config of the referrers) and small distinct blobs, stored
    // through the registry into `proj-000/seed`.
    let seed: RepoName = format!("{}/seed", projects[0]).parse().context("the seed repository's name")?;
    let mut pool = Vec::with_capacity(o.pool);
    for i in 0..o.pool {
        let data: Vec<u8> = if i == 0 {
            b"{}".to_vec()
        } else {
            let mut d = format!("synthetic blob {i}\n").into_bytes();
            d.resize(1024, b'.');
            d
        };
        let digest = Digest::sha256_of(&data);
        let size = data.len() as i64;
        let body: berth_blob::ByteStream =
            Box::pin(futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(data))]));
        registry.upload_monolithic(&seed, "admin", &digest, body).await.context("storing a pool blob")?;
        pool.push((digest, size));
    }
    println!("stored {} pool blobs in {:.1} s", pool.len(), t0.elapsed().as_secs_f64());
    let spec = FillSpec {
        projects,
        repos: o.repos,
        manifests_per_repo: o.manifests_per_repo,
        links_per_repo: o.links_per_repo,
        big_repo_tags: o.big_repo_tags,
        referrers: o.referrers,
    };
    let mut last = Instant::now();
    let stats = berth_meta::synthetic::fill(&sql, &spec, &pool, |s| {
        if last.elapsed().as_secs() >= 5 {
            last = Instant::now();
            println!("  {} repositories, {} manifests, {} blob links …", s.repositories, s.manifests, s.blob_links);
        }
    })
    .await?;
    sql.checkpoint().await?;
    println!(
        "filled {} with {} repositories, {} manifests, {} tags and {} blob links in {:.1} s",
        crate::describe_meta(cfg),
        stats.repositories + 1,
        stats.manifests,
        stats.tags,
        stats.blob_links + pool.len() as u64,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
