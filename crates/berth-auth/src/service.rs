//! The access domain's services: projects and members, users, robot accounts, repository
//! policies and the audit log.
//!
//! These methods are the only way the HTTP crates, the CLI and jobs read or change access
//! data. Each change is one store call that logs its event in the same transaction (see
//! `berth_meta::AccessStore`), then drops this process's caches; other replicas drop theirs
//! when their event follower sees the event.

use berth_meta::{
    AuditPurge, AuditQuery, AuditRecord, MemberEntity, MemberRecord, MetaError, NewUser, Origin, ProjectRecord,
    RobotRecord, UserRecord,
};
use berth_types::ProjectSettings;

use crate::policy::{PolicyError, RepoPolicy};
use crate::rbac::Role;
use crate::{Auth, Principal, now_ms};

/// Why a repository policy was not stored.
#[derive(Debug, thiserror::Error)]
pub enum PolicyChangeError {
    /// The document is not a valid policy.
    #[error(transparent)]
    Invalid(#[from] PolicyError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] MetaError),
}

impl Auth {
    /// The outcome of a change: on success, this process's caches are dropped first.
    fn changed<T>(&self, outcome: Result<T, MetaError>) -> Result<T, MetaError> {
        if outcome.is_ok() {
            self.invalidate();
        }
        outcome
    }

    /// Is the metadata database reachable? (A cheap read.)
    pub async fn ping(&self) -> Result<(), MetaError> {
        self.store.project_by_name("").await.map(|_| ())
    }

    // ---- projects ----

    /// A project by id (not cached).
    pub async fn project_by_id(&self, id: i64) -> Result<Option<ProjectRecord>, MetaError> {
        self.store.project(id).await
    }

    /// Every project, by name.
    pub async fn projects(&self) -> Result<Vec<ProjectRecord>, MetaError> {
        self.store.projects().await
    }

    /// Create a project owned by `owner` (who becomes its project admin).
    pub async fn create_project(
        &self,
        name: &str,
        owner: &Principal,
        settings: &ProjectSettings,
        origin: &Origin,
    ) -> Result<i64, MetaError> {
        let now = now_ms();
        let owner_id = match owner {
            Principal::User(u) => u.id,
            _ => self.store.user_by_name("admin").await?.map(|u| u.id).unwrap_or(0),
        };
        let id = self.store.create_project(name, owner_id, settings, now, origin).await?;
        if owner_id > 0 {
            let entity = MemberEntity::User { id: owner_id, name: String::new() };
            match self.store.add_member(id, &entity, Role::ProjectAdmin.id(), now, origin).await {
                Ok(_) | Err(MetaError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        self.invalidate();
        Ok(id)
    }

    /// Replace a project's settings.
    pub async fn update_project(
        &self,
        id: i64,
        settings: &ProjectSettings,
        origin: &Origin,
    ) -> Result<bool, MetaError> {
        self.changed(self.store.update_project(id, settings, now_ms(), origin).await)
    }

    /// Delete a project with its members and robots.
    pub async fn delete_project(&self, id: i64, origin: &Origin) -> Result<bool, MetaError> {
        self.changed(self.store.delete_project(id, origin).await)
    }

    /// The members of a project.
    pub async fn members(&self, project_id: i64) -> Result<Vec<MemberRecord>, MetaError> {
        self.store.members(project_id).await
    }

    /// Harbor's user groups.
    pub async fn user_groups(&self) -> Result<Vec<berth_meta::UserGroupRecord>, MetaError> {
        self.store.user_groups().await
    }

    /// One user group.
    pub async fn user_group(&self, id: i64) -> Result<Option<berth_meta::UserGroupRecord>, MetaError> {
        self.store.user_group(id).await
    }

    /// Create a user group: an LDAP group (type 1) by its DN — which must exist when LDAP is
    /// configured —, an HTTP (2) or OIDC (3) group by name.
    pub async fn create_user_group(
        &self,
        name: &str,
        group_type: i64,
        ldap_dn: &str,
        origin: &Origin,
    ) -> Result<i64, crate::AuthError> {
        use crate::AuthError;
        let (name, key) = match group_type {
            1 => {
                let dn = ldap_dn.trim();
                if dn.is_empty() {
                    return Err(AuthError::Refused("an LDAP group (group_type 1) needs ldap_group_dn".into()));
                }
                if let Some(l) = self.ldap() {
                    let found =
                        l.search_groups(None, Some(dn)).await.map_err(|e| AuthError::Unavailable(e.to_string()))?;
                    if found.is_empty() {
                        return Err(AuthError::Refused(format!("LDAP has no group {dn:?}")));
                    }
                }
                let n = if name.trim().is_empty() {
                    dn.split(',').next().unwrap_or(dn).trim_start_matches("cn=").to_owned()
                } else {
                    name.trim().to_owned()
                };
                (n, dn.to_lowercase())
            }
            2 | 3 => {
                if name.trim().is_empty() {
                    return Err(AuthError::Refused("a group needs group_name".into()));
                }
                (name.trim().to_owned(), name.trim().to_owned())
            }
            other => {
                return Err(AuthError::Refused(format!("group_type {other}: use 1 (LDAP), 2 (HTTP) or 3 (OIDC)")));
            }
        };
        let g = berth_meta::UserGroupRecord {
            id: 0,
            name: name.clone(),
            group_type,
            ldap_group_dn: if group_type == 1 { ldap_dn.trim().to_owned() } else { String::new() },
            member_key: key,
            created_at: now_ms(),
        };
        let e = berth_meta::NewEvent::new(berth_meta::EventKind::UserChanged, now_ms(), origin)
            .data(serde_json::json!({"op": "usergroup", "name": name}));
        self.store.create_user_group(&g, &e).await.map_err(|e| match e {
            MetaError::Conflict(m) => AuthError::Conflict(m),
            other => AuthError::Store(other),
        })
    }

    /// Rename a user group; `false` if it is gone.
    pub async fn rename_user_group(&self, id: i64, name: &str, origin: &Origin) -> Result<bool, MetaError> {
        let e = berth_meta::NewEvent::new(berth_meta::EventKind::UserChanged, now_ms(), origin)
            .data(serde_json::json!({"op": "usergroup", "name": name}));
        self.store.rename_user_group(id, name, &e).await
    }

    /// Delete a user group and its project memberships; `false` if it was gone.
    pub async fn delete_user_group(&self, id: i64, origin: &Origin) -> Result<bool, MetaError> {
        let e = berth_meta::NewEvent::new(berth_meta::EventKind::UserChanged, now_ms(), origin)
            .data(serde_json::json!({"op": "usergroup", "id": id}));
        self.changed(self.store.delete_user_group(id, &e).await)
    }

    /// Add a member with a role; returns the membership id.
    pub async fn add_member(
        &self,
        project_id: i64,
        entity: &MemberEntity,
        role: Role,
        origin: &Origin,
    ) -> Result<i64, MetaError> {
        self.changed(self.store.add_member(project_id, entity, role.id(), now_ms(), origin).await)
    }

    /// Change a member's role.
    pub async fn update_member(
        &self,
        project_id: i64,
        member_id: i64,
        role: Role,
        origin: &Origin,
    ) -> Result<bool, MetaError> {
        self.changed(self.store.update_member(project_id, member_id, role.id(), now_ms(), origin).await)
    }

    /// Remove a member.
    pub async fn delete_member(&self, project_id: i64, member_id: i64, origin: &Origin) -> Result<bool, MetaError> {
        self.changed(self.store.delete_member(project_id, member_id, origin).await)
    }

    // ---- users ----

    /// A user by id.
    pub async fn user(&self, id: i64) -> Result<Option<UserRecord>, MetaError> {
        self.store.user(id).await
    }

    /// A user by username.
    pub async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>, MetaError> {
        self.store.user_by_name(name).await
    }

    /// Every user, by id.
    pub async fn users(&self) -> Result<Vec<UserRecord>, MetaError> {
        self.store.users().await
    }

    /// Create a user; returns the id.
    pub async fn create_user(&self, u: &NewUser, origin: &Origin) -> Result<i64, MetaError> {
        self.changed(self.store.create_user(u, now_ms(), origin).await)
    }

    /// Change a user's e-mail, real name and comment.
    pub async fn update_user_profile(
        &self,
        id: i64,
        email: &str,
        realname: &str,
        comment: &str,
        origin: &Origin,
    ) -> Result<bool, MetaError> {
        self.changed(self.store.update_user_profile(id, email, realname, comment, now_ms(), origin).await)
    }

    /// Set a user's password hash (argon2id PHC string); tokens issued before are void.
    pub async fn set_password(&self, id: i64, hash: &str, origin: &Origin) -> Result<bool, MetaError> {
        self.changed(self.store.set_password(id, hash, now_ms(), origin).await)
    }

    /// Grant or revoke system administration.
    pub async fn set_sysadmin(&self, id: i64, sysadmin: bool, origin: &Origin) -> Result<bool, MetaError> {
        self.changed(self.store.set_sysadmin(id, sysadmin, now_ms(), origin).await)
    }

    /// Set (`Some(hash)`) or revoke (`None`) a user's CLI secret.
    pub async fn set_cli_secret(&self, id: i64, hash: Option<&str>, origin: &Origin) -> Result<bool, MetaError> {
        self.changed(self.store.set_cli_secret(id, hash, now_ms(), origin).await)
    }

    /// Delete a user and their memberships.
    pub async fn delete_user(&self, id: i64, origin: &Origin) -> Result<bool, MetaError> {
        self.changed(self.store.delete_user(id, origin).await)
    }

    // ---- robots ----

    /// A robot account by id.
    pub async fn robot(&self, id: i64) -> Result<Option<RobotRecord>, MetaError> {
        self.store.robot(id).await
    }

    /// Every robot account, by id.
    pub async fn robots(&self) -> Result<Vec<RobotRecord>, MetaError> {
        self.store.robots().await
    }

    /// Create a robot account; returns its id.
    pub async fn create_robot(&self, r: &RobotRecord, origin: &Origin) -> Result<i64, MetaError> {
        self.changed(self.store.create_robot(r, origin).await)
    }

    /// Replace a robot's description, state, expiry and permissions.
    pub async fn update_robot(&self, r: &RobotRecord, origin: &Origin) -> Result<bool, MetaError> {
        self.changed(self.store.update_robot(r, origin).await)
    }

    /// Replace a robot's secret hash; tokens issued before are void.
    pub async fn set_robot_secret(&self, id: i64, hash: &str, origin: &Origin) -> Result<bool, MetaError> {
        self.changed(self.store.set_robot_secret(id, hash, now_ms(), origin).await)
    }

    /// Delete a robot account.
    pub async fn delete_robot(&self, id: i64, origin: &Origin) -> Result<bool, MetaError> {
        self.changed(self.store.delete_robot(id, origin).await)
    }

    // ---- repository policies ----

    /// A repository's policy document, as stored.
    pub async fn repo_policy(&self, repo: &str) -> Result<Option<String>, MetaError> {
        self.store.repo_policy(repo).await
    }

    /// Every repository policy: `(repository, document)` by repository.
    pub async fn repo_policies(&self) -> Result<Vec<(String, String)>, MetaError> {
        self.store.repo_policies().await
    }

    /// Validate and store a repository's policy document (replacing any).
    pub async fn put_repo_policy(&self, repo: &str, document: &str, origin: &Origin) -> Result<(), PolicyChangeError> {
        RepoPolicy::parse(document)?;
        Ok(self.changed(self.store.put_repo_policy(repo, document, now_ms(), origin).await)?)
    }

    /// Delete a repository's policy; returns whether there was one.
    pub async fn delete_repo_policy(&self, repo: &str, origin: &Origin) -> Result<bool, MetaError> {
        self.changed(self.store.delete_repo_policy(repo, origin).await)
    }

    // ---- audit log ----

    /// Purge audit entries (see `AuditPurge`); returns how many went (or would go).
    pub async fn purge_audit(&self, purge: &AuditPurge, origin: &Origin) -> Result<u64, MetaError> {
        self.store.purge_audit(purge, now_ms(), origin).await
    }

    /// Audit entries matching `q`, newest first: `(page, total matching)`.
    pub async fn audit_log(
        &self,
        q: &AuditQuery,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<AuditRecord>, i64), MetaError> {
        self.store.audit_log(q, offset, limit).await
    }
}
