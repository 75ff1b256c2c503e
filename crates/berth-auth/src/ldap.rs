//! LDAP and Active Directory sign-in (Harbor's `ldap_auth`): Berth binds with a service
//! account, searches the user by `uid_attribute` under `base_dn` with `user_filter`, and binds
//! as the user's DN with the password given. Groups are the user's `memberOf` values and the
//! groups under `group_base_dn` whose `group_membership_attribute` names the user; a member of
//! `group_admin_dn` is a system administrator. `ldaps://` and StartTLS verify the server
//! against the system roots and `ca_file`.
//!
//! A user found in LDAP is a Berth user (created at first sign-in or by
//! `/ldap/users/import`) whose `oidc_subject` is `ldap:<dn>`: project membership by user or
//! by group DN works as for local and OIDC users, and the user may have a CLI secret.

use std::sync::Arc;
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, ldap_escape};

/// `[ldap]`, as the server uses it.
#[derive(Debug, Clone)]
pub struct LdapConfig {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS.
    pub starttls: bool,
    /// PEM CA certificates to trust beyond the system's.
    pub ca_pem: Option<Vec<u8>>,
    /// The service account's DN (empty: anonymous search).
    pub bind_dn: String,
    /// Its password.
    pub bind_password: String,
    /// Where users are searched.
    pub base_dn: String,
    /// Which entries are users (`(objectClass=person)`).
    pub user_filter: String,
    /// The attribute holding the username (`uid`; `sAMAccountName` on Active Directory).
    pub uid_attribute: String,
    /// Where groups are searched (none: only `memberOf`).
    pub group_base_dn: Option<String>,
    /// Which entries are groups (`(objectClass=groupOfNames)`).
    pub group_filter: String,
    /// The group attribute naming members by DN (`member`).
    pub group_membership_attribute: String,
    /// The group attribute with a group's name (`cn`).
    pub group_name_attribute: String,
    /// Members of this group DN are system administrators.
    pub group_admin_dn: Option<String>,
    /// Longest a connection or an operation may take.
    pub timeout: Duration,
}

/// A user as the directory describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapUser {
    /// The entry's DN.
    pub dn: String,
    /// The value of `uid_attribute`.
    pub username: String,
    /// `mail`.
    pub email: String,
    /// `displayName`, else `cn`.
    pub realname: String,
    /// Group DNs.
    pub groups: Vec<String>,
}

/// A group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapGroup {
    /// Its DN.
    pub dn: String,
    /// Its name (`group_name_attribute`).
    pub name: String,
}

/// Why LDAP failed (not: the password was wrong).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LdapError(pub String);

fn err(what: &str, e: impl std::fmt::Display) -> LdapError {
    LdapError(format!("{what}: {e}"))
}

/// The LDAP client of the server's `[ldap]` settings.
#[derive(Debug, Clone)]
pub struct LdapClient {
    cfg: LdapConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl LdapClient {
    /// A client for `cfg` (the CA file is read here: a bad one fails at start).
    pub fn new(cfg: LdapConfig) -> Result<LdapClient, String> {
        let tls = if cfg.url.starts_with("ldaps://") || cfg.starttls {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            if let Some(pem) = &cfg.ca_pem {
                use rustls::pki_types::pem::PemObject;
                let mut n = 0;
                for c in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
                    let c = c.map_err(|e| format!("ldap.ca_file: not PEM certificates ({e})"))?;
                    roots.add(c).map_err(|e| format!("ldap.ca_file: {e}"))?;
                    n += 1;
                }
                if n == 0 {
                    return Err("ldap.ca_file: no certificate in it".into());
                }
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(Arc::new(config))
        } else {
            None
        };
        if !cfg.url.starts_with("ldap://") && !cfg.url.starts_with("ldaps://") {
            return Err(format!("ldap.url {:?}: use ldap://host:389 or ldaps://host:636", cfg.url));
        }
        Ok(LdapClient { cfg, tls })
    }

    /// The settings.
    pub fn config(&self) -> &LdapConfig {
        &self.cfg
    }

    async fn connect(&self) -> Result<Ldap, LdapError> {
        let mut settings = LdapConnSettings::new().set_conn_timeout(self.cfg.timeout).set_starttls(self.cfg.starttls);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.cfg.url)
            .await
            .map_err(|e| err(&format!("the LDAP server {} cannot be reached", self.cfg.url), e))?;
        ldap3::drive!(conn);
        ldap.with_timeout(self.cfg.timeout);
        Ok(ldap)
    }

    /// Connect and bind as the service account.
    async fn service(&self) -> Result<Ldap, LdapError> {
        let mut ldap = self.connect().await?;
        if !self.cfg.bind_dn.is_empty() {
            ldap.simple_bind(&self.cfg.bind_dn, &self.cfg.bind_password)
                .await
                .and_then(|r| r.success())
                .map_err(|e| err(&format!("the LDAP service account {} cannot bind", self.cfg.bind_dn), e))?;
        }
        Ok(ldap)
    }

    /// Can the server be reached, and the service account bind? (Harbor's `/ldap/ping`.)
    pub async fn ping(&self) -> Result<(), LdapError> {
        let mut ldap = self.service().await?;
        let _ = ldap.unbind().await;
        Ok(())
    }

    fn user_of(&self, e: SearchEntry) -> LdapUser {
        let first = |k: &str| e.attrs.get(k).and_then(|v| v.first()).cloned().unwrap_or_default();
        let realname = Some(first("displayName")).filter(|s| !s.is_empty()).unwrap_or_else(|| first("cn"));
        LdapUser {
            username: first(&self.cfg.uid_attribute),
            email: first("mail"),
            realname,
            // Group DNs lowercased: project members name them as typed.
            groups: e.attrs.get("memberOf").into_iter().flatten().map(|g| g.to_lowercase()).collect(),
            dn: e.dn,
        }
    }

    async fn find_users(&self, ldap: &mut Ldap, filter: &str, limit: usize) -> Result<Vec<LdapUser>, LdapError> {
        let attrs = [self.cfg.uid_attribute.as_str(), "mail", "cn", "displayName", "memberOf"];
        let (entries, _) = ldap
            .search(&self.cfg.base_dn, Scope::Subtree, filter, attrs.to_vec())
            .await
            .and_then(|r| r.success())
            .map_err(|e| err("searching users in LDAP", e))?;
        Ok(entries.into_iter().take(limit).map(|e| self.user_of(SearchEntry::construct(e))).collect())
    }

    /// The groups under `group_base_dn` that list `dn` as a member.
    async fn groups_of(&self, ldap: &mut Ldap, dn: &str) -> Result<Vec<String>, LdapError> {
        let Some(base) = &self.cfg.group_base_dn else { return Ok(Vec::new()) };
        let filter =
            format!("(&{}({}={}))", self.cfg.group_filter, self.cfg.group_membership_attribute, ldap_escape(dn));
        let (entries, _) = ldap
            .search(base, Scope::Subtree, &filter, vec!["1.1"])
            .await
            .and_then(|r| r.success())
            .map_err(|e| err("searching groups in LDAP", e))?;
        Ok(entries.into_iter().map(|e| SearchEntry::construct(e).dn.to_lowercase()).collect())
    }

    /// The user `username` if `password` is theirs; `None` if there is no such user (or more
    /// than one), or the password is wrong. An empty password never binds (LDAP would treat it
    /// as an anonymous bind and succeed).
    pub async fn authenticate(&self, username: &str, password: &str) -> Result<Option<LdapUser>, LdapError> {
        if password.is_empty() || username.is_empty() {
            return Ok(None);
        }
        let mut ldap = self.service().await?;
        let filter = format!("(&{}({}={}))", self.cfg.user_filter, self.cfg.uid_attribute, ldap_escape(username));
        let mut found = self.find_users(&mut ldap, &filter, 2).await?;
        if found.len() != 1 {
            let _ = ldap.unbind().await;
            return Ok(None);
        }
        let mut user = found.remove(0);
        // The user's own bind, on a connection of its own.
        let mut own = self.connect().await?;
        let bound = own.simple_bind(&user.dn, password).await.map_err(|e| err("binding to LDAP", e))?;
        let _ = own.unbind().await;
        match bound.rc {
            0 => {}
            // invalidCredentials; and what AD answers for disabled or expired accounts.
            49 | 53 => {
                let _ = ldap.unbind().await;
                return Ok(None);
            }
            rc => return Err(LdapError(format!("LDAP refused the bind of {} ({rc}: {})", user.dn, bound.text))),
        }
        for g in self.groups_of(&mut ldap, &user.dn).await? {
            if !user.groups.contains(&g) {
                user.groups.push(g);
            }
        }
        let _ = ldap.unbind().await;
        Ok(Some(user))
    }

    /// Is `user` a system administrator by `group_admin_dn`?
    pub fn is_admin(&self, user: &LdapUser) -> bool {
        self.cfg.group_admin_dn.as_deref().is_some_and(|a| user.groups.iter().any(|g| g.eq_ignore_ascii_case(a)))
    }

    /// Users whose username contains `part` (at most `limit`; Harbor's `/ldap/users/search`).
    pub async fn search_users(&self, part: &str, limit: usize) -> Result<Vec<LdapUser>, LdapError> {
        let mut ldap = self.service().await?;
        let value = if part.is_empty() { "*".to_owned() } else { format!("*{}*", ldap_escape(part)) };
        let filter = format!("(&{}({}={value}))", self.cfg.user_filter, self.cfg.uid_attribute);
        let users = self.find_users(&mut ldap, &filter, limit).await?;
        let _ = ldap.unbind().await;
        Ok(users)
    }

    /// The user named exactly `username`, if there is one.
    pub async fn user(&self, username: &str) -> Result<Option<LdapUser>, LdapError> {
        let mut ldap = self.service().await?;
        let filter = format!("(&{}({}={}))", self.cfg.user_filter, self.cfg.uid_attribute, ldap_escape(username));
        let mut found = self.find_users(&mut ldap, &filter, 2).await?;
        if found.len() == 1 {
            let dn = found[0].dn.clone();
            for g in self.groups_of(&mut ldap, &dn).await? {
                found[0].groups.push(g);
            }
        }
        let _ = ldap.unbind().await;
        Ok(if found.len() == 1 { found.pop() } else { None })
    }

    /// Groups whose name contains `name`, or the group `dn` (Harbor's `/ldap/groups/search`).
    pub async fn search_groups(&self, name: Option<&str>, dn: Option<&str>) -> Result<Vec<LdapGroup>, LdapError> {
        let mut ldap = self.service().await?;
        let attr = self.cfg.group_name_attribute.clone();
        let (base, scope, filter) = match (dn, &self.cfg.group_base_dn) {
            (Some(dn), _) => (dn.to_owned(), Scope::Base, self.cfg.group_filter.clone()),
            (None, Some(base)) => {
                let v = name.filter(|n| !n.is_empty()).map_or("*".to_owned(), |n| format!("*{}*", ldap_escape(n)));
                (base.clone(), Scope::Subtree, format!("(&{}({attr}={v}))", self.cfg.group_filter))
            }
            (None, None) => return Err(LdapError("set ldap.group_base_dn to search groups".into())),
        };
        let r =
            ldap.search(&base, scope, &filter, vec![attr.as_str()]).await.map_err(|e| err("searching groups", e))?;
        let entries = match r.success() {
            Ok((e, _)) => e,
            Err(ldap3::LdapError::LdapResult { result }) if result.rc == 32 => Vec::new(), // noSuchObject
            Err(e) => return Err(err("searching groups", e)),
        };
        let _ = ldap.unbind().await;
        Ok(entries
            .into_iter()
            .take(100)
            .map(|e| {
                let e = SearchEntry::construct(e);
                LdapGroup { name: e.attrs.get(&attr).and_then(|v| v.first()).cloned().unwrap_or_default(), dn: e.dn }
            })
            .collect())
    }
}
