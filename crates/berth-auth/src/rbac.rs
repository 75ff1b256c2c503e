//! Roles, permissions and robot access lists: who may do what inside a project.
//!
//! The five project roles and their permissions follow Harbor's: a project admin may do
//! everything in the project; a maintainer everything but membership, repository policies
//! (which can grant access, like membership) and deleting the project; a developer may pull, push and tag but not delete; a guest and a limited guest
//! may only read and pull (a limited guest cannot list members or read the project's logs).

use std::fmt;

use serde::{Deserialize, Serialize};

/// One thing a principal may do in a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Perm {
    /// Read manifests, blobs, tags (`docker pull`).
    Pull,
    /// Upload blobs and manifests (`docker push`).
    Push,
    /// Delete artifacts, and whole repositories.
    DeleteArtifact,
    /// Add a tag to an existing artifact.
    CreateTag,
    /// Remove a tag.
    DeleteTag,
    /// Start a vulnerability scan.
    Scan,
    /// See the project and its repositories and artifacts in the management API.
    Read,
    /// Change the project's settings.
    UpdateProject,
    /// Delete the project.
    DeleteProject,
    /// List the project's members.
    ReadMembers,
    /// Add, change and remove members.
    ManageMembers,
    /// List the project's robot accounts.
    ReadRobots,
    /// Create, change and delete the project's robot accounts.
    ManageRobots,
    /// Set and delete repository policies.
    ManagePolicy,
    /// Read the project's audit log.
    ReadLogs,
    /// See the project's webhook policies and their deliveries.
    ReadWebhooks,
    /// Create, change, test and delete webhook policies; redeliver.
    ManageWebhooks,
    /// Create projects (a system permission).
    CreateProject,
    /// Manage users, system robots, jobs and system settings (a system permission).
    Administer,
}

impl Perm {
    /// Every permission.
    pub const ALL: [Perm; 19] = [
        Perm::Pull,
        Perm::Push,
        Perm::DeleteArtifact,
        Perm::CreateTag,
        Perm::DeleteTag,
        Perm::Scan,
        Perm::Read,
        Perm::UpdateProject,
        Perm::DeleteProject,
        Perm::ReadMembers,
        Perm::ManageMembers,
        Perm::ReadRobots,
        Perm::ManageRobots,
        Perm::ManagePolicy,
        Perm::ReadLogs,
        Perm::ReadWebhooks,
        Perm::ManageWebhooks,
        Perm::CreateProject,
        Perm::Administer,
    ];

    /// A permission on the registry as a whole rather than in a project.
    pub fn is_system(self) -> bool {
        matches!(self, Perm::CreateProject | Perm::Administer)
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// A set of permissions.
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct PermSet(u32);

impl PermSet {
    /// No permission.
    pub const NONE: PermSet = PermSet(0);

    /// Every permission.
    pub fn all() -> PermSet {
        PermSet::of(&Perm::ALL)
    }

    /// Every permission in a project (no system permission).
    pub fn project_all() -> PermSet {
        let mut set = PermSet::NONE;
        for p in Perm::ALL.into_iter().filter(|p| !p.is_system()) {
            set.insert(p);
        }
        set
    }

    /// The set of these permissions.
    pub fn of(perms: &[Perm]) -> PermSet {
        PermSet(perms.iter().fold(0, |acc, p| acc | p.bit()))
    }

    /// Does the set hold `p`?
    pub fn has(self, p: Perm) -> bool {
        self.0 & p.bit() != 0
    }

    /// Add `p`.
    pub fn insert(&mut self, p: Perm) {
        self.0 |= p.bit();
    }

    /// Both sets together.
    pub fn union(self, other: PermSet) -> PermSet {
        PermSet(self.0 | other.0)
    }

    /// Is it empty?
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The permissions, in declaration order.
    pub fn iter(self) -> impl Iterator<Item = Perm> {
        Perm::ALL.into_iter().filter(move |p| self.has(*p))
    }
}

impl fmt::Debug for PermSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// A project role, with Harbor's numeric ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// 1: everything in the project.
    ProjectAdmin,
    /// 2: pull, push, tag.
    Developer,
    /// 3: pull and read.
    Guest,
    /// 4: everything but members and deleting the project.
    Maintainer,
    /// 5: pull and read artifacts only.
    LimitedGuest,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] = [Role::ProjectAdmin, Role::Developer, Role::Guest, Role::Maintainer, Role::LimitedGuest];

    /// Harbor's role id.
    pub fn id(self) -> i64 {
        match self {
            Role::ProjectAdmin => 1,
            Role::Developer => 2,
            Role::Guest => 3,
            Role::Maintainer => 4,
            Role::LimitedGuest => 5,
        }
    }

    /// The role with Harbor's id `id`.
    pub fn from_id(id: i64) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.id() == id)
    }

    /// Harbor's role name.
    pub fn name(self) -> &'static str {
        match self {
            Role::ProjectAdmin => "projectAdmin",
            Role::Developer => "developer",
            Role::Guest => "guest",
            Role::Maintainer => "maintainer",
            Role::LimitedGuest => "limitedGuest",
        }
    }

    /// What the role may do.
    pub fn perms(self) -> PermSet {
        use Perm::*;
        match self {
            Role::ProjectAdmin => PermSet::project_all(),
            Role::Maintainer => PermSet::of(&[
                Pull,
                Push,
                DeleteArtifact,
                CreateTag,
                DeleteTag,
                Scan,
                Read,
                ReadMembers,
                ReadRobots,
                ReadLogs,
                ReadWebhooks,
            ]),
            Role::Developer => PermSet::of(&[Pull, Push, CreateTag, Read, ReadMembers, ReadLogs]),
            Role::Guest => PermSet::of(&[Pull, Read, ReadMembers, ReadLogs]),
            Role::LimitedGuest => PermSet::of(&[Pull, Read]),
        }
    }
}

/// What everybody, anonymous users included, may do in a public project.
pub fn public_perms() -> PermSet {
    PermSet::of(&[Perm::Pull, Perm::Read])
}

/// One entry of a robot's access list, in Harbor's JSON form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// `repository`, `artifact`, `tag`, `scan`, `project`.
    pub resource: String,
    /// `pull`, `push`, `delete`, `create`, `read`, `list`, `stop`.
    pub action: String,
    /// `allow` (the default); `deny` is accepted and grants nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
}

/// A robot's permissions in one namespace (project), in Harbor's JSON form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RobotPermission {
    /// Always `project`.
    pub kind: String,
    /// The project name, or `*` for every project (system robots only).
    pub namespace: String,
    /// What the robot may do there.
    pub access: Vec<Access>,
}

/// Why a robot permission list was refused (names the offending field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct AccessError {
    /// The field, e.g. `permissions[0].access[1].action`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// The permission a robot access entry grants, if it is one Berth knows.
pub fn access_perm(resource: &str, action: &str) -> Option<Perm> {
    Some(match (resource, action) {
        ("repository", "pull") => Perm::Pull,
        ("repository", "push") => Perm::Push,
        ("repository", "delete") | ("artifact", "delete") => Perm::DeleteArtifact,
        ("repository", "list" | "read") | ("artifact", "list" | "read") | ("tag", "list") => Perm::Read,
        ("project", "read") => Perm::Read,
        ("tag", "create") => Perm::CreateTag,
        ("tag", "delete") => Perm::DeleteTag,
        ("scan", "create" | "stop" | "read") => Perm::Scan,
        ("notification-policy", "read" | "list") => Perm::ReadWebhooks,
        ("notification-policy", "create" | "update" | "delete") => Perm::ManageWebhooks,
        _ => return None,
    })
}

/// Parse and check a robot's permission list. `project` is `Some(name)` for a project-level
/// robot: it must then name exactly that project. System robots may name any project or `*`.
pub fn parse_permissions(
    value: &serde_json::Value,
    project: Option<&str>,
) -> Result<Vec<RobotPermission>, AccessError> {
    let err = |field: String, message: String| AccessError { field, message };
    let mut perms: Vec<RobotPermission> = serde_json::from_value(value.clone())
        .map_err(|e| err("permissions".into(), format!("expected a list of {{kind, namespace, access}}: {e}")))?;
    if perms.is_empty() {
        return Err(err("permissions".into(), "at least one permission is needed".into()));
    }
    for p in &mut perms {
        for a in &mut p.access {
            a.effect.get_or_insert_with(|| "allow".into());
        }
    }
    for (i, p) in perms.iter().enumerate() {
        if p.kind != "project" {
            return Err(err(
                format!("permissions[{i}].kind"),
                format!("{:?} is not supported; use \"project\"", p.kind),
            ));
        }
        if let Some(proj) = project
            && p.namespace != proj
        {
            return Err(err(
                format!("permissions[{i}].namespace"),
                format!("a robot of project {proj:?} can only have permissions in that project, not {:?}", p.namespace),
            ));
        }
        if p.namespace.is_empty() {
            return Err(err(format!("permissions[{i}].namespace"), "must name a project or be \"*\"".into()));
        }
        if p.access.is_empty() {
            return Err(err(format!("permissions[{i}].access"), "at least one access entry is needed".into()));
        }
        for (j, a) in p.access.iter().enumerate() {
            if access_perm(&a.resource, &a.action).is_none() {
                return Err(err(
                    format!("permissions[{i}].access[{j}]"),
                    format!(
                        "unknown resource/action {}/{}: use repository pull|push|delete|list, artifact delete|read|list, \
                         tag create|delete|list, scan create|stop|read, notification-policy \
                         read|list|create|update|delete or project read",
                        a.resource, a.action
                    ),
                ));
            }
            if let Some(e) = &a.effect
                && e != "allow"
                && e != "deny"
            {
                return Err(err(format!("permissions[{i}].access[{j}].effect"), format!("{e:?}: use allow or deny")));
            }
        }
    }
    Ok(perms)
}

/// What a robot's permissions allow in `project`.
pub fn robot_perms(perms: &[RobotPermission], project: &str) -> PermSet {
    let mut set = PermSet::NONE;
    for p in perms.iter().filter(|p| p.namespace == project || p.namespace == "*") {
        for a in &p.access {
            if a.effect.as_deref() == Some("deny") {
                continue;
            }
            if let Some(perm) = access_perm(&a.resource, &a.action) {
                set.insert(perm);
            }
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn roles_match_harbor() {
        assert!(Role::ProjectAdmin.perms().has(Perm::ManageMembers));
        assert!(!Role::Maintainer.perms().has(Perm::ManageMembers));
        assert!(Role::Maintainer.perms().has(Perm::DeleteArtifact));
        assert!(!Role::Maintainer.perms().has(Perm::ManagePolicy), "a policy Allow grants access");
        assert!(Role::Developer.perms().has(Perm::Push));
        assert!(!Role::Developer.perms().has(Perm::DeleteArtifact));
        assert!(!Role::Guest.perms().has(Perm::Push));
        assert!(Role::Guest.perms().has(Perm::Pull));
        assert!(!Role::LimitedGuest.perms().has(Perm::ReadMembers));
        for r in Role::ALL {
            assert_eq!(Role::from_id(r.id()), Some(r));
        }
        assert_eq!(Role::from_id(9), None);
    }

    #[test]
    fn robot_permissions_are_checked_and_scoped() {
        let v = json!([{"kind": "project", "namespace": "p", "access": [
            {"resource": "repository", "action": "pull"}, {"resource": "tag", "action": "create"}]}]);
        let perms = parse_permissions(&v, Some("p")).unwrap();
        let set = robot_perms(&perms, "p");
        assert!(set.has(Perm::Pull) && set.has(Perm::CreateTag) && !set.has(Perm::Push));
        assert!(robot_perms(&perms, "other").is_empty());

        let e = parse_permissions(&v, Some("q")).unwrap_err();
        assert_eq!(e.field, "permissions[0].namespace");
        let bad =
            json!([{"kind": "project", "namespace": "p", "access": [{"resource": "repository", "action": "fly"}]}]);
        assert_eq!(parse_permissions(&bad, None).unwrap_err().field, "permissions[0].access[0]");
        let all =
            json!([{"kind": "project", "namespace": "*", "access": [{"resource": "repository", "action": "push"}]}]);
        assert!(robot_perms(&parse_permissions(&all, None).unwrap(), "anything").has(Perm::Push));
        assert!(parse_permissions(&json!({}), None).is_err());
        assert!(parse_permissions(&json!([]), None).is_err());
    }
}
