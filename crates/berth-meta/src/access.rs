//! Identity and access records: users, projects, project members, robot accounts,
//! repository policies, the audit log and the token signing keys ([`AccessStore`]).
//!
//! This module stores; it decides nothing. Password and secret *hashes* are stored, never
//! the secrets (hashing happens in `berth-auth`). Robot permissions and policy documents are
//! stored as the JSON text `berth-auth` validated.

use std::collections::BTreeMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use berth_types::{ProjectSettings, Visibility};
use serde_json::json;

use crate::MetaError;
use crate::events::{EventKind, NewEvent, Origin, insert_events};
use crate::sql::{Backend, SqlMetaStore};

/// A local or OIDC user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Numeric id.
    pub id: i64,
    /// Unique login name.
    pub username: String,
    /// E-mail address (may be empty).
    pub email: String,
    /// Display name.
    pub realname: String,
    /// Free text.
    pub comment: String,
    /// argon2id PHC string; `None` for users who only log in through OIDC.
    pub password_hash: Option<String>,
    /// System administrator?
    pub sysadmin: bool,
    /// argon2id PHC string of the CLI secret, if one is set.
    pub cli_secret_hash: Option<String>,
    /// When the CLI secret was set (Unix ms).
    pub cli_secret_at: Option<i64>,
    /// `issuer|subject` for OIDC users.
    pub oidc_subject: Option<String>,
    /// Groups from the identity provider at the last login.
    pub groups: Vec<String>,
    /// When the password or CLI secret last changed (Unix ms).
    pub credentials_at: i64,
    /// When the user first signed in with a password or secret (Unix ms); `None`: never.
    pub first_login_at: Option<i64>,
    /// Created (Unix ms).
    pub created_at: i64,
    /// Last change (Unix ms).
    pub updated_at: i64,
}

/// The fields of a new user.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    /// Unique login name.
    pub username: String,
    /// E-mail address.
    pub email: String,
    /// Display name.
    pub realname: String,
    /// Free text.
    pub comment: String,
    /// argon2id PHC string, if the user has a password.
    pub password_hash: Option<String>,
    /// System administrator?
    pub sysadmin: bool,
    /// `issuer|subject` for OIDC users.
    pub oidc_subject: Option<String>,
    /// Groups from the identity provider.
    pub groups: Vec<String>,
}

/// What to purge from the audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditPurge {
    /// Entries older than this (Unix ms).
    pub before: i64,
    /// Only entries of these operations (`pull`, `push`, `create`, …); `None`: all.
    pub operations: Option<Vec<String>>,
    /// Then keep at most this many of the newest entries.
    pub keep_at_most: Option<i64>,
    /// Only count.
    pub dry_run: bool,
}

/// A project: the first path component of its repositories' names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectRecord {
    /// Numeric id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// The user who created it.
    pub owner_id: i64,
    /// Visibility, scanning and pull policies, typed.
    pub settings: ProjectSettings,
    /// Created (Unix ms).
    pub created_at: i64,
    /// Last change (Unix ms).
    pub updated_at: i64,
}

/// A user group (Harbor's `UserGroup`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserGroupRecord {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// 1 LDAP, 2 HTTP, 3 OIDC.
    pub group_type: i64,
    /// An LDAP group's DN (empty for others).
    pub ldap_group_dn: String,
    /// What memberships name: the DN lowercased for LDAP groups, else the name.
    pub member_key: String,
    /// Created (Unix ms).
    pub created_at: i64,
}

/// Who a project membership is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberEntity {
    /// A user, by id (with the name, filled in when read).
    User {
        /// User id.
        id: i64,
        /// Username (empty when writing).
        name: String,
    },
    /// A group of the identity provider, by name.
    Group(String),
}

/// A project membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    /// Numeric id.
    pub id: i64,
    /// The project.
    pub project_id: i64,
    /// The member.
    pub entity: MemberEntity,
    /// Harbor role id (1 project admin, 2 developer, 3 guest, 4 maintainer, 5 limited guest).
    pub role_id: i64,
    /// Created (Unix ms).
    pub created_at: i64,
    /// Last change (Unix ms).
    pub updated_at: i64,
}

/// An access key (AWS SigV4) of a user or robot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKeyRecord {
    /// The access key id (`AKIA…`).
    pub id: String,
    /// The user or robot name it signs as.
    pub account: String,
    /// The secret, sealed (see `berth_auth::seal`).
    pub sealed_secret: String,
    /// Whether it may sign.
    pub active: bool,
    /// Created (Unix ms).
    pub created_at: i64,
}

/// A robot account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RobotRecord {
    /// Numeric id.
    pub id: i64,
    /// Full name: `robot$<project>+<name>` or `robot$<name>`.
    pub name: String,
    /// Free text.
    pub description: String,
    /// The project of a project-level robot; `None` for system robots.
    pub project_id: Option<i64>,
    /// argon2id PHC string of the secret.
    pub secret_hash: String,
    /// Disabled robots are refused.
    pub disabled: bool,
    /// Lifetime in days as given (`-1`: never expires).
    pub duration: i64,
    /// Expiry (Unix ms), or `-1` for never.
    pub expires_at: i64,
    /// Permissions as JSON text (Harbor's `permissions` array, validated by `berth-auth`).
    pub permissions: String,
    /// Who created it.
    pub creator: String,
    /// When the secret last changed (Unix ms; 0 for the one it was created with).
    pub credentials_at: i64,
    /// Created (Unix ms).
    pub created_at: i64,
    /// Last change (Unix ms).
    pub updated_at: i64,
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditRecord {
    /// Numeric id (0 when writing).
    pub id: i64,
    /// When (Unix ms).
    pub op_time: i64,
    /// Who: a username, robot name, `anonymous` or `operator`.
    pub username: String,
    /// What: `pull`, `push`, `delete`, `login`, `create`, `update`, …
    pub operation: String,
    /// On what kind of thing: `artifact`, `tag`, `project`, `user`, `robot`, `member`, `policy`, …
    pub resource_type: String,
    /// On which thing, e.g. `proj/app:latest` or `proj/app@sha256:…`.
    pub resource: String,
    /// The project concerned, if any.
    pub project: Option<String>,
    /// Client address.
    pub client_ip: Option<String>,
    /// `success` or `failure`.
    pub result: String,
    /// Extra words (never a secret).
    pub detail: Option<String>,
    /// How many times it happened (0 when writing means once).
    pub repeats: i64,
    /// When writing: add to the latest identical entry of the last [`AUDIT_MERGE_WINDOW_MS`]
    /// instead of writing another (pulls, failed logins).
    pub aggregate: bool,
}

/// How far back an aggregated audit entry finds the identical one it adds to.
pub const AUDIT_MERGE_WINDOW_MS: i64 = 3_600_000;

/// Filters for [`AccessStore::audit_log`]; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only this project.
    pub project: Option<String>,
    /// Only this user.
    pub username: Option<String>,
    /// Only this operation.
    pub operation: Option<String>,
    /// Only this resource type.
    pub resource_type: Option<String>,
    /// Only resources starting with this.
    pub resource_prefix: Option<String>,
    /// From (Unix ms, inclusive).
    pub from: Option<i64>,
    /// To (Unix ms, inclusive).
    pub to: Option<i64>,
}

/// A token signing key (Ed25519, PKCS#8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// Key id (the JWT `kid`).
    pub kid: String,
    /// PKCS#8 document of the private key.
    pub private_key: Vec<u8>,
    /// Created (Unix ms).
    pub created_at: i64,
    /// When a newer key replaced it (it still verifies tokens it signed).
    pub retired_at: Option<i64>,
}

/// Storage of identities and access rules. Contract (checked by the conformance suite):
/// names are unique (a duplicate gives [`MetaError::Conflict`]); deleting a project removes
/// its members and robots; deleting a user removes their memberships. Every change logs its
/// event (`user.changed`, `project.*`, `member.changed`, `robot.changed`, `policy.changed`,
/// with `data.op`) by `origin` in the same transaction.
#[async_trait::async_trait]
pub trait AccessStore: crate::EventLog + Send + Sync + 'static {
    /// Harbor's user groups, by name.
    async fn user_groups(&self) -> Result<Vec<UserGroupRecord>, MetaError>;
    /// One user group.
    async fn user_group(&self, id: i64) -> Result<Option<UserGroupRecord>, MetaError>;
    /// Create a user group (`Conflict` if its member key exists), logging `event`.
    async fn create_user_group(&self, g: &UserGroupRecord, event: &NewEvent) -> Result<i64, MetaError>;
    /// Rename a user group; `false` if it is gone.
    async fn rename_user_group(&self, id: i64, name: &str, event: &NewEvent) -> Result<bool, MetaError>;
    /// Delete a user group and its project memberships; `false` if it was gone.
    async fn delete_user_group(&self, id: i64, event: &NewEvent) -> Result<bool, MetaError>;
    /// Create a user; returns its id.
    async fn create_user(&self, u: &NewUser, now: i64, origin: &Origin) -> Result<i64, MetaError>;
    /// The user with this id.
    async fn user(&self, id: i64) -> Result<Option<UserRecord>, MetaError>;
    /// The user with this username.
    async fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>, MetaError>;
    /// The user with this OIDC `issuer|subject`.
    async fn user_by_oidc_subject(&self, subject: &str) -> Result<Option<UserRecord>, MetaError>;
    /// Every user, by id.
    async fn users(&self) -> Result<Vec<UserRecord>, MetaError>;
    /// Store a new access key and log `access_key.changed` (`create`).
    async fn create_access_key(&self, k: &AccessKeyRecord, origin: &Origin) -> Result<(), MetaError>;
    /// An access key by id.
    async fn access_key(&self, id: &str) -> Result<Option<AccessKeyRecord>, MetaError>;
    /// The access keys of an account, oldest first.
    async fn access_keys(&self, account: &str) -> Result<Vec<AccessKeyRecord>, MetaError>;
    /// Activate or deactivate an access key (false if there is none), logging the change.
    async fn set_access_key_active(&self, id: &str, active: bool, now: i64, origin: &Origin)
    -> Result<bool, MetaError>;
    /// Delete an access key (false if there is none), logging it.
    async fn delete_access_key(&self, id: &str, now: i64, origin: &Origin) -> Result<bool, MetaError>;
    /// Settings changed at run time, `(key, JSON value)`, by key.
    async fn settings(&self) -> Result<Vec<(String, String)>, MetaError>;
    /// Set runtime settings `(key, JSON value)` and log `settings.changed` with every runtime
    /// setting after the change, in one transaction; returns them.
    async fn put_settings(
        &self,
        changes: &[(String, String)],
        now: i64,
        origin: &Origin,
    ) -> Result<Vec<(String, String)>, MetaError>;
    /// Change e-mail, real name and comment.
    async fn update_user_profile(
        &self,
        id: i64,
        email: &str,
        realname: &str,
        comment: &str,
        now: i64,
        origin: &Origin,
    ) -> Result<bool, MetaError>;
    /// Set the password hash.
    async fn set_password(&self, id: i64, hash: &str, now: i64, origin: &Origin) -> Result<bool, MetaError>;
    /// Remember that the user signed in (only the first time counts; no event).
    async fn mark_first_login(&self, id: i64, now: i64) -> Result<(), MetaError>;
    /// Grant or revoke system administration.
    async fn set_sysadmin(&self, id: i64, sysadmin: bool, now: i64, origin: &Origin) -> Result<bool, MetaError>;
    /// Set (`Some`) or revoke (`None`) the CLI secret hash.
    async fn set_cli_secret(&self, id: i64, hash: Option<&str>, now: i64, origin: &Origin) -> Result<bool, MetaError>;
    /// Replace the user's identity-provider groups.
    async fn set_user_groups(&self, id: i64, groups: &[String], now: i64, origin: &Origin) -> Result<bool, MetaError>;
    /// Delete a user and their memberships.
    async fn delete_user(&self, id: i64, origin: &Origin) -> Result<bool, MetaError>;

    /// Create a project; returns its id.
    async fn create_project(
        &self,
        name: &str,
        owner_id: i64,
        settings: &ProjectSettings,
        now: i64,
        origin: &Origin,
    ) -> Result<i64, MetaError>;
    /// The project with this id.
    async fn project(&self, id: i64) -> Result<Option<ProjectRecord>, MetaError>;
    /// The project with this name.
    async fn project_by_name(&self, name: &str) -> Result<Option<ProjectRecord>, MetaError>;
    /// Every project, by name.
    async fn projects(&self) -> Result<Vec<ProjectRecord>, MetaError>;
    /// Change the project's settings.
    async fn update_project(
        &self,
        id: i64,
        settings: &ProjectSettings,
        now: i64,
        origin: &Origin,
    ) -> Result<bool, MetaError>;
    /// Delete a project with its members and robots.
    async fn delete_project(&self, id: i64, origin: &Origin) -> Result<bool, MetaError>;

    /// Add a member; returns the membership id.
    async fn add_member(
        &self,
        project_id: i64,
        entity: &MemberEntity,
        role_id: i64,
        now: i64,
        origin: &Origin,
    ) -> Result<i64, MetaError>;
    /// The members of a project.
    async fn members(&self, project_id: i64) -> Result<Vec<MemberRecord>, MetaError>;
    /// Change a member's role.
    async fn update_member(
        &self,
        project_id: i64,
        member_id: i64,
        role_id: i64,
        now: i64,
        origin: &Origin,
    ) -> Result<bool, MetaError>;
    /// Remove a member.
    async fn delete_member(&self, project_id: i64, member_id: i64, origin: &Origin) -> Result<bool, MetaError>;
    /// `(project_id, role_id)` of every membership of this user, directly or through `groups`.
    async fn memberships(&self, user_id: i64, groups: &[String]) -> Result<Vec<(i64, i64)>, MetaError>;

    /// Create a robot; returns its id.
    async fn create_robot(&self, r: &RobotRecord, origin: &Origin) -> Result<i64, MetaError>;
    /// The robot with this id.
    async fn robot(&self, id: i64) -> Result<Option<RobotRecord>, MetaError>;
    /// The robot with this full name.
    async fn robot_by_name(&self, name: &str) -> Result<Option<RobotRecord>, MetaError>;
    /// Every robot, by id.
    async fn robots(&self) -> Result<Vec<RobotRecord>, MetaError>;
    /// Replace description, disabled, duration, expiry and permissions.
    async fn update_robot(&self, r: &RobotRecord, origin: &Origin) -> Result<bool, MetaError>;
    /// Replace the secret hash.
    async fn set_robot_secret(&self, id: i64, hash: &str, now: i64, origin: &Origin) -> Result<bool, MetaError>;
    /// The trust rules of a robot's workload identity federation (JSON), if any.
    async fn robot_federation(&self, id: i64) -> Result<Option<String>, MetaError>;
    /// Set (or with `None` remove) them, logging the change; deleted with the robot.
    async fn put_robot_federation(
        &self,
        id: i64,
        config: Option<&str>,
        now: i64,
        origin: &Origin,
    ) -> Result<(), MetaError>;
    /// Delete a robot.
    async fn delete_robot(&self, id: i64, origin: &Origin) -> Result<bool, MetaError>;

    /// Store a repository's policy document (replacing any).
    async fn put_repo_policy(&self, repo: &str, document: &str, now: i64, origin: &Origin) -> Result<(), MetaError>;
    /// A repository's policy document.
    async fn repo_policy(&self, repo: &str) -> Result<Option<String>, MetaError>;
    /// Every repository policy: `(repository, document)` by repository.
    async fn repo_policies(&self) -> Result<Vec<(String, String)>, MetaError>;
    /// Delete a repository's policy; returns whether there was one.
    async fn delete_repo_policy(&self, repo: &str, origin: &Origin) -> Result<bool, MetaError>;

    /// Append audit entries (one transaction).
    async fn append_audit(&self, entries: &[AuditRecord]) -> Result<(), MetaError>;
    /// Matching entries, newest first: `(page, total matching)`.
    async fn audit_log(&self, q: &AuditQuery, offset: i64, limit: i64) -> Result<(Vec<AuditRecord>, i64), MetaError>;
    /// Delete audit entries older than `before` (only those whose operation is one of
    /// `operations`, when given), then the oldest beyond the newest `keep_at_most`; logs
    /// `audit.purged` in the same transaction. Returns how many (only counted, with `dry_run`).
    async fn purge_audit(&self, purge: &AuditPurge, now: i64, origin: &Origin) -> Result<u64, MetaError>;
    /// Add `n` to the pull counts of repositories.
    async fn add_pulls(&self, counts: &[(String, i64)]) -> Result<(), MetaError>;

    /// Every signing key, newest first.
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, MetaError>;
    /// Add a key and retire the others (they keep verifying); keys retired before `forget_before` are deleted.
    async fn rotate_signing_key(&self, key: &SigningKeyRecord, forget_before: i64) -> Result<(), MetaError>;
    /// Add the first key unless one exists (safe when replicas start at once); returns the newest key.
    async fn ensure_signing_key(&self, key: &SigningKeyRecord) -> Result<SigningKeyRecord, MetaError>;
}

fn conflict(e: sqlx::Error, what: &str) -> MetaError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => MetaError::Conflict(what.to_owned()),
        _ => MetaError::Db(e),
    }
}

fn b(v: bool) -> i64 {
    v as i64
}

fn groups_json(groups: &[String]) -> String {
    serde_json::to_string(groups).unwrap_or_else(|_| "[]".into())
}

const USER_COLS: &str = "id, username, email, realname, comment, password_hash, sysadmin, cli_secret_hash, \
                         cli_secret_at, oidc_subject, groups, credentials_at, first_login_at, created_at, updated_at";

fn user_from_row(r: &AnyRow) -> Result<UserRecord, MetaError> {
    let groups: String = r.try_get("groups")?;
    Ok(UserRecord {
        id: r.try_get("id")?,
        username: r.try_get("username")?,
        email: r.try_get("email")?,
        realname: r.try_get("realname")?,
        comment: r.try_get("comment")?,
        password_hash: r.try_get("password_hash")?,
        sysadmin: r.try_get::<i64, _>("sysadmin")? != 0,
        cli_secret_hash: r.try_get("cli_secret_hash")?,
        cli_secret_at: r.try_get("cli_secret_at")?,
        oidc_subject: r.try_get("oidc_subject")?,
        groups: serde_json::from_str(&groups).map_err(|e| MetaError::Corrupt(format!("user groups: {e}")))?,
        credentials_at: r.try_get("credentials_at")?,
        first_login_at: r.try_get("first_login_at")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// The `public` column and the `metadata` JSON (Harbor's keys, as strings) of `settings`.
fn stored_settings(s: &ProjectSettings) -> (bool, BTreeMap<String, String>) {
    let mut map = s.to_map();
    map.remove("public");
    (s.public(), map)
}

const PROJECT_COLS: &str = "id, name, owner_id, public, metadata, created_at, updated_at";

fn project_from_row(r: &AnyRow) -> Result<ProjectRecord, MetaError> {
    let metadata: String = r.try_get("metadata")?;
    let map: BTreeMap<String, String> =
        serde_json::from_str(&metadata).map_err(|e| MetaError::Corrupt(format!("project metadata: {e}")))?;
    let mut settings = ProjectSettings::default();
    for (k, v) in &map {
        // Written only after the same parse succeeded; a key a later version dropped is ignored.
        let _ = settings.set(k, v);
    }
    settings.visibility = if r.try_get::<i64, _>("public")? != 0 { Visibility::Public } else { Visibility::Private };
    Ok(ProjectRecord {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        owner_id: r.try_get("owner_id")?,
        settings,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

const ROBOT_COLS: &str = "id, name, description, project_id, secret_hash, disabled, duration, expires_at, \
                          permissions, creator, credentials_at, created_at, updated_at";

fn robot_from_row(r: &AnyRow) -> Result<RobotRecord, MetaError> {
    Ok(RobotRecord {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        project_id: r.try_get("project_id")?,
        secret_hash: r.try_get("secret_hash")?,
        disabled: r.try_get::<i64, _>("disabled")? != 0,
        duration: r.try_get("duration")?,
        expires_at: r.try_get("expires_at")?,
        permissions: r.try_get("permissions")?,
        creator: r.try_get("creator")?,
        credentials_at: r.try_get("credentials_at")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn audit_from_row(r: &AnyRow) -> Result<AuditRecord, MetaError> {
    Ok(AuditRecord {
        id: r.try_get("id")?,
        op_time: r.try_get("op_time")?,
        username: r.try_get("username")?,
        operation: r.try_get("operation")?,
        resource_type: r.try_get("resource_type")?,
        resource: r.try_get("resource")?,
        project: r.try_get("project")?,
        client_ip: r.try_get("client_ip")?,
        result: r.try_get("result")?,
        detail: r.try_get("detail")?,
        repeats: r.try_get("repeats")?,
        aggregate: false,
    })
}

impl SqlMetaStore {
    /// At most one row of `SELECT {cols} FROM {table} WHERE {column} = $1`, converted.
    async fn one<T>(
        &self,
        cols: &str,
        table: &str,
        column: &str,
        value: Bind<'_>,
        convert: fn(&AnyRow) -> Result<T, MetaError>,
    ) -> Result<Option<T>, MetaError> {
        let sql = format!("SELECT {cols} FROM {table} WHERE {column} = $1");
        let q = match value {
            Bind::I(i) => sqlx::query(&sql).bind(i),
            Bind::S(s) => sqlx::query(&sql).bind(s),
        };
        q.fetch_optional(self.pool()).await?.as_ref().map(convert).transpose()
    }

    /// Run one statement and, when it changed a row, log `change` in the same transaction.
    async fn logged(&self, sql: &str, binds: Vec<Bind<'_>>, change: Change<'_>) -> Result<u64, MetaError> {
        let mut tx = self.begin_write().await?;
        // Built first: a delete's subject is gone afterwards.
        let event = change_event(&mut tx, change).await?;
        let mut q = sqlx::query(sql);
        for v in binds {
            q = match v {
                Bind::I(i) => q.bind(i),
                Bind::S(s) => q.bind(s),
            };
        }
        let n = q.execute(&mut *tx).await?.rows_affected();
        if n > 0 {
            insert_events(&mut tx, self.backend(), &[event]).await?;
        }
        tx.commit().await?;
        Ok(n)
    }
}

/// What an access change touched, for its event.
enum Subject<'a> {
    User(i64),
    Project(i64),
    /// `(project id, membership id)`.
    Member(i64, i64),
    Robot(i64),
    Repo(&'a str),
}

/// One access change: its event kind, `data.op`, subject, time and author.
struct Change<'a> {
    kind: EventKind,
    op: &'static str,
    subject: Subject<'a>,
    at: i64,
    origin: &'a Origin,
}

/// The event of `change`, with the names of what it touched as they are now (inside the
/// change's transaction, before it runs).
async fn change_event(tx: &mut sqlx::Transaction<'_, sqlx::Any>, change: Change<'_>) -> Result<NewEvent, MetaError> {
    let Change { kind, op, subject, at, origin } = change;
    let e = NewEvent::new(kind, at, origin);
    let text = |row: Option<AnyRow>, col: &str| -> Result<Option<String>, MetaError> {
        Ok(match row {
            Some(r) => r.try_get::<Option<String>, _>(col)?,
            None => None,
        })
    };
    Ok(match subject {
        Subject::User(id) => {
            let row =
                sqlx::query("SELECT username FROM users WHERE id = $1").bind(id).fetch_optional(&mut **tx).await?;
            e.data(json!({ "op": op, "id": id, "name": text(row, "username")? }))
        }
        Subject::Project(id) => {
            let row = sqlx::query("SELECT name FROM projects WHERE id = $1").bind(id).fetch_optional(&mut **tx).await?;
            let name = text(row, "name")?;
            let e = e.data(json!({ "op": op, "id": id, "name": name }));
            match name {
                Some(n) => e.project(&n),
                None => e,
            }
        }
        Subject::Member(project_id, id) => {
            let row = sqlx::query(
                "SELECT p.name AS project, m.role_id, m.group_name, u.username FROM project_members m
                 JOIN projects p ON p.id = m.project_id LEFT JOIN users u ON u.id = m.user_id
                 WHERE m.project_id = $1 AND m.id = $2",
            )
            .bind(project_id)
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
            let (project, role, member) = match &row {
                Some(r) => (
                    r.try_get::<String, _>("project")?,
                    r.try_get::<i64, _>("role_id")?,
                    match r.try_get::<Option<String>, _>("group_name")? {
                        Some(g) => format!("group:{g}"),
                        None => r.try_get::<Option<String>, _>("username")?.unwrap_or_default(),
                    },
                ),
                None => return Ok(e.data(json!({ "op": op, "id": id }))),
            };
            e.project(&project).data(json!({ "op": op, "id": id, "member": member, "role_id": role }))
        }
        Subject::Robot(id) => {
            let row = sqlx::query(
                "SELECT r.name, p.name AS project FROM robots r LEFT JOIN projects p ON p.id = r.project_id
                 WHERE r.id = $1",
            )
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
            let (name, project) = match &row {
                Some(r) => (r.try_get::<String, _>("name").ok(), r.try_get::<Option<String>, _>("project")?),
                None => (None, None),
            };
            let e = e.data(json!({ "op": op, "id": id, "name": name }));
            match project {
                Some(p) => e.project(&p),
                None => e,
            }
        }
        Subject::Repo(repo) => e.repo(repo).data(json!({ "op": op })),
    })
}

/// A bind value for [`SqlMetaStore::exec`].
enum Bind<'a> {
    I(i64),
    S(&'a str),
}

/// A repository's policy document (`$1`: the repository); sqlx and the fast reads.
pub(crate) const REPO_POLICY: &str = "SELECT document FROM repo_policies WHERE repo = $1";

/// What makes two audit entries the same for merging: who, what, on what, how, from where.
type AuditKey<'a> = [&'a str; 7];

fn audit_key(e: &AuditRecord) -> AuditKey<'_> {
    [
        &e.username,
        &e.operation,
        &e.resource_type,
        &e.resource,
        &e.result,
        e.client_ip.as_deref().unwrap_or(""),
        e.detail.as_deref().unwrap_or(""),
    ]
}

/// Append audit entries inside the caller's transaction: multi-row INSERTs, 100 rows (1,000
/// parameters) each, so a burst of pulls costs a few statements, not one per pull.
pub(crate) async fn insert_audit(db: &mut impl crate::exec::Exec, entries: &[AuditRecord]) -> Result<(), MetaError> {
    use std::collections::HashMap;
    // Aggregated entries first try to add to the latest identical one of the last hour: of
    // this batch, or else stored. The stored candidates for the whole batch come from one
    // query per thousand resources (a pull load over many images asked once per entry).
    let oldest = entries.iter().filter(|e| e.aggregate).map(|e| e.op_time - AUDIT_MERGE_WINDOW_MS).min();
    let mut resources: Vec<&str> = entries.iter().filter(|e| e.aggregate).map(|e| e.resource.as_str()).collect();
    resources.sort_unstable();
    resources.dedup();
    // Key → (id, op_time) of the latest stored entry.
    let mut stored: HashMap<[String; 7], (i64, i64)> = HashMap::new();
    if let Some(oldest) = oldest {
        for chunk in resources.chunks(crate::sql::MAX_BINDS - 1) {
            let sql = format!(
                "SELECT id, op_time, username, operation, resource_type, resource, result, COALESCE(client_ip, '') AS ip,
                 COALESCE(detail, '') AS detail FROM audit_log WHERE resource IN ({}) AND op_time >= $1 ORDER BY id DESC",
                crate::sql::placeholders(2, chunk.len())
            );
            let binds: Vec<crate::exec::Arg<'_>> =
                std::iter::once(oldest.into()).chain(chunk.iter().map(|r| (*r).into())).collect();
            type Row = (i64, i64, String, String, String, String, String, String, String);
            for (id, at, user, op, rtype, resource, result, ip, detail) in db.query_all::<Row>(&sql, &binds).await? {
                // Newest first: the first row of a key is its latest.
                stored.entry([user, op, rtype, resource, result, ip, detail]).or_insert((id, at));
            }
        }
    }
    let owned = |k: AuditKey<'_>| k.map(str::to_owned);
    // Stored id → (repeats to add, latest time).
    let mut merges: std::collections::BTreeMap<i64, (i64, i64)> = Default::default();
    let mut fresh: Vec<AuditRecord> = Vec::with_capacity(entries.len());
    // Key → the latest aggregated entry of `fresh` with it (a scan of `fresh` per entry was
    // quadratic in the batch).
    let mut latest: HashMap<AuditKey<'_>, usize> = HashMap::new();
    for e in entries {
        let cutoff = e.op_time - AUDIT_MERGE_WINDOW_MS;
        // The latest identical entry may be one of this batch, not yet written.
        if e.aggregate
            && let Some(f) = latest.get(&audit_key(e)).map(|&i| &mut fresh[i])
            && f.op_time >= cutoff
        {
            f.repeats += e.repeats.max(1);
            f.op_time = f.op_time.max(e.op_time);
            continue;
        }
        if e.aggregate
            && let Some((id, at)) = stored.get_mut(&owned(audit_key(e)))
            && *at >= cutoff
        {
            *at = (*at).max(e.op_time);
            let m = merges.entry(*id).or_default();
            m.0 += e.repeats.max(1);
            m.1 = m.1.max(e.op_time);
            continue;
        }
        if e.aggregate {
            latest.insert(audit_key(e), fresh.len());
        }
        fresh.push(e.clone());
    }
    for (id, (repeats, at)) in merges {
        db.exec(
            "UPDATE audit_log SET repeats = repeats + $1, op_time = CASE WHEN op_time < $2 THEN $2 ELSE op_time END
             WHERE id = $3",
            crate::exec::args![repeats, at, id],
        )
        .await?;
    }
    let backend = db.backend();
    for chunk in fresh.chunks(100) {
        let rows = crate::sql::value_rows(backend, chunk.len(), 10);
        let sql = format!(
            "INSERT INTO audit_log (op_time, username, operation, resource_type, resource, project, client_ip,
             result, detail, repeats) VALUES {}",
            rows
        );
        let mut binds = Vec::with_capacity(chunk.len() * 10);
        for e in chunk {
            binds.extend(crate::exec::args![
                e.op_time,
                &e.username,
                &e.operation,
                &e.resource_type,
                &e.resource,
                &e.project,
                &e.client_ip,
                &e.result,
                &e.detail,
                e.repeats.max(1),
            ]);
        }
        db.exec(&sql, &binds).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl AccessStore for SqlMetaStore {
    async fn user_groups(&self) -> Result<Vec<UserGroupRecord>, MetaError> {
        let rows = sqlx::query(&format!("SELECT {GROUP_COLS} FROM user_groups ORDER BY name, id"))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(group_from_row).collect()
    }

    async fn user_group(&self, id: i64) -> Result<Option<UserGroupRecord>, MetaError> {
        let row = sqlx::query(&format!("SELECT {GROUP_COLS} FROM user_groups WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(group_from_row).transpose()
    }

    async fn create_user_group(&self, g: &UserGroupRecord, event: &NewEvent) -> Result<i64, MetaError> {
        let mut tx = self.begin_write().await?;
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO user_groups (name, group_type, ldap_group_dn, member_key, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (member_key) DO NOTHING RETURNING id",
        )
        .bind(&g.name)
        .bind(g.group_type)
        .bind(&g.ldap_group_dn)
        .bind(&g.member_key)
        .bind(g.created_at)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            return Err(MetaError::Conflict(format!("a user group for {:?} already exists", g.member_key)));
        };
        let mut event = event.clone();
        event.data["id"] = id.into();
        insert_events(&mut tx, self.backend(), std::slice::from_ref(&event)).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn rename_user_group(&self, id: i64, name: &str, event: &NewEvent) -> Result<bool, MetaError> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query("UPDATE user_groups SET name = $2 WHERE id = $1")
            .bind(id)
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n > 0 {
            insert_events(&mut tx, self.backend(), std::slice::from_ref(event)).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn delete_user_group(&self, id: i64, event: &NewEvent) -> Result<bool, MetaError> {
        let mut tx = self.begin_write().await?;
        let key: Option<String> = sqlx::query_scalar("SELECT member_key FROM user_groups WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(key) = key else { return Ok(false) };
        sqlx::query("DELETE FROM project_members WHERE group_name = $1").bind(&key).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM user_groups WHERE id = $1").bind(id).execute(&mut *tx).await?;
        insert_events(&mut tx, self.backend(), std::slice::from_ref(event)).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn create_user(&self, u: &NewUser, now: i64, origin: &Origin) -> Result<i64, MetaError> {
        let mut tx = self.begin_write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO users (username, email, realname, comment, password_hash, sysadmin, oidc_subject, groups,
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING id",
        )
        .bind(&u.username)
        .bind(&u.email)
        .bind(&u.realname)
        .bind(&u.comment)
        .bind(&u.password_hash)
        .bind(b(u.sysadmin))
        .bind(&u.oidc_subject)
        .bind(groups_json(&u.groups))
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict(e, &format!("a user named {:?} already exists", u.username)))?;
        let e = NewEvent::new(EventKind::UserChanged, now, origin)
            .data(json!({ "op": "create", "id": id, "name": u.username, "sysadmin": u.sysadmin }));
        insert_events(&mut tx, self.backend(), &[e]).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn user(&self, id: i64) -> Result<Option<UserRecord>, MetaError> {
        self.one(USER_COLS, "users", "id", Bind::I(id), user_from_row).await
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>, MetaError> {
        self.one(USER_COLS, "users", "username", Bind::S(username), user_from_row).await
    }

    async fn user_by_oidc_subject(&self, subject: &str) -> Result<Option<UserRecord>, MetaError> {
        self.one(USER_COLS, "users", "oidc_subject", Bind::S(subject), user_from_row).await
    }

    async fn create_access_key(&self, k: &AccessKeyRecord, origin: &Origin) -> Result<(), MetaError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO access_keys (id, account, secret, active, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&k.id)
            .bind(&k.account)
            .bind(&k.sealed_secret)
            .bind(b(k.active))
            .bind(k.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict(e, "an access key with this id already exists"))?;
        let e = NewEvent::new(EventKind::AccessKeyChanged, k.created_at, origin)
            .data(json!({ "op": "create", "id": k.id, "account": k.account }));
        insert_events(&mut tx, self.backend(), &[e]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn access_key(&self, id: &str) -> Result<Option<AccessKeyRecord>, MetaError> {
        let row = sqlx::query("SELECT id, account, secret, active, created_at FROM access_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(access_key_from_row).transpose()
    }

    async fn access_keys(&self, account: &str) -> Result<Vec<AccessKeyRecord>, MetaError> {
        let rows = sqlx::query(
            "SELECT id, account, secret, active, created_at FROM access_keys WHERE account = $1 ORDER BY created_at, id",
        )
        .bind(account)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(access_key_from_row).collect()
    }

    async fn set_access_key_active(
        &self,
        id: &str,
        active: bool,
        now: i64,
        origin: &Origin,
    ) -> Result<bool, MetaError> {
        let mut tx = self.begin_write().await?;
        let account: Option<String> =
            sqlx::query_scalar("UPDATE access_keys SET active = $1 WHERE id = $2 RETURNING account")
                .bind(b(active))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(account) = account else { return Ok(false) };
        let op = if active { "activate" } else { "deactivate" };
        let e = NewEvent::new(EventKind::AccessKeyChanged, now, origin)
            .data(json!({ "op": op, "id": id, "account": account }));
        insert_events(&mut tx, self.backend(), &[e]).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn delete_access_key(&self, id: &str, now: i64, origin: &Origin) -> Result<bool, MetaError> {
        let mut tx = self.begin_write().await?;
        let account: Option<String> = sqlx::query_scalar("DELETE FROM access_keys WHERE id = $1 RETURNING account")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(account) = account else { return Ok(false) };
        let e = NewEvent::new(EventKind::AccessKeyChanged, now, origin)
            .data(json!({ "op": "delete", "id": id, "account": account }));
        insert_events(&mut tx, self.backend(), &[e]).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn settings(&self) -> Result<Vec<(String, String)>, MetaError> {
        let rows = sqlx::query("SELECT key, value FROM settings ORDER BY key").fetch_all(self.pool()).await?;
        rows.iter().map(|r| Ok((r.try_get("key")?, r.try_get("value")?))).collect()
    }

    async fn put_settings(
        &self,
        changes: &[(String, String)],
        now: i64,
        origin: &Origin,
    ) -> Result<Vec<(String, String)>, MetaError> {
        let mut tx = self.begin_write().await?;
        for (k, v) in changes {
            sqlx::query(
                "INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )
            .bind(k)
            .bind(v)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let rows = sqlx::query("SELECT key, value FROM settings ORDER BY key").fetch_all(&mut *tx).await?;
        let all: Vec<(String, String)> =
            rows.iter().map(|r| Ok((r.try_get("key")?, r.try_get("value")?))).collect::<Result<_, MetaError>>()?;
        let as_map = |kv: &[(String, String)]| -> serde_json::Map<String, serde_json::Value> {
            kv.iter().map(|(k, v)| (k.clone(), serde_json::from_str(v).unwrap_or(serde_json::Value::Null))).collect()
        };
        let e = NewEvent::new(EventKind::SettingsChanged, now, origin)
            .data(json!({ "changed": as_map(changes), "settings": as_map(&all) }));
        insert_events(&mut tx, self.backend(), &[e]).await?;
        tx.commit().await?;
        Ok(all)
    }

    async fn users(&self) -> Result<Vec<UserRecord>, MetaError> {
        let rows = sqlx::query(&format!("SELECT {USER_COLS} FROM users ORDER BY id")).fetch_all(self.pool()).await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn update_user_profile(
        &self,
        id: i64,
        email: &str,
        realname: &str,
        comment: &str,
        now: i64,
        origin: &Origin,
    ) -> Result<bool, MetaError> {
        let n = self
            .logged(
                "UPDATE users SET email = $2, realname = $3, comment = $4, updated_at = $5 WHERE id = $1",
                vec![Bind::I(id), Bind::S(email), Bind::S(realname), Bind::S(comment), Bind::I(now)],
                Change { kind: EventKind::UserChanged, op: "update", subject: Subject::User(id), at: now, origin },
            )
            .await?;
        Ok(n > 0)
    }

    async fn set_password(&self, id: i64, hash: &str, now: i64, origin: &Origin) -> Result<bool, MetaError> {
        let n = self
            .logged(
                "UPDATE users SET password_hash = $2, updated_at = $3, credentials_at = $3 WHERE id = $1",
                vec![Bind::I(id), Bind::S(hash), Bind::I(now)],
                Change { kind: EventKind::UserChanged, op: "password", subject: Subject::User(id), at: now, origin },
            )
            .await?;
        Ok(n > 0)
    }

    async fn mark_first_login(&self, id: i64, now: i64) -> Result<(), MetaError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE users SET first_login_at = $2 WHERE id = $1 AND first_login_at IS NULL")
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_sysadmin(&self, id: i64, sysadmin: bool, now: i64, origin: &Origin) -> Result<bool, MetaError> {
        let op = if sysadmin { "sysadmin" } else { "no-sysadmin" };
        let n = self
            .logged(
                "UPDATE users SET sysadmin = $2, updated_at = $3 WHERE id = $1",
                vec![Bind::I(id), Bind::I(b(sysadmin)), Bind::I(now)],
                Change { kind: EventKind::UserChanged, op, subject: Subject::User(id), at: now, origin },
            )
            .await?;
        Ok(n > 0)
    }

    async fn set_cli_secret(&self, id: i64, hash: Option<&str>, now: i64, origin: &Origin) -> Result<bool, MetaError> {
        let at = hash.map(|_| now);
        let mut tx = self.begin_write().await?;
        let n = sqlx::query("UPDATE users SET cli_secret_hash = $2, cli_secret_at = $3, updated_at = $4, credentials_at = $4 WHERE id = $1")
            .bind(id)
            .bind(hash)
            .bind(at)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n > 0 {
            let op = if hash.is_some() { "cli-secret" } else { "cli-secret-revoked" };
            let e = change_event(
                &mut tx,
                Change { kind: EventKind::UserChanged, op, subject: Subject::User(id), at: now, origin },
            )
            .await?;
            insert_events(&mut tx, self.backend(), &[e]).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn set_user_groups(&self, id: i64, groups: &[String], now: i64, origin: &Origin) -> Result<bool, MetaError> {
        let g = groups_json(groups);
        let n = self
            .logged(
                "UPDATE users SET groups = $2, updated_at = $3 WHERE id = $1",
                vec![Bind::I(id), Bind::S(&g), Bind::I(now)],
                Change { kind: EventKind::UserChanged, op: "groups", subject: Subject::User(id), at: now, origin },
            )
            .await?;
        Ok(n > 0)
    }

    async fn delete_user(&self, id: i64, origin: &Origin) -> Result<bool, MetaError> {
        let mut tx = self.begin_write().await?;
        let change = Change {
            kind: EventKind::UserChanged,
            op: "delete",
            subject: Subject::User(id),
            at: crate::now_ms(),
            origin,
        };
        let e = change_event(&mut tx, change).await?;
        sqlx::query("DELETE FROM project_members WHERE user_id = $1").bind(id).execute(&mut *tx).await?;
        // Its access keys go with it: an account made later under the same name must not
        // inherit them.
        sqlx::query("DELETE FROM access_keys WHERE account = (SELECT username FROM users WHERE id = $1)")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let n = sqlx::query("DELETE FROM users WHERE id = $1").bind(id).execute(&mut *tx).await?.rows_affected();
        if n > 0 {
            insert_events(&mut tx, self.backend(), &[e]).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn create_project(
        &self,
        name: &str,
        owner_id: i64,
        settings: &ProjectSettings,
        now: i64,
        origin: &Origin,
    ) -> Result<i64, MetaError> {
        let (public, metadata) = stored_settings(settings);
        let meta = serde_json::to_string(&metadata).map_err(|e| MetaError::Corrupt(e.to_string()))?;
        let mut tx = self.begin_write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO projects (name, owner_id, public, metadata, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
        )
        .bind(name)
        .bind(owner_id)
        .bind(b(public))
        .bind(meta)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict(e, &format!("a project named {name:?} already exists")))?;
        let e = NewEvent::new(EventKind::ProjectCreated, now, origin)
            .project(name)
            .data(json!({ "op": "create", "id": id, "name": name, "public": public, "metadata": metadata }));
        insert_events(&mut tx, self.backend(), &[e]).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn project(&self, id: i64) -> Result<Option<ProjectRecord>, MetaError> {
        self.one(PROJECT_COLS, "projects", "id", Bind::I(id), project_from_row).await
    }

    async fn project_by_name(&self, name: &str) -> Result<Option<ProjectRecord>, MetaError> {
        self.one(PROJECT_COLS, "projects", "name", Bind::S(name), project_from_row).await
    }

    async fn projects(&self) -> Result<Vec<ProjectRecord>, MetaError> {
        let rows =
            sqlx::query(&format!("SELECT {PROJECT_COLS} FROM projects ORDER BY name")).fetch_all(self.pool()).await?;
        rows.iter().map(project_from_row).collect()
    }

    async fn update_project(
        &self,
        id: i64,
        settings: &ProjectSettings,
        now: i64,
        origin: &Origin,
    ) -> Result<bool, MetaError> {
        let (public, metadata) = stored_settings(settings);
        let meta = serde_json::to_string(&metadata).map_err(|e| MetaError::Corrupt(e.to_string()))?;
        let n = self
            .logged(
                "UPDATE projects SET public = $2, metadata = $3, updated_at = $4 WHERE id = $1",
                vec![Bind::I(id), Bind::I(b(public)), Bind::S(&meta), Bind::I(now)],
                Change {
                    kind: EventKind::ProjectUpdated,
                    op: "update",
                    subject: Subject::Project(id),
                    at: now,
                    origin,
                },
            )
            .await?;
        Ok(n > 0)
    }

    async fn delete_project(&self, id: i64, origin: &Origin) -> Result<bool, MetaError> {
        let mut tx = self.begin_write().await?;
        let change = Change {
            kind: EventKind::ProjectDeleted,
            op: "delete",
            subject: Subject::Project(id),
            at: crate::now_ms(),
            origin,
        };
        let e = change_event(&mut tx, change).await?;
        let name: Option<String> =
            sqlx::query_scalar("SELECT name FROM projects WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
        sqlx::query("DELETE FROM project_members WHERE project_id = $1").bind(id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM robots WHERE project_id = $1").bind(id).execute(&mut *tx).await?;
        if let Some(name) = name {
            // Nothing keyed by the name may outlive it: a project made later under the same
            // name must not inherit policies or allowlisted CVEs.
            let len = name.chars().count() + 1; // a number, not user text
            sqlx::query(&format!("DELETE FROM repo_policies WHERE repo = $1 OR substr(repo, 1, {len}) = $2"))
                .bind(&name)
                .bind(format!("{name}/"))
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM cve_allowlist WHERE scope = $1").bind(&name).execute(&mut *tx).await?;
            // Nor its immutable tag rules, nor its storage limit (unless repositories of that
            // name still hold content: their accounting stays right).
            sqlx::query("DELETE FROM immutable_rules WHERE project = $1").bind(&name).execute(&mut *tx).await?;
            crate::webhook::delete_project_webhooks(&mut tx, &name).await?;
            sqlx::query("DELETE FROM signature_policies WHERE project = $1").bind(&name).execute(&mut *tx).await?;
            // Nor its labels.
            sqlx::query("DELETE FROM artifact_labels WHERE label_id IN (SELECT id FROM labels WHERE scope = 'p' AND project = $1)")
                .bind(&name)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM labels WHERE scope = 'p' AND project = $1").bind(&name).execute(&mut *tx).await?;
            // Nor its retention policy and its repositories' lifecycle policies.
            let owned = format!(
                "SELECT id FROM policies WHERE (kind = 'retention' AND scope = $1)
                 OR (kind IN ('lifecycle', 'lifecycle-preview-only') AND substr(scope, 1, {len}) = $2)"
            );
            for q in [
                format!("DELETE FROM policy_runs WHERE policy_id IN ({owned})"),
                format!("DELETE FROM policies WHERE id IN ({owned})"),
            ] {
                sqlx::query(&q).bind(&name).bind(format!("{name}/")).execute(&mut *tx).await?;
            }
            sqlx::query(
                "DELETE FROM quotas WHERE project = $1 AND NOT EXISTS (SELECT 1 FROM quota_objects WHERE project = $1)",
            )
            .bind(&name)
            .execute(&mut *tx)
            .await?;
        }
        let n = sqlx::query("DELETE FROM projects WHERE id = $1").bind(id).execute(&mut *tx).await?.rows_affected();
        if n > 0 {
            insert_events(&mut tx, self.backend(), &[e]).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn add_member(
        &self,
        project_id: i64,
        entity: &MemberEntity,
        role_id: i64,
        now: i64,
        origin: &Origin,
    ) -> Result<i64, MetaError> {
        let (kind, user, group) = match entity {
            MemberEntity::User { id, .. } => ("u", Some(*id), None),
            MemberEntity::Group(g) => ("g", None, Some(g.as_str())),
        };
        let mut tx = self.begin_write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO project_members (project_id, entity_type, user_id, group_name, role_id, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
        )
        .bind(project_id)
        .bind(kind)
        .bind(user)
        .bind(group)
        .bind(role_id)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict(e, "that member is already in the project"))?;
        let change = Change {
            kind: EventKind::MemberChanged,
            op: "create",
            subject: Subject::Member(project_id, id),
            at: now,
            origin,
        };
        let e = change_event(&mut tx, change).await?;
        insert_events(&mut tx, self.backend(), &[e]).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn members(&self, project_id: i64) -> Result<Vec<MemberRecord>, MetaError> {
        let rows = sqlx::query(
            "SELECT m.id, m.project_id, m.entity_type, m.user_id, m.group_name, m.role_id, m.created_at,
             m.updated_at, u.username FROM project_members m LEFT JOIN users u ON u.id = m.user_id
             WHERE m.project_id = $1 ORDER BY m.id",
        )
        .bind(project_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let kind: String = r.try_get("entity_type")?;
                let entity = if kind == "u" {
                    MemberEntity::User {
                        id: r.try_get::<Option<i64>, _>("user_id")?.unwrap_or_default(),
                        name: r.try_get::<Option<String>, _>("username")?.unwrap_or_default(),
                    }
                } else {
                    MemberEntity::Group(r.try_get::<Option<String>, _>("group_name")?.unwrap_or_default())
                };
                Ok(MemberRecord {
                    id: r.try_get("id")?,
                    project_id: r.try_get("project_id")?,
                    entity,
                    role_id: r.try_get("role_id")?,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    async fn update_member(
        &self,
        project_id: i64,
        member_id: i64,
        role_id: i64,
        now: i64,
        origin: &Origin,
    ) -> Result<bool, MetaError> {
        let subject = Subject::Member(project_id, member_id);
        let n = self
            .logged(
                "UPDATE project_members SET role_id = $3, updated_at = $4 WHERE project_id = $1 AND id = $2",
                vec![Bind::I(project_id), Bind::I(member_id), Bind::I(role_id), Bind::I(now)],
                Change { kind: EventKind::MemberChanged, op: "update", subject, at: now, origin },
            )
            .await?;
        Ok(n > 0)
    }

    async fn delete_member(&self, project_id: i64, member_id: i64, origin: &Origin) -> Result<bool, MetaError> {
        let subject = Subject::Member(project_id, member_id);
        let n = self
            .logged(
                "DELETE FROM project_members WHERE project_id = $1 AND id = $2",
                vec![Bind::I(project_id), Bind::I(member_id)],
                Change { kind: EventKind::MemberChanged, op: "delete", subject, at: crate::now_ms(), origin },
            )
            .await?;
        Ok(n > 0)
    }

    async fn memberships(&self, user_id: i64, groups: &[String]) -> Result<Vec<(i64, i64)>, MetaError> {
        let mut sql = String::from("SELECT project_id, role_id FROM project_members WHERE user_id = $1");
        if !groups.is_empty() {
            let ph = (2..2 + groups.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
            sql.push_str(&format!(" OR group_name IN ({ph})"));
        }
        let mut q = sqlx::query(&sql).bind(user_id);
        for g in groups {
            q = q.bind(g);
        }
        let rows = q.fetch_all(self.pool()).await?;
        rows.iter().map(|r| Ok((r.try_get("project_id")?, r.try_get("role_id")?))).collect()
    }

    async fn create_robot(&self, r: &RobotRecord, origin: &Origin) -> Result<i64, MetaError> {
        let mut tx = self.begin_write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO robots (name, description, project_id, secret_hash, disabled, duration, expires_at,
             permissions, creator, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
             RETURNING id",
        )
        .bind(&r.name)
        .bind(&r.description)
        .bind(r.project_id)
        .bind(&r.secret_hash)
        .bind(b(r.disabled))
        .bind(r.duration)
        .bind(r.expires_at)
        .bind(&r.permissions)
        .bind(&r.creator)
        .bind(r.created_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict(e, &format!("a robot account named {:?} already exists", r.name)))?;
        let change = Change {
            kind: EventKind::RobotChanged,
            op: "create",
            subject: Subject::Robot(id),
            at: r.created_at,
            origin,
        };
        let e = change_event(&mut tx, change).await?;
        insert_events(&mut tx, self.backend(), &[e]).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn robot(&self, id: i64) -> Result<Option<RobotRecord>, MetaError> {
        self.one(ROBOT_COLS, "robots", "id", Bind::I(id), robot_from_row).await
    }

    async fn robot_by_name(&self, name: &str) -> Result<Option<RobotRecord>, MetaError> {
        self.one(ROBOT_COLS, "robots", "name", Bind::S(name), robot_from_row).await
    }

    async fn robots(&self) -> Result<Vec<RobotRecord>, MetaError> {
        let rows = sqlx::query(&format!("SELECT {ROBOT_COLS} FROM robots ORDER BY id")).fetch_all(self.pool()).await?;
        rows.iter().map(robot_from_row).collect()
    }

    async fn update_robot(&self, r: &RobotRecord, origin: &Origin) -> Result<bool, MetaError> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE robots SET description = $2, disabled = $3, duration = $4, expires_at = $5, permissions = $6,
             updated_at = $7 WHERE id = $1",
        )
        .bind(r.id)
        .bind(&r.description)
        .bind(b(r.disabled))
        .bind(r.duration)
        .bind(r.expires_at)
        .bind(&r.permissions)
        .bind(r.updated_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n > 0 {
            let change = Change {
                kind: EventKind::RobotChanged,
                op: "update",
                subject: Subject::Robot(r.id),
                at: r.updated_at,
                origin,
            };
            let e = change_event(&mut tx, change).await?;
            insert_events(&mut tx, self.backend(), &[e]).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn set_robot_secret(&self, id: i64, hash: &str, now: i64, origin: &Origin) -> Result<bool, MetaError> {
        let n = self
            .logged(
                "UPDATE robots SET secret_hash = $2, updated_at = $3, credentials_at = $3 WHERE id = $1",
                vec![Bind::I(id), Bind::S(hash), Bind::I(now)],
                Change { kind: EventKind::RobotChanged, op: "secret", subject: Subject::Robot(id), at: now, origin },
            )
            .await?;
        Ok(n > 0)
    }

    async fn robot_federation(&self, id: i64) -> Result<Option<String>, MetaError> {
        Ok(sqlx::query_scalar("SELECT config FROM robot_federation WHERE robot_id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?)
    }

    async fn put_robot_federation(
        &self,
        id: i64,
        config: Option<&str>,
        now: i64,
        origin: &Origin,
    ) -> Result<(), MetaError> {
        let change =
            Change { kind: EventKind::RobotChanged, op: "federation", subject: Subject::Robot(id), at: now, origin };
        match config {
            Some(c) => {
                self.logged(
                    "INSERT INTO robot_federation (robot_id, config, updated_at) VALUES ($1, $2, $3)
                     ON CONFLICT (robot_id) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
                    vec![Bind::I(id), Bind::S(c), Bind::I(now)],
                    change,
                )
                .await?
            }
            None => self.logged("DELETE FROM robot_federation WHERE robot_id = $1", vec![Bind::I(id)], change).await?,
        };
        Ok(())
    }

    async fn delete_robot(&self, id: i64, origin: &Origin) -> Result<bool, MetaError> {
        let change = Change {
            kind: EventKind::RobotChanged,
            op: "delete",
            subject: Subject::Robot(id),
            at: crate::now_ms(),
            origin,
        };
        let mut tx = self.begin_write().await?;
        let e = change_event(&mut tx, change).await?;
        // Its access keys go with it (a robot made later under the same name must not inherit them).
        sqlx::query("DELETE FROM access_keys WHERE account = (SELECT name FROM robots WHERE id = $1)")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM robot_federation WHERE robot_id = $1").bind(id).execute(&mut *tx).await?;
        let n = sqlx::query("DELETE FROM robots WHERE id = $1").bind(id).execute(&mut *tx).await?.rows_affected();
        if n > 0 {
            insert_events(&mut tx, self.backend(), &[e]).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn put_repo_policy(&self, repo: &str, document: &str, now: i64, origin: &Origin) -> Result<(), MetaError> {
        self.logged(
            "INSERT INTO repo_policies (repo, document, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (repo) DO UPDATE SET document = excluded.document, updated_at = excluded.updated_at",
            vec![Bind::S(repo), Bind::S(document), Bind::I(now)],
            Change { kind: EventKind::PolicyChanged, op: "update", subject: Subject::Repo(repo), at: now, origin },
        )
        .await?;
        Ok(())
    }

    async fn repo_policy(&self, repo: &str) -> Result<Option<String>, MetaError> {
        if let Some(found) = self.fast_reads().and_then(|f| f.repo_policy(repo)) {
            return Ok(found);
        }
        Ok(sqlx::query_scalar(REPO_POLICY).bind(repo).fetch_optional(self.pool()).await?)
    }

    async fn repo_policies(&self) -> Result<Vec<(String, String)>, MetaError> {
        let rows = sqlx::query("SELECT repo, document FROM repo_policies ORDER BY repo").fetch_all(self.pool()).await?;
        rows.iter().map(|r| Ok((r.try_get("repo")?, r.try_get("document")?))).collect()
    }

    async fn delete_repo_policy(&self, repo: &str, origin: &Origin) -> Result<bool, MetaError> {
        let change = Change {
            kind: EventKind::PolicyChanged,
            op: "delete",
            subject: Subject::Repo(repo),
            at: crate::now_ms(),
            origin,
        };
        Ok(self.logged("DELETE FROM repo_policies WHERE repo = $1", vec![Bind::S(repo)], change).await? > 0)
    }

    async fn append_audit(&self, entries: &[AuditRecord]) -> Result<(), MetaError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        insert_audit(&mut tx, entries).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit_log(&self, q: &AuditQuery, offset: i64, limit: i64) -> Result<(Vec<AuditRecord>, i64), MetaError> {
        let mut clauses = Vec::new();
        let mut strs: Vec<String> = Vec::new();
        let mut ints: Vec<i64> = Vec::new();
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        // Strings bind first ($1..), then integers.
        let string_filters = [
            ("project = ", q.project.clone()),
            ("username = ", q.username.clone()),
            ("operation = ", q.operation.clone()),
            ("resource_type = ", q.resource_type.clone()),
        ];
        for (col, v) in string_filters {
            if let Some(v) = v {
                clauses.push(format!("{col}${}", next()));
                strs.push(v);
            }
        }
        if let Some(p) = &q.resource_prefix {
            // substr, not LIKE (so `%` and `_` mean themselves) nor a range (PostgreSQL's
            // collation need not be byte order).
            clauses.push(format!("substr(resource, 1, {}) = ${}", p.chars().count(), next()));
            strs.push(p.clone());
        }
        if let Some(f) = q.from {
            clauses.push(format!("op_time >= ${}", next()));
            ints.push(f);
        }
        if let Some(t) = q.to {
            clauses.push(format!("op_time <= ${}", next()));
            ints.push(t);
        }
        let filter = if clauses.is_empty() { String::new() } else { format!(" WHERE {}", clauses.join(" AND ")) };
        let count_sql = format!("SELECT COUNT(*) FROM audit_log{filter}");
        let mut cq = sqlx::query_scalar::<_, i64>(&count_sql);
        for s in &strs {
            cq = cq.bind(s);
        }
        for i in &ints {
            cq = cq.bind(i);
        }
        let total = cq.fetch_one(self.pool()).await?;
        let (lp, op) = (next(), next());
        let page_sql = format!(
            "SELECT id, op_time, username, operation, resource_type, resource, project, client_ip, result, detail,
             repeats FROM audit_log{filter} ORDER BY op_time DESC, id DESC LIMIT ${lp} OFFSET ${op}"
        );
        let mut pq = sqlx::query(&page_sql);
        for s in &strs {
            pq = pq.bind(s);
        }
        for i in &ints {
            pq = pq.bind(i);
        }
        let rows = pq.bind(limit).bind(offset).fetch_all(self.pool()).await?;
        Ok((rows.iter().map(audit_from_row).collect::<Result<_, _>>()?, total))
    }

    async fn purge_audit(&self, purge: &AuditPurge, now: i64, origin: &Origin) -> Result<u64, MetaError> {
        let mut tx = self.begin_write().await?;
        let mut filter = "op_time < $1".to_owned();
        if let Some(ops) = &purge.operations {
            if ops.is_empty() {
                return Ok(0);
            }
            let list: Vec<String> = (0..ops.len()).map(|i| format!("${}", i + 2)).collect();
            filter.push_str(&format!(" AND operation IN ({})", list.join(", ")));
        }
        let verb = if purge.dry_run { "SELECT COUNT(*) FROM audit_log" } else { "DELETE FROM audit_log" };
        let sql = format!("{verb} WHERE {filter}");
        let mut n = if purge.dry_run {
            let mut q = sqlx::query_scalar::<_, i64>(&sql).bind(purge.before);
            for o in purge.operations.iter().flatten() {
                q = q.bind(o);
            }
            q.fetch_one(&mut *tx).await? as u64
        } else {
            let mut q = sqlx::query(&sql).bind(purge.before);
            for o in purge.operations.iter().flatten() {
                q = q.bind(o);
            }
            q.execute(&mut *tx).await?.rows_affected()
        };
        if let Some(keep) = purge.keep_at_most {
            // Everything at or below the id of the (keep+1)-th newest entry.
            let cut = "id <= (SELECT id FROM audit_log ORDER BY id DESC LIMIT 1 OFFSET $1)";
            n += if purge.dry_run {
                sqlx::query_scalar::<_, i64>(&format!("SELECT COUNT(*) FROM audit_log WHERE {cut}"))
                    .bind(keep.max(0))
                    .fetch_one(&mut *tx)
                    .await? as u64
            } else {
                sqlx::query(&format!("DELETE FROM audit_log WHERE {cut}"))
                    .bind(keep.max(0))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
            };
        }
        if !purge.dry_run && n > 0 {
            let e = NewEvent::new(EventKind::AuditPurged, now, origin).data(json!({
                "count": n, "before": purge.before, "operations": purge.operations, "keep_at_most": purge.keep_at_most,
            }));
            insert_events(&mut tx, self.backend(), &[e]).await?;
        }
        tx.commit().await?;
        Ok(n)
    }

    async fn add_pulls(&self, counts: &[(String, i64)]) -> Result<(), MetaError> {
        let mut tx = self.begin_write().await?;
        for (repo, n) in counts {
            sqlx::query("UPDATE repositories SET pull_count = pull_count + $2 WHERE name = $1")
                .bind(repo)
                .bind(n)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, MetaError> {
        let rows = sqlx::query(
            "SELECT kid, private_key, created_at, retired_at FROM signing_keys ORDER BY created_at DESC, kid DESC",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SigningKeyRecord {
                    kid: r.try_get("kid")?,
                    private_key: r.try_get("private_key")?,
                    created_at: r.try_get("created_at")?,
                    retired_at: r.try_get("retired_at")?,
                })
            })
            .collect()
    }

    async fn rotate_signing_key(&self, key: &SigningKeyRecord, forget_before: i64) -> Result<(), MetaError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < $1")
            .bind(forget_before)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
            .bind(key.created_at)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO signing_keys (kid, private_key, created_at, retired_at) VALUES ($1, $2, $3, NULL)")
            .bind(&key.kid)
            .bind(&key.private_key)
            .bind(key.created_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn ensure_signing_key(&self, key: &SigningKeyRecord) -> Result<SigningKeyRecord, MetaError> {
        let mut conn = self.pool().acquire().await?;
        if self.backend() == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_lock(727275)").execute(&mut *conn).await?;
        }
        let result = async {
            let existing: Option<String> =
                sqlx::query_scalar("SELECT kid FROM signing_keys LIMIT 1").fetch_optional(&mut *conn).await?;
            if existing.is_none() {
                sqlx::query(
                    "INSERT INTO signing_keys (kid, private_key, created_at, retired_at) VALUES ($1, $2, $3, NULL)",
                )
                .bind(&key.kid)
                .bind(&key.private_key)
                .bind(key.created_at)
                .execute(&mut *conn)
                .await?;
            }
            Ok::<_, MetaError>(())
        }
        .await;
        if self.backend() == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_unlock(727275)").execute(&mut *conn).await?;
        }
        result?;
        drop(conn);
        self.signing_keys()
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| MetaError::Corrupt("no signing key after creating one".into()))
    }
}

fn access_key_from_row(r: &AnyRow) -> Result<AccessKeyRecord, MetaError> {
    Ok(AccessKeyRecord {
        id: r.try_get("id")?,
        account: r.try_get("account")?,
        sealed_secret: r.try_get("secret")?,
        active: r.try_get::<i64, _>("active")? != 0,
        created_at: r.try_get("created_at")?,
    })
}

const GROUP_COLS: &str = "id, name, group_type, ldap_group_dn, member_key, created_at";

fn group_from_row(r: &sqlx::any::AnyRow) -> Result<UserGroupRecord, MetaError> {
    use sqlx::Row;
    Ok(UserGroupRecord {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        group_type: r.try_get("group_type")?,
        ldap_group_dn: r.try_get("ldap_group_dn")?,
        member_key: r.try_get("member_key")?,
        created_at: r.try_get("created_at")?,
    })
}
