//! `berth project|robot|user …`: admin tasks through the management API of a running Berth.
//!
//! These commands speak HTTP to `--url` (or `BERTH_URL`) with Basic credentials
//! (`--username`/`BERTH_USERNAME`, `--password`/`BERTH_PASSWORD`), exactly as a script using
//! Harbor's API would, so they work against any replica and need no database access.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// Where and as whom to call the API.
#[derive(Args, Debug, Clone)]
pub struct ApiArgs {
    /// Berth's URL.
    #[arg(long, env = "BERTH_URL", default_value = "http://127.0.0.1:5000", global = true)]
    pub url: String,
    /// Username (a system administrator for most commands).
    #[arg(long, env = "BERTH_USERNAME", default_value = "admin", global = true)]
    pub username: String,
    /// Password or CLI secret.
    #[arg(long, env = "BERTH_PASSWORD", hide_env_values = true, global = true)]
    pub password: Option<String>,
    /// Output: text or json.
    #[arg(long, default_value = "text", global = true)]
    pub output: String,
}

/// `berth project …`
#[derive(Subcommand, Debug)]
pub enum ProjectCommand {
    /// Create a project.
    Create {
        /// Its name (the first path component of its repositories).
        name: String,
        /// Anonymous users may pull from it.
        #[arg(long)]
        public: bool,
    },
    /// List the projects you can see.
    List,
}

/// `berth robot …`
#[derive(Subcommand, Debug)]
pub enum RobotCommand {
    /// Create a robot account; its secret is printed once.
    Create {
        /// Short name: the account is `robot$<project>+<name>` (or `robot$<name>` without --project).
        #[arg(long)]
        name: String,
        /// The project of a project-level robot; omit for a system robot.
        #[arg(long)]
        project: Option<String>,
        /// `resource:action`, repeatable (e.g. repository:pull, repository:push, artifact:delete,
        /// tag:create). System robots: `project:resource:action`, project may be `*`.
        #[arg(long = "permission", required = true)]
        permissions: Vec<String>,
        /// Lifetime in days; -1 never expires.
        #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
        duration: i64,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List robot accounts.
    List,
    /// Lift the login locks failed logins put on a robot account (full name, `robot$…`).
    Unlock {
        /// Full name.
        name: String,
    },
}

/// `berth audit …`
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Delete audit entries older than a duration (of some operations only, with --operation).
    Purge {
        /// Entries older than this go, e.g. `30d`, `12h` (`0s`: all).
        #[arg(long = "older-than")]
        older_than: humantime::Duration,
        /// Only entries of this operation (push, pull, create, update, delete, login, scan, stop, purge); repeatable.
        #[arg(long = "operation")]
        operations: Vec<String>,
        /// Only say how many would go.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `berth user …`
#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a local user.
    Create {
        /// Username.
        name: String,
        /// Its password (8–128 characters with upper, lower case and a digit); generated and printed when omitted.
        #[arg(long = "user-password")]
        user_password: Option<String>,
        /// E-mail address.
        #[arg(long, default_value = "")]
        email: String,
        /// Make it a system administrator.
        #[arg(long)]
        admin: bool,
    },
    /// List users.
    List,
    /// Lift the login locks failed logins put on a user (from every address, on every replica).
    Unlock {
        /// Username.
        name: String,
    },
    /// CLI secrets (the password for docker/podman/helm login).
    #[command(name = "cli-secret")]
    CliSecret {
        /// Reset or revoke.
        #[command(subcommand)]
        command: CliSecretCommand,
    },
}

/// `berth user cli-secret …`
#[derive(Subcommand, Debug)]
pub enum CliSecretCommand {
    /// Generate a new CLI secret for a user (printed once; the old one stops working).
    Reset {
        /// Username.
        name: String,
    },
    /// Revoke a user's CLI secret.
    Revoke {
        /// Username.
        name: String,
    },
}

struct Api {
    http: reqwest::Client,
    args: ApiArgs,
}

impl Api {
    fn new(args: &ApiArgs) -> anyhow::Result<Api> {
        if args.password.is_none() {
            bail!("give the password with --password or BERTH_PASSWORD");
        }
        Ok(Api { http: reqwest::Client::new(), args: args.clone() })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}/api/v2.0{path}", self.args.url.trim_end_matches('/'));
        let mut req = self.http.request(method, &url).basic_auth(&self.args.username, self.args.password.as_deref());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.with_context(|| format!("calling {url}"))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let v: Value =
            if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(json!(text)) };
        if status >= 400 {
            let msg = v["errors"][0]["message"].as_str().map(str::to_owned).unwrap_or_else(|| text.clone());
            bail!("{status}: {msg}");
        }
        Ok((status, v))
    }

    fn json(&self) -> bool {
        self.args.output == "json"
    }

    async fn user_id(&self, name: &str) -> anyhow::Result<i64> {
        let (_, list) =
            self.call(reqwest::Method::GET, &format!("/users?username={}&page_size=100", enc(name)), None).await?;
        list.as_array()
            .and_then(|a| a.iter().find(|u| u["username"] == name))
            .and_then(|u| u["user_id"].as_i64())
            .with_context(|| format!("no user named {name:?}"))
    }
}

fn enc(s: &str) -> String {
    berth_auth::oidc::urlencode(s)
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Run `berth project …`.
pub async fn project(args: &ApiArgs, cmd: ProjectCommand) -> anyhow::Result<()> {
    let api = Api::new(args)?;
    match cmd {
        ProjectCommand::Create { name, public } => {
            let body = json!({"project_name": name, "metadata": {"public": public.to_string()}});
            api.call(reqwest::Method::POST, "/projects", Some(body)).await?;
            let (_, p) = api.call(reqwest::Method::GET, &format!("/projects/{}", enc(&name)), None).await?;
            if api.json() {
                print_json(&p)?;
            } else {
                println!(
                    "created project {name} (id {}, {})",
                    p["project_id"],
                    if public { "public" } else { "private" }
                );
            }
        }
        ProjectCommand::List => {
            let (_, list) = api.call(reqwest::Method::GET, "/projects?page_size=100", None).await?;
            if api.json() {
                print_json(&list)?;
            } else {
                println!("{:<6}  {:<32}  {:<8}  REPOSITORIES", "ID", "NAME", "PUBLIC");
                for p in list.as_array().into_iter().flatten() {
                    println!(
                        "{:<6}  {:<32}  {:<8}  {}",
                        p["project_id"],
                        p["name"].as_str().unwrap_or(""),
                        p["metadata"]["public"].as_str().unwrap_or(""),
                        p["repo_count"]
                    );
                }
            }
        }
    }
    Ok(())
}

/// Run `berth robot …`.
pub async fn robot(args: &ApiArgs, cmd: RobotCommand) -> anyhow::Result<()> {
    let api = Api::new(args)?;
    match cmd {
        RobotCommand::Create { name, project, permissions, duration, description } => {
            let mut by_ns: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
            for p in &permissions {
                let parts: Vec<&str> = p.split(':').collect();
                let (ns, resource, action) = match (&project, parts.as_slice()) {
                    (Some(proj), [r, a]) => (proj.clone(), *r, *a),
                    (None, [ns, r, a]) => ((*ns).to_owned(), *r, *a),
                    (Some(_), _) => bail!("--permission {p:?}: use resource:action, e.g. repository:pull"),
                    (None, _) => {
                        bail!("--permission {p:?}: system robots take project:resource:action (project may be *)")
                    }
                };
                by_ns.entry(ns).or_default().push(json!({"resource": resource, "action": action}));
            }
            let perms: Vec<Value> = by_ns
                .into_iter()
                .map(|(ns, access)| json!({"kind": "project", "namespace": ns, "access": access}))
                .collect();
            let body = json!({
                "name": name, "description": description, "duration": duration,
                "level": if project.is_some() { "project" } else { "system" },
                "disable": false, "permissions": perms,
            });
            let (_, r) = api.call(reqwest::Method::POST, "/robots", Some(body)).await?;
            if api.json() {
                print_json(&r)?;
            } else {
                println!("created robot account {} (id {})", r["name"].as_str().unwrap_or(""), r["id"]);
                println!("secret (shown once, store it now): {}", r["secret"].as_str().unwrap_or(""));
            }
        }
        RobotCommand::Unlock { name } => {
            let (_, list) = api.call(reqwest::Method::GET, &format!("/robots?q=name%3D~{}", enc(&name)), None).await?;
            let id = list
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["name"] == name.as_str())
                .and_then(|r| r["id"].as_i64())
                .with_context(|| format!("no robot account named {name}"))?;
            let (_, v) = api.call(reqwest::Method::DELETE, &format!("/robots/{id}/login_locks"), None).await?;
            if api.json() {
                print_json(&v)?;
            } else {
                println!("lifted the login locks of {name}");
            }
        }
        RobotCommand::List => {
            let (_, list) = api.call(reqwest::Method::GET, "/robots?page_size=100", None).await?;
            if api.json() {
                print_json(&list)?;
            } else {
                println!("{:<6}  {:<40}  {:<8}  {:<8}  EXPIRES", "ID", "NAME", "LEVEL", "DISABLED");
                for r in list.as_array().into_iter().flatten() {
                    let exp = r["expires_at"].as_i64().unwrap_or(-1);
                    println!(
                        "{:<6}  {:<40}  {:<8}  {:<8}  {}",
                        r["id"],
                        r["name"].as_str().unwrap_or(""),
                        r["level"].as_str().unwrap_or(""),
                        r["disable"],
                        if exp < 0 { "never".to_owned() } else { berth_auth::rfc3339(exp * 1000) }
                    );
                }
            }
        }
    }
    Ok(())
}

/// Run `berth user …`.
pub async fn user(args: &ApiArgs, cmd: UserCommand) -> anyhow::Result<()> {
    let api = Api::new(args)?;
    match cmd {
        UserCommand::Create { name, user_password, email, admin } => {
            let generated = user_password.is_none();
            // Generated passwords meet the strength rule: a secret plus a fixed upper/lower/digit tail.
            let pw = user_password.unwrap_or_else(|| format!("{}Aa1", berth_auth::secret::new_secret()));
            let body = json!({"username": name, "password": pw, "email": email, "realname": name});
            api.call(reqwest::Method::POST, "/users", Some(body)).await?;
            let id = api.user_id(&name).await?;
            if admin {
                api.call(reqwest::Method::PUT, &format!("/users/{id}/sysadmin"), Some(json!({"sysadmin_flag": true})))
                    .await?;
            }
            if api.json() {
                let mut v = json!({"user_id": id, "username": name, "sysadmin_flag": admin});
                if generated {
                    v["password"] = json!(pw);
                }
                print_json(&v)?;
            } else {
                println!("created user {name} (id {id}){}", if admin { ", a system administrator" } else { "" });
                if generated {
                    println!("password (shown once): {pw}");
                }
            }
        }
        UserCommand::List => {
            let (_, list) = api.call(reqwest::Method::GET, "/users?page_size=100", None).await?;
            if api.json() {
                print_json(&list)?;
            } else {
                println!("{:<6}  {:<32}  ADMIN", "ID", "USERNAME");
                for u in list.as_array().into_iter().flatten() {
                    println!(
                        "{:<6}  {:<32}  {}",
                        u["user_id"],
                        u["username"].as_str().unwrap_or(""),
                        u["sysadmin_flag"]
                    );
                }
            }
        }
        UserCommand::Unlock { name } => {
            let id = api.user_id(&name).await?;
            let (_, v) = api.call(reqwest::Method::DELETE, &format!("/users/{id}/login_locks"), None).await?;
            if api.json() {
                print_json(&v)?;
            } else {
                println!("lifted the login locks of {name}");
            }
        }
        UserCommand::CliSecret { command: CliSecretCommand::Reset { name } } => {
            let id = api.user_id(&name).await?;
            let (_, v) = api.call(reqwest::Method::PUT, &format!("/users/{id}/cli_secret"), None).await?;
            let secret = v["secret"].as_str().context("the server returned no secret")?;
            if api.json() {
                print_json(&json!({"user_id": id, "username": name, "secret": secret}))?;
            } else {
                println!("new CLI secret for {name} (shown once; use it as the password of docker login): {secret}");
            }
        }
        UserCommand::CliSecret { command: CliSecretCommand::Revoke { name } } => {
            let id = api.user_id(&name).await?;
            api.call(reqwest::Method::DELETE, &format!("/users/{id}/cli_secret"), None).await?;
            if api.json() {
                print_json(&json!({"user_id": id, "username": name, "revoked": true}))?;
            } else {
                println!("revoked the CLI secret of {name}");
            }
        }
    }
    Ok(())
}

/// `berth audit …`
pub async fn audit(args: &ApiArgs, cmd: AuditCommand) -> anyhow::Result<()> {
    let api = Api::new(args)?;
    match cmd {
        AuditCommand::Purge { older_than, operations, dry_run } => {
            let secs = std::time::Duration::from(older_than).as_secs();
            if secs % 3600 != 0 {
                anyhow::bail!(
                    "--older-than counts whole hours (as Harbor's audit_retention_hour): {older_than} is not"
                );
            }
            let mut parameters = json!({"audit_retention_hour": secs / 3600, "dry_run": dry_run});
            if !operations.is_empty() {
                parameters["include_operations"] = json!(operations.join(","));
            }
            let body = json!({"schedule": {"type": "Manual"}, "parameters": parameters});
            let (_, v) = api.call(reqwest::Method::POST, "/system/purgeaudit/schedule", Some(body)).await?;
            if api.json() {
                print_json(&v)?;
            } else if dry_run {
                println!("would purge {} audit entries older than {older_than}", v["purged"]);
            } else {
                println!("purged {} audit entries older than {older_than}", v["purged"]);
            }
        }
    }
    Ok(())
}
