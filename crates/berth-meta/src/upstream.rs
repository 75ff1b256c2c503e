//! Other registries Berth talks to: the upstreams of proxy caches and the sources and
//! targets of replication (Harbor's "registry endpoints"). A password is stored sealed
//! (`berth_auth::seal`): this store never sees it in clear.

use sqlx::Row;

use crate::MetaError;
use crate::events::{NewEvent, insert_events};
use crate::sql::SqlMetaStore;

/// A registry endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRecord {
    /// Its id.
    pub id: i64,
    /// Its name (unique).
    pub name: String,
    /// Harbor's type: `docker-registry`, `docker-hub`, `harbor`, `quay`, `github-ghcr`, `oci`.
    pub kind: String,
    /// Its URL.
    pub url: String,
    /// Free text.
    pub description: String,
    /// Do not verify its TLS certificate.
    pub insecure: bool,
    /// Username or access key (empty: anonymous).
    pub access_key: String,
    /// The password or token, sealed.
    pub secret: Option<String>,
    /// A CA certificate (PEM) to trust for it.
    pub ca_pem: Option<String>,
    /// `healthy`, `unhealthy` or `unknown` (as the last check found it).
    pub status: String,
    /// The last check (Unix ms).
    pub checked_at: Option<i64>,
    /// Created (Unix ms).
    pub created_at: i64,
    /// Changed (Unix ms).
    pub updated_at: i64,
}

/// A pull-through cache rule: repositories named `<prefix>/<rest>` are fetched from the
/// upstream `upstream_id` as `<upstream_prefix><rest>` (Harbor's proxy-cache project: the
/// prefix is the project's name and the upstream prefix empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRule {
    /// The local prefix (a project name, or a deeper repository prefix).
    pub prefix: String,
    /// The registry endpoint.
    pub upstream_id: i64,
    /// What the upstream's repository names start with (may be empty).
    pub upstream_prefix: String,
    /// How long a cached tag is trusted before it is checked upstream again (ms).
    pub ttl_ms: i64,
    /// Created (Unix ms).
    pub created_at: i64,
}

/// Where registry endpoints are kept.
#[async_trait::async_trait]
pub trait UpstreamStore: Send + Sync {
    /// Every endpoint, by name.
    async fn upstreams(&self) -> Result<Vec<UpstreamRecord>, MetaError>;
    /// One endpoint.
    async fn upstream(&self, id: i64) -> Result<Option<UpstreamRecord>, MetaError>;
    /// Create an endpoint, logging `event` (its `data.id` filled in); `None` if the name is taken.
    async fn create_upstream(&self, u: &UpstreamRecord, event: &NewEvent) -> Result<Option<i64>, MetaError>;
    /// Replace an endpoint's fields (all but id and created_at), logging `event`; false if
    /// absent, `Err(Conflict)` if the new name is taken.
    async fn update_upstream(&self, u: &UpstreamRecord, event: &NewEvent) -> Result<bool, MetaError>;
    /// Record a check's outcome.
    async fn set_upstream_status(&self, id: i64, status: &str, at: i64) -> Result<(), MetaError>;
    /// Delete an endpoint, logging `event`; false if absent, `Err(Conflict)` while a cache
    /// rule uses it.
    async fn delete_upstream(&self, id: i64, event: &NewEvent) -> Result<bool, MetaError>;

    /// Every pull-through cache rule, by prefix.
    async fn cache_rules(&self) -> Result<Vec<CacheRule>, MetaError>;
    /// Add a rule, logging `event`; false if the prefix has one. `Err(NotFound)`-like
    /// `Conflict` if the endpoint does not exist.
    async fn create_cache_rule(&self, rule: &CacheRule, event: &NewEvent) -> Result<bool, MetaError>;
    /// Delete the rule of `prefix`, logging `event`; false if there was none.
    async fn delete_cache_rule(&self, prefix: &str, event: &NewEvent) -> Result<bool, MetaError>;
    /// Claim the lease `key` for `holder` until `until`, across replicas (a row of the
    /// `fences` table): the one fetch of a blob from upstream, the one writer of an upload
    /// session. False while another holds it.
    async fn claim_lease(&self, key: &str, holder: &str, until: i64, now: i64) -> Result<bool, MetaError>;
    /// Give a lease up.
    async fn release_lease(&self, key: &str, holder: &str) -> Result<(), MetaError>;
}

const COLUMNS: &str = "id, name, kind, url, description, insecure, access_key, secret, ca_pem, status, checked_at, created_at, updated_at";

fn from_row(r: &sqlx::any::AnyRow) -> Result<UpstreamRecord, MetaError> {
    let insecure: i64 = r.try_get(5)?;
    Ok(UpstreamRecord {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        kind: r.try_get(2)?,
        url: r.try_get(3)?,
        description: r.try_get(4)?,
        insecure: insecure != 0,
        access_key: r.try_get(6)?,
        secret: r.try_get(7)?,
        ca_pem: r.try_get(8)?,
        status: r.try_get(9)?,
        checked_at: r.try_get(10)?,
        created_at: r.try_get(11)?,
        updated_at: r.try_get(12)?,
    })
}

#[async_trait::async_trait]
impl UpstreamStore for SqlMetaStore {
    async fn upstreams(&self) -> Result<Vec<UpstreamRecord>, MetaError> {
        let rows =
            sqlx::query(&format!("SELECT {COLUMNS} FROM upstreams ORDER BY name")).fetch_all(self.pool()).await?;
        rows.iter().map(from_row).collect()
    }

    async fn upstream(&self, id: i64) -> Result<Option<UpstreamRecord>, MetaError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM upstreams WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    async fn create_upstream(&self, u: &UpstreamRecord, event: &NewEvent) -> Result<Option<i64>, MetaError> {
        let mut tx = self.begin_write().await?;
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO upstreams (name, kind, url, description, insecure, access_key, secret, ca_pem, status,
             checked_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(&u.name)
        .bind(&u.kind)
        .bind(&u.url)
        .bind(&u.description)
        .bind(i64::from(u.insecure))
        .bind(&u.access_key)
        .bind(u.secret.as_deref())
        .bind(u.ca_pem.as_deref())
        .bind(&u.status)
        .bind(u.checked_at)
        .bind(u.created_at)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(id) = id {
            let mut event = event.clone();
            event.data["id"] = id.into();
            insert_events(&mut tx, self.backend(), std::slice::from_ref(&event)).await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    async fn update_upstream(&self, u: &UpstreamRecord, event: &NewEvent) -> Result<bool, MetaError> {
        let mut tx = self.begin_write().await?;
        let taken: Option<i64> = sqlx::query_scalar("SELECT id FROM upstreams WHERE name = $1 AND id <> $2")
            .bind(&u.name)
            .bind(u.id)
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            return Err(MetaError::Conflict(format!("a registry named {:?} already exists", u.name)));
        }
        let n = sqlx::query(
            "UPDATE upstreams SET name = $2, kind = $3, url = $4, description = $5, insecure = $6, access_key = $7,
             secret = $8, ca_pem = $9, status = $10, checked_at = $11, updated_at = $12 WHERE id = $1",
        )
        .bind(u.id)
        .bind(&u.name)
        .bind(&u.kind)
        .bind(&u.url)
        .bind(&u.description)
        .bind(i64::from(u.insecure))
        .bind(&u.access_key)
        .bind(u.secret.as_deref())
        .bind(u.ca_pem.as_deref())
        .bind(&u.status)
        .bind(u.checked_at)
        .bind(u.updated_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n > 0 {
            insert_events(&mut tx, self.backend(), std::slice::from_ref(event)).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn set_upstream_status(&self, id: i64, status: &str, at: i64) -> Result<(), MetaError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE upstreams SET status = $2, checked_at = $3 WHERE id = $1")
            .bind(id)
            .bind(status)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_upstream(&self, id: i64, event: &NewEvent) -> Result<bool, MetaError> {
        let mut tx = self.begin_write().await?;
        let used: Vec<String> =
            sqlx::query_scalar("SELECT prefix FROM cache_rules WHERE upstream_id = $1 ORDER BY prefix")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
        if !used.is_empty() {
            return Err(MetaError::Conflict(format!(
                "the registry is used by the proxy cache of {}; delete that first",
                used.join(", ")
            )));
        }
        let n = sqlx::query("DELETE FROM upstreams WHERE id = $1").bind(id).execute(&mut *tx).await?.rows_affected();
        if n > 0 {
            insert_events(&mut tx, self.backend(), std::slice::from_ref(event)).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn cache_rules(&self) -> Result<Vec<CacheRule>, MetaError> {
        let rows = sqlx::query(
            "SELECT prefix, upstream_id, upstream_prefix, ttl_ms, created_at FROM cache_rules ORDER BY prefix",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CacheRule {
                    prefix: r.try_get(0)?,
                    upstream_id: r.try_get(1)?,
                    upstream_prefix: r.try_get(2)?,
                    ttl_ms: r.try_get(3)?,
                    created_at: r.try_get(4)?,
                })
            })
            .collect()
    }

    async fn create_cache_rule(&self, rule: &CacheRule, event: &NewEvent) -> Result<bool, MetaError> {
        let mut tx = self.begin_write().await?;
        let upstream: Option<i64> =
            sqlx::query_scalar(&format!("SELECT id FROM upstreams WHERE id = $1{}", self.lock_rows()))
                .bind(rule.upstream_id)
                .fetch_optional(&mut *tx)
                .await?;
        if upstream.is_none() {
            return Err(MetaError::Conflict(format!("registry {} does not exist", rule.upstream_id)));
        }
        let n = sqlx::query(
            "INSERT INTO cache_rules (prefix, upstream_id, upstream_prefix, ttl_ms, created_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(&rule.prefix)
        .bind(rule.upstream_id)
        .bind(&rule.upstream_prefix)
        .bind(rule.ttl_ms)
        .bind(rule.created_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n > 0 {
            insert_events(&mut tx, self.backend(), std::slice::from_ref(event)).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn delete_cache_rule(&self, prefix: &str, event: &NewEvent) -> Result<bool, MetaError> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query("DELETE FROM cache_rules WHERE prefix = $1")
            .bind(prefix)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n > 0 {
            insert_events(&mut tx, self.backend(), std::slice::from_ref(event)).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn claim_lease(&self, key: &str, holder: &str, until: i64, now: i64) -> Result<bool, MetaError> {
        crate::GcStore::hold_fence(self, key, holder, until, now).await
    }

    async fn release_lease(&self, key: &str, holder: &str) -> Result<(), MetaError> {
        crate::GcStore::release_fence(self, key, holder).await
    }
}
