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
    /// Output: table (or text), json or yaml.
    #[arg(long, default_value = "table", global = true)]
    pub output: String,
    /// A PEM file of CA certificates to trust for --url (a private CA).
    #[arg(long, env = "BERTH_CA_FILE", global = true)]
    pub ca_file: Option<std::path::PathBuf>,
}

/// What `--output` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Aligned tables and sentences.
    Table,
    /// JSON, as the API answers.
    Json,
    /// The same as YAML.
    Yaml,
    /// Comma-separated values (`berth usage` only).
    Csv,
}

impl Output {
    /// Parse `--output`; an unknown format is an error.
    pub fn parse(s: &str) -> anyhow::Result<Output> {
        match s {
            "table" | "text" => Ok(Output::Table),
            "json" => Ok(Output::Json),
            "yaml" | "yml" => Ok(Output::Yaml),
            "csv" => Ok(Output::Csv),
            other => bail!("--output {other:?}: use table, json or yaml"),
        }
    }

    /// Print `v` as JSON or YAML; `false` for tables (the caller prints those).
    pub fn structured(self, v: &Value) -> anyhow::Result<bool> {
        match self {
            Output::Table => Ok(false),
            Output::Json => {
                println!("{}", serde_json::to_string_pretty(v)?);
                Ok(true)
            }
            Output::Yaml => {
                print!("{}", serde_norway::to_string(v)?);
                Ok(true)
            }
            Output::Csv => bail!("--output csv is for `berth usage`; use table, json or yaml"),
        }
    }
}

/// An aligned table (comfy-table, no borders) of `header` and `rows`.
pub fn table(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING).set_content_arrangement(comfy_table::ContentArrangement::Disabled);
    t.set_header(header.iter().map(comfy_table::Cell::new));
    for r in rows {
        t.add_row(r);
    }
    // No padding before the first column, so lines start with their first cell.
    t.lines().map(|l| l.strip_prefix(' ').unwrap_or(&l).trim_end().to_owned()).collect::<Vec<_>>().join("\n")
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
    /// Show a project: its settings, quota and members' counts.
    Show {
        /// Its name.
        name: String,
    },
    /// Change a project's settings: `--public true|false`, `--set KEY=VALUE` with Harbor's
    /// metadata keys (auto_scan, prevent_vul, severity, scan_filters, auto_sbom_generation, …).
    Update {
        /// Its name.
        name: String,
        /// Anonymous users may pull from it.
        #[arg(long)]
        public: Option<bool>,
        /// A setting, repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Delete a project (it must hold no repositories).
    Delete {
        /// Its name.
        name: String,
    },
    /// A project's members: list, add, change role, remove.
    Member {
        /// What to do.
        #[command(subcommand)]
        command: MemberCommand,
    },
}

/// `berth project member …`
#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// List the members of a project.
    List {
        /// The project.
        project: String,
    },
    /// Add a user (--user) or an identity-provider group (--group) with a role.
    Add {
        /// The project.
        project: String,
        /// A username.
        #[arg(long, conflicts_with = "group", required_unless_present = "group")]
        user: Option<String>,
        /// A group name.
        #[arg(long)]
        group: Option<String>,
        /// project-admin, maintainer, developer, guest or limited-guest.
        #[arg(long)]
        role: String,
    },
    /// Change a member's role.
    Role {
        /// The project.
        project: String,
        /// The member's user or group name.
        name: String,
        /// project-admin, maintainer, developer, guest or limited-guest.
        role: String,
    },
    /// Remove a member.
    Remove {
        /// The project.
        project: String,
        /// The member's user or group name.
        name: String,
    },
}

/// A role's id from its name (or number).
fn role_id(role: &str) -> anyhow::Result<i64> {
    Ok(match role.to_ascii_lowercase().replace('_', "-").as_str() {
        "1" | "project-admin" | "projectadmin" | "admin" => 1,
        "2" | "developer" => 2,
        "3" | "guest" => 3,
        "4" | "maintainer" => 4,
        "5" | "limited-guest" | "limitedguest" => 5,
        other => bail!("role {other:?}: use project-admin, maintainer, developer, guest or limited-guest"),
    })
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
    /// Disable a robot account (full name, `robot$…`): its logins are refused.
    Disable {
        /// Full name.
        name: String,
    },
    /// Enable a disabled robot account.
    Enable {
        /// Full name.
        name: String,
    },
    /// Give a robot account a new secret (generated, printed once).
    Refresh {
        /// Full name.
        name: String,
    },
    /// Delete a robot account.
    Delete {
        /// Full name.
        name: String,
    },
    /// Lift the login locks failed logins put on a robot account (full name, `robot$…`).
    Unlock {
        /// Full name.
        name: String,
    },
    /// The identity tokens a robot accepts instead of its secret (workload identity
    /// federation: GitHub Actions, GitLab CI, Kubernetes service accounts). With --issuer,
    /// adds a trust rule; with --clear, removes them all; else shows them.
    Trust {
        /// Full name.
        name: String,
        /// The issuer (`iss`), e.g. https://token.actions.githubusercontent.com.
        #[arg(long, requires_all = ["audience", "subject"])]
        issuer: Option<String>,
        /// A value the token's `aud` must hold.
        #[arg(long)]
        audience: Option<String>,
        /// The `sub` the token must have, `*` patterns allowed (e.g. 'repo:org/app:ref:refs/heads/main').
        #[arg(long)]
        subject: Option<String>,
        /// Another claim the token must match, `NAME=PATTERN` (repeatable).
        #[arg(long = "claim")]
        claims: Vec<String>,
        /// Where the issuer's keys are, when it publishes no OIDC discovery.
        #[arg(long)]
        jwks_url: Option<String>,
        /// Remove every rule.
        #[arg(long, conflicts_with = "issuer")]
        clear: bool,
    },
}

/// `berth repo …`
#[derive(Subcommand, Debug)]
pub enum RepoCommand {
    /// List a project's repositories.
    List {
        /// The project.
        project: String,
    },
    /// Delete a repository and everything in it (`project/name`).
    Delete {
        /// Full name, e.g. library/app.
        repository: String,
    },
}

/// `berth artifact …`
#[derive(Subcommand, Debug)]
pub enum ArtifactCommand {
    /// List a repository's artifacts (`project/name`), with their tags and scan results.
    List {
        /// Full name, e.g. library/app.
        repository: String,
    },
    /// Show one artifact (by tag or digest) with its scan summary.
    Show {
        /// Full name, e.g. library/app.
        repository: String,
        /// A tag or digest.
        reference: String,
    },
    /// Delete an artifact (by tag or digest) with its tags.
    Delete {
        /// Full name.
        repository: String,
        /// A tag or digest.
        reference: String,
    },
    /// Add a tag to an artifact.
    Tag {
        /// Full name.
        repository: String,
        /// The artifact: a tag or digest.
        reference: String,
        /// The new tag.
        tag: String,
    },
    /// Remove a tag (the artifact stays).
    Untag {
        /// Full name.
        repository: String,
        /// The tag.
        tag: String,
    },
}

/// `berth scan …`
#[derive(Subcommand, Debug)]
pub enum ScanCommand {
    /// Scan an artifact now (with --wait, until the report is there).
    Start {
        /// Full name, e.g. library/app.
        repository: String,
        /// A tag or digest.
        reference: String,
        /// Wait for the report.
        #[arg(long)]
        wait: bool,
    },
    /// An artifact's findings.
    Report {
        /// Full name.
        repository: String,
        /// A tag or digest.
        reference: String,
        /// Only findings with a fixed version.
        #[arg(long)]
        fixable: bool,
    },
    /// Scan every artifact (with --wait, a progress bar until all are done).
    All {
        /// Wait for every scan.
        #[arg(long)]
        wait: bool,
    },
}

/// `/projects/{p}/repositories/{r}` of a full repository name (Harbor encodes the `/` of
/// nested names twice).
fn repo_path(repository: &str) -> anyhow::Result<String> {
    let (project, rest) = repository
        .split_once('/')
        .with_context(|| format!("{repository:?}: give the full name, project/repository"))?;
    Ok(format!("/projects/{}/repositories/{}", enc(project), enc(&rest.replace('/', "%2F"))))
}

/// Run `berth repo …`.
pub async fn repo(args: &ApiArgs, cmd: RepoCommand) -> anyhow::Result<()> {
    let api = Api::new(args)?;
    match cmd {
        RepoCommand::List { project } => {
            let list = api.list_all(&format!("/projects/{}/repositories", enc(&project))).await?;
            if !api.structured(&list)? {
                let rows = list.as_array().into_iter().flatten().map(|r| {
                    vec![cell(&r["name"]), cell(&r["artifact_count"]), cell(&r["pull_count"]), cell(&r["update_time"])]
                });
                println!("{}", table(&["REPOSITORY", "ARTIFACTS", "PULLS", "UPDATED"], rows));
            }
        }
        RepoCommand::Delete { repository } => {
            api.call(reqwest::Method::DELETE, &repo_path(&repository)?, None).await?;
            if !api.structured(&json!({"deleted": repository}))? {
                println!("deleted repository {repository}");
            }
        }
    }
    Ok(())
}

/// The scan summary of an artifact JSON, in words: `2 (1 fixable), highest High`.
fn scan_words(a: &Value) -> String {
    let Some(o) = a["scan_overview"].as_object().and_then(|m| m.values().next()) else { return "not scanned".into() };
    match o["scan_status"].as_str() {
        Some("Success") => {
            let total = o["summary"]["total"].as_i64().unwrap_or(0);
            if total == 0 && o["not_applicable"].is_string() {
                "not applicable".into()
            } else if total == 0 {
                "no findings".into()
            } else {
                format!(
                    "{total} ({} fixable), highest {}",
                    o["summary"]["fixable"].as_i64().unwrap_or(0),
                    cell(&o["severity"])
                )
            }
        }
        Some(other) => other.to_lowercase(),
        None => "not scanned".into(),
    }
}

/// Run `berth artifact …`.
pub async fn artifact(args: &ApiArgs, cmd: ArtifactCommand) -> anyhow::Result<()> {
    let api = Api::new(args)?;
    let art = |repository: &str, reference: &str| -> anyhow::Result<String> {
        Ok(format!("{}/artifacts/{}", repo_path(repository)?, enc(reference)))
    };
    match cmd {
        ArtifactCommand::List { repository } => {
            let list = api.list_all(&format!("{}/artifacts?with_scan_overview=true", repo_path(&repository)?)).await?;
            if !api.structured(&list)? {
                let rows = list.as_array().into_iter().flatten().map(|a| {
                    let tags: Vec<String> =
                        a["tags"].as_array().into_iter().flatten().map(|t| cell(&t["name"])).collect();
                    let digest = cell(&a["digest"]);
                    vec![
                        digest.get(..19).unwrap_or(&digest).to_owned(),
                        tags.join(","),
                        berth_types::human_bytes(a["size"].as_u64().unwrap_or(0)),
                        cell(&a["push_time"]),
                        scan_words(a),
                    ]
                });
                println!("{}", table(&["DIGEST", "TAGS", "SIZE", "PUSHED", "VULNERABILITIES"], rows));
            }
        }
        ArtifactCommand::Show { repository, reference } => {
            let (_, a) = api.call(reqwest::Method::GET, &art(&repository, &reference)?, None).await?;
            if !api.structured(&a)? {
                let tags: Vec<String> = a["tags"].as_array().into_iter().flatten().map(|t| cell(&t["name"])).collect();
                let rows = vec![
                    vec!["digest".to_owned(), cell(&a["digest"])],
                    vec!["type".to_owned(), cell(&a["type"])],
                    vec!["media type".to_owned(), cell(&a["manifest_media_type"])],
                    vec!["tags".to_owned(), tags.join(", ")],
                    vec!["size".to_owned(), berth_types::human_bytes(a["size"].as_u64().unwrap_or(0))],
                    vec!["pushed".to_owned(), cell(&a["push_time"])],
                    vec!["pulled".to_owned(), format!("{} ({} pulls)", cell(&a["pull_time"]), cell(&a["pull_count"]))],
                    vec!["vulnerabilities".to_owned(), scan_words(&a)],
                    vec!["accessories".to_owned(), a["accessories"].as_array().map_or(0, Vec::len).to_string()],
                ];
                println!("{}", table(&["ARTIFACT", &format!("{repository}:{reference}")], rows));
            }
        }
        ArtifactCommand::Delete { repository, reference } => {
            api.call(reqwest::Method::DELETE, &art(&repository, &reference)?, None).await?;
            if !api.structured(&json!({"deleted": format!("{repository}:{reference}")}))? {
                println!("deleted {repository}:{reference}");
            }
        }
        ArtifactCommand::Tag { repository, reference, tag } => {
            let path = format!("{}/tags", art(&repository, &reference)?);
            api.call(reqwest::Method::POST, &path, Some(json!({ "name": tag }))).await?;
            if !api.structured(&json!({"tagged": format!("{repository}:{tag}")}))? {
                println!("tagged {repository}:{reference} as {tag}");
            }
        }
        ArtifactCommand::Untag { repository, tag } => {
            let path = format!("{}/tags/{}", art(&repository, &tag)?, enc(&tag));
            api.call(reqwest::Method::DELETE, &path, None).await?;
            if !api.structured(&json!({"untagged": format!("{repository}:{tag}")}))? {
                println!("removed tag {repository}:{tag}");
            }
        }
    }
    Ok(())
}

/// Run `berth scan …`.
pub async fn scan(args: &ApiArgs, cmd: ScanCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let api = Api::new(args)?;
    match cmd {
        ScanCommand::Start { repository, reference, wait } => {
            let path = format!("{}/artifacts/{}", repo_path(&repository)?, enc(&reference));
            api.call(Method::POST, &format!("{path}/scan"), None).await?;
            if !wait {
                if !api.structured(&json!({"requested": format!("{repository}:{reference}")}))? {
                    println!("scan of {repository}:{reference} requested (berth scan report shows it when done)");
                }
                return Ok(());
            }
            let a = wait_for(&api, &format!("{path}?with_scan_overview=true"), |a| {
                a["scan_overview"]
                    .as_object()
                    .and_then(|m| m.values().next())
                    .is_some_and(|o| matches!(o["scan_status"].as_str(), Some("Success" | "Error")))
            })
            .await?;
            if !api.structured(&a)? {
                println!("{repository}:{reference}: {}", scan_words(&a));
            }
        }
        ScanCommand::Report { repository, reference, fixable } => {
            let q = if fixable { "?fixable=true" } else { "" };
            let path =
                format!("{}/artifacts/{}/additions/vulnerabilities{q}", repo_path(&repository)?, enc(&reference));
            let (_, v) = api.call(Method::GET, &path, None).await?;
            let report = v.as_object().and_then(|m| m.values().next()).cloned().unwrap_or(Value::Null);
            if !api.structured(&report)? {
                let rows = report["vulnerabilities"].as_array().into_iter().flatten().map(|f| {
                    vec![
                        cell(&f["id"]),
                        cell(&f["severity"]),
                        cell(&f["package"]),
                        cell(&f["version"]),
                        cell(&f["fix_version"]),
                        f["vendor_attributes"]["cvss"]["score"].as_f64().map(|x| format!("{x:.1}")).unwrap_or_default(),
                        cell(&f["vendor_attributes"]["severity_source"]),
                        cell(&f["vendor_attributes"]["status"]),
                    ]
                });
                println!(
                    "{}",
                    table(
                        &["VULNERABILITY", "SEVERITY", "PACKAGE", "VERSION", "FIXED IN", "CVSS", "RATED BY", "STATUS"],
                        rows
                    )
                );
                if let Some(why) = report["not_applicable"].as_str() {
                    println!("Not applicable: {why}");
                } else {
                    println!(
                        "{} findings ({} fixable), highest {}",
                        report["summary"]["total"],
                        report["summary"]["fixable"],
                        cell(&report["severity"])
                    );
                }
            }
        }
        ScanCommand::All { wait } => {
            api.call(Method::POST, "/system/scanAll/schedule", Some(json!({"schedule": {"type": "Manual"}}))).await?;
            if !wait {
                if !api.structured(&json!({"requested": "all"}))? {
                    println!("scans of every artifact requested (berth scan all --wait follows them)");
                }
                return Ok(());
            }
            // A progress bar on a terminal (indicatif draws nothing when stderr is not one).
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} scans done {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let done = loop {
                let (_, m) = api.call(Method::GET, "/system/scanAll/metrics", None).await?;
                bar.set_length(m["total"].as_u64().unwrap_or(0));
                bar.set_position(m["completed"].as_u64().unwrap_or(0));
                if m["ongoing"] != true {
                    break m;
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            };
            bar.finish_and_clear();
            if !api.structured(&done)? {
                let errors = done["metrics"]["Error"].as_i64().unwrap_or(0);
                println!("{} artifacts scanned, {errors} failed", done["completed"]);
            }
        }
    }
    Ok(())
}

/// `berth allowlist …`
#[derive(Subcommand, Debug)]
pub enum AllowlistCommand {
    /// Show the system's CVE allowlist, or a project's (--project).
    Show {
        /// A project (default: the system's list).
        #[arg(long)]
        project: Option<String>,
    },
    /// Replace the system's CVE allowlist, or a project's (--project: the project then uses
    /// its own list instead of the system's).
    Set {
        /// Vulnerability ids (none: an empty list).
        ids: Vec<String>,
        /// A project (default: the system's list).
        #[arg(long)]
        project: Option<String>,
        /// Expiry date, e.g. 2027-06-30 (default: never).
        #[arg(long)]
        expires: Option<String>,
    },
}

/// Run `berth allowlist …`.
pub async fn allowlist(args: &ApiArgs, cmd: AllowlistCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let api = Api::new(args)?;
    let show = |v: &Value| -> anyhow::Result<()> {
        if !api.structured(v)? {
            let ids: Vec<String> = v["items"].as_array().into_iter().flatten().map(|i| cell(&i["cve_id"])).collect();
            let until =
                v["expires_at"].as_i64().map(|e| berth_auth::rfc3339(e * 1000)).unwrap_or_else(|| "never".into());
            if ids.is_empty() {
                println!("the allowlist is empty");
            } else {
                println!("{} (expires: {until})", ids.join(", "));
            }
        }
        Ok(())
    };
    match cmd {
        AllowlistCommand::Show { project } => {
            let v = match &project {
                Some(p) => {
                    api.call(Method::GET, &format!("/projects/{}", enc(p)), None).await?.1["cve_allowlist"].clone()
                }
                None => api.call(Method::GET, "/system/CVEAllowlist", None).await?.1,
            };
            show(&v)?;
        }
        AllowlistCommand::Set { ids, project, expires } => {
            let expires_at = match expires.as_deref() {
                None | Some("") | Some("never") => Value::Null,
                Some(d) => {
                    let days = berth_registry::day_of(d)
                        .with_context(|| format!("--expires {d:?}: use a date such as 2027-06-30"))?;
                    json!(days * 86_400)
                }
            };
            let items: Vec<Value> = ids.iter().map(|i| json!({ "cve_id": i.trim() })).collect();
            let list = json!({"items": items, "expires_at": expires_at});
            match &project {
                Some(p) => {
                    let body = json!({"cve_allowlist": list, "metadata": {"reuse_sys_cve_allowlist": "false"}});
                    api.call(Method::PUT, &format!("/projects/{}", enc(p)), Some(body)).await?;
                    let v =
                        api.call(Method::GET, &format!("/projects/{}", enc(p)), None).await?.1["cve_allowlist"].clone();
                    show(&v)?;
                }
                None => {
                    api.call(Method::PUT, "/system/CVEAllowlist", Some(list)).await?;
                    show(&api.call(Method::GET, "/system/CVEAllowlist", None).await?.1)?;
                }
            }
        }
    }
    Ok(())
}

/// `berth export …`
#[derive(Subcommand, Debug)]
pub enum ExportCommand {
    /// Export the findings of projects as a CSV (a job on the server), and save it.
    Cve {
        /// A project, repeatable.
        #[arg(long = "project", required = true)]
        projects: Vec<String>,
        /// Repository patterns, comma-separated (e.g. `app*,tools/**`).
        #[arg(long, default_value = "")]
        repositories: String,
        /// Tag patterns, comma-separated.
        #[arg(long, default_value = "")]
        tags: String,
        /// Only these vulnerability ids, comma-separated.
        #[arg(long, default_value = "")]
        cves: String,
        /// Where to write the CSV (`-`: standard output).
        #[arg(long, short = 'o', default_value = "-")]
        out: String,
    },
}

/// A spinner with the elapsed time on a terminal (nothing when stderr is not one).
pub fn spinner(what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// Run `berth export …`.
pub async fn export(args: &ApiArgs, cmd: ExportCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let api = Api::new(args)?;
    let ExportCommand::Cve { projects, repositories, tags, cves, out } = cmd;
    let mut ids = Vec::new();
    for p in &projects {
        let (_, v) = api.call(Method::GET, &format!("/projects/{}", enc(p)), None).await?;
        ids.push(v["project_id"].as_i64().with_context(|| format!("project {p:?} has no id"))?);
    }
    let body = json!({"job_name": "berth export cve", "projects": ids, "repositories": repositories,
        "tags": tags, "cveIds": cves});
    let (_, v) = api.call(Method::POST, "/export/cve", Some(body)).await?;
    let id = v["id"].as_i64().context("the server did not say which export it started")?;
    let bar = spinner(&format!("exporting the findings of {}", projects.join(", ")));
    let done = wait_for(&api, &format!("/export/cve/execution/{id}"), |e| e["status"] != "Running").await;
    bar.finish_and_clear();
    let done = done?;
    if done["status"] != "Success" {
        bail!("the export failed: {}", cell(&done["status_text"]));
    }
    let url = format!("{}/api/v2.0/export/cve/download/{id}", api.args.url.trim_end_matches('/'));
    let resp = api
        .http
        .get(&url)
        .basic_auth(&api.args.username, api.args.password.as_deref())
        .send()
        .await
        .with_context(|| format!("calling {url}"))?;
    anyhow::ensure!(resp.status().is_success(), "{}: downloading the export failed", resp.status());
    let csv = resp.bytes().await?;
    if out == "-" {
        use std::io::Write;
        std::io::stdout().write_all(&csv)?;
    } else {
        std::fs::write(&out, &csv).with_context(|| format!("writing {out}"))?;
        eprintln!("{} ({}) written to {out}", cell(&done["status_text"]), berth_types::human_bytes(csv.len() as u64));
    }
    Ok(())
}

/// `berth job …` (through the API; `berth jobs list` reads the database directly)
#[derive(Subcommand, Debug)]
pub enum JobCommand {
    /// List jobs, newest first.
    List {
        /// Only jobs in this state: queued, running, succeeded, failed, cancelled.
        #[arg(long)]
        state: Option<String>,
        /// Only jobs of this kind, e.g. scan, gc, replication.
        #[arg(long)]
        kind: Option<String>,
    },
    /// Show one job.
    Show {
        /// Its id.
        id: String,
    },
    /// Stop a queued or running job.
    Stop {
        /// Its id.
        id: String,
    },
    /// Run a failed or stopped job again (a new job).
    Retry {
        /// Its id.
        id: String,
    },
}

/// Run `berth job …`.
pub async fn job(args: &ApiArgs, cmd: JobCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let api = Api::new(args)?;
    match cmd {
        JobCommand::List { state, kind } => {
            let mut q = Vec::new();
            if let Some(s) = state {
                q.push(format!("state={}", enc(&s)));
            }
            if let Some(k) = kind {
                q.push(format!("kind={}", enc(&k)));
            }
            let (_, list) = api.call(Method::GET, &format!("/jobservice/jobs?{}", q.join("&")), None).await?;
            if !api.structured(&list)? {
                let rows = list.as_array().into_iter().flatten().map(|j| {
                    vec![
                        cell(&j["id"]),
                        cell(&j["job_type"]),
                        cell(&j["status"]),
                        format!("{}/{}", cell(&j["attempts"]), cell(&j["max_attempts"])),
                        j["last_error"].as_str().unwrap_or("").to_owned(),
                    ]
                });
                println!("{}", table(&["ID", "KIND", "STATE", "ATTEMPTS", "ERROR"], rows));
            }
        }
        JobCommand::Show { id } => {
            let (_, j) = api.call(Method::GET, &format!("/jobservice/jobs/{}", enc(&id)), None).await?;
            if !api.structured(&j)? {
                let rows = j.as_object().into_iter().flatten().map(|(k, v)| vec![k.clone(), cell(v)]);
                println!("{}", table(&["JOB", &id], rows));
            }
        }
        JobCommand::Stop { id } => {
            let path = format!("/jobservice/jobs/{}", enc(&id));
            api.call(Method::PUT, &path, Some(json!({"action": "stop"}))).await?;
            if !api.structured(&json!({"stopped": id}))? {
                println!("stopped job {id}");
            }
        }
        JobCommand::Retry { id } => {
            let path = format!("/jobservice/jobs/{}", enc(&id));
            let (_, v) = api.call(Method::PUT, &path, Some(json!({"action": "retry"}))).await?;
            if !api.structured(&v)? {
                println!("job {id} runs again as job {}", cell(&v["id"]));
            }
        }
    }
    Ok(())
}

/// `berth audit …`
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// List audit entries, newest first.
    List {
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
        /// Only this operation (push, pull, create, update, delete, login, scan, …).
        #[arg(long)]
        operation: Option<String>,
        /// Only this project's.
        #[arg(long)]
        project: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
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

/// `berth gc …`
#[derive(Subcommand, Debug)]
pub enum GcCommand {
    /// Start a garbage collection (and, with --wait, follow it to the end).
    Run {
        /// Only report what would be freed.
        #[arg(long)]
        dry_run: bool,
        /// Also delete manifests no tag points at (not those an index lists or that refer to a manifest still there).
        #[arg(long)]
        delete_untagged: bool,
        /// Keep what was uploaded or pushed less than this many hours ago (0: collect at once).
        #[arg(long, default_value_t = 2)]
        time_window: u64,
        /// Wait for it to finish and print what it freed.
        #[arg(long)]
        wait: bool,
    },
    /// Show a run (the latest without an id): status and what it freed.
    Status {
        /// Run id.
        id: Option<i64>,
    },
    /// List recent runs.
    History {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Print a run's log.
    Log {
        /// Run id.
        id: i64,
    },
    /// Stop a running collection (it stops between batches).
    Stop {
        /// Run id.
        id: i64,
    },
    /// Hold off blob deletion for a while (runs stop before deleting bytes), e.g. while you
    /// copy the bucket after dumping the database.
    Pause {
        /// For how long, e.g. `2h`.
        #[arg(long = "for")]
        duration: humantime::Duration,
    },
    /// Lift a pause.
    Resume,
    /// Show or set the schedule: --type None|Hourly|Daily|Weekly, or --cron for Custom.
    Schedule {
        /// None, Hourly, Daily, Weekly (or Custom with --cron).
        #[arg(long = "type")]
        kind: Option<String>,
        /// Six-field cron, seconds first, in UTC: "0 0 3 * * *" is 03:00 every day.
        #[arg(long)]
        cron: Option<String>,
        /// Scheduled runs also delete untagged manifests.
        #[arg(long)]
        delete_untagged: bool,
        /// Hours (as for `gc run`).
        #[arg(long, default_value_t = 2)]
        time_window: u64,
    },
}

/// `berth quota …`
#[derive(Subcommand, Debug)]
pub enum QuotaCommand {
    /// Every project's storage quota and usage.
    List,
    /// Set a project's storage limit: a size like `10GiB`, `500MB`, or -1 for unlimited.
    Set {
        /// Project name.
        project: String,
        /// The limit.
        #[arg(allow_hyphen_values = true)]
        limit: String,
    },
    /// Recompute every project's usage from what it holds and compare with the stored
    /// figures; exits 1 if any differ (unless --fix corrected them).
    Verify {
        /// Correct any difference.
        #[arg(long)]
        fix: bool,
    },
}

/// `10GiB`, `500 MB`, `1048576`, `-1` → bytes (`-1`: unlimited).
pub fn parse_size(s: &str) -> anyhow::Result<i64> {
    let t = s.trim();
    if t == "-1" {
        return Ok(-1);
    }
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().with_context(|| format!("{s:?} is not a size (e.g. 10GiB, 500MB, -1)"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0 * 1024.0,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "ti" | "tib" => 1024.0f64.powi(4),
        other => bail!("unknown unit {other:?} in {s:?}: use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB"),
    };
    let bytes = (n * mult).round();
    if bytes < 1.0 {
        bail!("{s:?}: a limit must be at least one byte (or -1 for unlimited)");
    }
    Ok(bytes as i64)
}

/// `berth immutable …`
#[derive(Subcommand, Debug)]
pub enum ImmutableCommand {
    /// A project's immutable tag rules.
    List {
        /// Project name.
        project: String,
    },
    /// Add a rule: tags matching --tags in repositories matching --repos can no longer be
    /// overwritten or deleted (doublestar patterns: `v*`, `release-{a,b}`, `team/**`).
    Add {
        /// Project name.
        project: String,
        /// Tag pattern.
        #[arg(long)]
        tags: String,
        /// Repository pattern (the name without the project), default every repository.
        #[arg(long, default_value = "**")]
        repos: String,
        /// The rule selects tags that do NOT match --tags.
        #[arg(long)]
        exclude_tags: bool,
        /// The rule selects repositories that do NOT match --repos.
        #[arg(long)]
        exclude_repos: bool,
    },
    /// Delete a rule.
    Delete {
        /// Project name.
        project: String,
        /// Rule id (from `berth immutable list`).
        id: i64,
    },
    /// Show or set a repository's ECR tag mutability: MUTABLE, IMMUTABLE,
    /// IMMUTABLE_WITH_EXCLUSION or MUTABLE_WITH_EXCLUSION (with --exclude filters).
    Mutability {
        /// Repository, `project/name`.
        repository: String,
        /// The new setting; shows the current one when omitted.
        mode: Option<String>,
        /// A wildcard filter (`latest`, `dev-*`), repeatable.
        #[arg(long = "exclude")]
        exclude: Vec<String>,
    },
}

/// `berth lifecycle …`
#[derive(Subcommand, Debug)]
pub enum LifecycleCommand {
    /// Show a repository's ECR lifecycle policy.
    Get {
        /// Repository, `project/name`.
        repository: String,
    },
    /// Set it from a file of ECR's lifecycle policy JSON (`-` reads standard input). It is
    /// applied within the hour, then daily.
    Put {
        /// Repository, `project/name`.
        repository: String,
        /// The policy file.
        file: std::path::PathBuf,
    },
    /// Delete it.
    Delete {
        /// Repository, `project/name`.
        repository: String,
    },
    /// Show which images it would expire, and by which rule, deleting nothing.
    Preview {
        /// Repository, `project/name`.
        repository: String,
        /// Preview this policy file instead of the stored policy.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
    },
    /// Apply it now and show what expired.
    Apply {
        /// Repository, `project/name`.
        repository: String,
    },
}

/// `berth access-key …`
#[derive(Subcommand, Debug)]
pub enum AccessKeyCommand {
    /// A new access key (the secret is printed once).
    Create,
    /// The access keys, without their secrets.
    List,
    /// Let a key sign again.
    Activate {
        /// The access key id (`AKIA…`).
        id: String,
    },
    /// Stop a key from signing (it can be activated again).
    Deactivate {
        /// The access key id (`AKIA…`).
        id: String,
    },
    /// Delete a key.
    Delete {
        /// The access key id (`AKIA…`).
        id: String,
    },
}

/// `berth healthcheck`: `GET /healthz` on this machine's server (the port of BERTH_LISTEN,
/// default 5000; https when BERTH_TLS_CERT is set, its certificate not checked: it is
/// loopback), failing unless it answers 200 within 5 s.
pub async fn healthcheck(url: Option<String>) -> anyhow::Result<()> {
    let url = url.unwrap_or_else(|| {
        let listen = std::env::var("BERTH_LISTEN").unwrap_or_else(|_| "0.0.0.0:5000".into());
        let port = listen.rsplit(':').next().unwrap_or("5000").to_owned();
        let scheme = if std::env::var_os("BERTH_TLS_CERT").is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{port}")
    });
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .danger_accept_invalid_certs(true)
        .build()?;
    let target = format!("{}/healthz", url.trim_end_matches('/'));
    let r = client.get(&target).send().await.with_context(|| format!("{target} did not answer"))?;
    anyhow::ensure!(r.status().is_success(), "{target} answered {}", r.status());
    println!("healthy");
    Ok(())
}

/// `berth login-password`: the password alone, for `--password-stdin`.
pub async fn login_password(args: &ApiArgs) -> anyhow::Result<()> {
    let api = Api::new(args)?;
    let (_, v) = api.call(reqwest::Method::POST, "/users/current/login-password", None).await?;
    if !api.structured(&v)? {
        println!("{}", cell(&v["password"]));
    }
    Ok(())
}

/// `berth access-key …`.
pub async fn access_key(args: &ApiArgs, robot: Option<&str>, cmd: AccessKeyCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let api = Api::new(args)?;
    let base = match robot {
        Some(name) => format!("/robots/{}/access-keys", robot_id(&api, name).await?),
        None => "/users/current/access-keys".to_owned(),
    };
    let one = |id: &str| format!("{base}/{}", enc(id));
    match cmd {
        AccessKeyCommand::Create => {
            let (_, k) = api.call(Method::POST, &base, None).await?;
            if !api.structured(&k)? {
                println!("access key id:     {}", cell(&k["access_key_id"]));
                println!("secret access key: {}", cell(&k["secret_access_key"]));
                println!("(the secret is shown this once; use them as AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)");
            }
        }
        AccessKeyCommand::List => {
            let (_, list) = api.call(Method::GET, &base, None).await?;
            if !api.structured(&list)? {
                let rows = list
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|k| vec![cell(&k["access_key_id"]), cell(&k["status"]), cell(&k["creation_time"])]);
                println!("{}", table(&["ACCESS KEY ID", "STATUS", "CREATED"], rows));
            }
        }
        AccessKeyCommand::Activate { id } => {
            api.call(Method::PUT, &one(&id), Some(json!({"active": true}))).await?;
            println!("access key {id} is active");
        }
        AccessKeyCommand::Deactivate { id } => {
            api.call(Method::PUT, &one(&id), Some(json!({"active": false}))).await?;
            println!("access key {id} is inactive: it signs nothing until activated");
        }
        AccessKeyCommand::Delete { id } => {
            api.call(Method::DELETE, &one(&id), None).await?;
            println!("access key {id} deleted");
        }
    }
    Ok(())
}

/// `berth label …`.
#[derive(Debug, Subcommand)]
pub enum LabelCommand {
    /// Global labels, or a project's with --project.
    List {
        /// A project's labels instead of the global ones.
        #[arg(long)]
        project: Option<String>,
    },
    /// Create a label (global; a project's with --project).
    Create {
        /// Its name (no commas).
        name: String,
        /// Make it a label of this project.
        #[arg(long)]
        project: Option<String>,
        /// A colour for the portal (`#0065AB`).
        #[arg(long, default_value = "")]
        color: String,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete a label (it leaves every artifact).
    Delete {
        /// Label id (from `berth label list`).
        id: i64,
    },
    /// Put a label on an artifact.
    Add {
        /// Repository, `project/name`.
        repository: String,
        /// Tag or digest of the artifact.
        reference: String,
        /// Label id.
        id: i64,
    },
    /// Take a label off an artifact.
    Remove {
        /// Repository, `project/name`.
        repository: String,
        /// Tag or digest of the artifact.
        reference: String,
        /// Label id.
        id: i64,
    },
}

/// `berth registry …`
#[derive(Subcommand, Debug)]
pub enum RegistryCommand {
    /// Every registry endpoint with its provider, URL, credential and last check.
    List,
    /// Add an endpoint (a registry to cache or replicate from).
    Create {
        /// Its name.
        name: String,
        /// Its URL (`https://registry-1.docker.io`, `https://ghcr.io`, …).
        #[arg(value_name = "URL")]
        endpoint: String,
        /// Provider: docker-hub, docker-registry, harbor, quay, github-ghcr, oci.
        #[arg(long = "type", default_value = "docker-registry")]
        kind: String,
        /// The username or access key Berth signs in with there (anonymous without).
        #[arg(long)]
        access_key: Option<String>,
        /// Read its password or token from standard input (as `docker login --password-stdin`).
        #[arg(long)]
        password_stdin: bool,
        /// A CA certificate (PEM file) to trust for it.
        #[arg(long)]
        ca_file: Option<std::path::PathBuf>,
        /// Do not verify its TLS certificate.
        #[arg(long)]
        insecure: bool,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Check that an endpoint answers and accepts its credentials (records its status).
    Ping {
        /// Name or id.
        registry: String,
    },
    /// Delete an endpoint.
    Delete {
        /// Name or id.
        registry: String,
    },
}

/// `berth replication …`
#[derive(Subcommand, Debug)]
pub enum ReplicationCommand {
    /// Every policy: its direction, endpoint, trigger and filters.
    List,
    /// Create a policy from a JSON file (Harbor's ReplicationPolicy; `-` reads standard input).
    Create {
        /// The policy file.
        file: std::path::PathBuf,
    },
    /// Delete a policy (and its history).
    Delete {
        /// Name or id.
        policy: String,
    },
    /// Run a policy now and wait for the end: a line per artifact.
    Run {
        /// Name or id.
        policy: String,
        /// Start it and return at once.
        #[arg(long)]
        no_wait: bool,
    },
    /// The runs of a policy, newest first.
    History {
        /// Name or id.
        policy: String,
    },
    /// The tasks of a run, with their logs.
    Log {
        /// The run's id (from `berth replication history`).
        execution: i64,
    },
    /// Stop a run.
    Stop {
        /// The run's id.
        execution: i64,
    },
}

/// `berth retention …`
#[derive(Subcommand, Debug)]
pub enum RetentionCommand {
    /// Show a project's tag retention policy.
    Show {
        /// Project name.
        project: String,
    },
    /// Set it from a file of Harbor's retention policy JSON (its `rules`, and `trigger` for a
    /// schedule); `-` reads standard input.
    Set {
        /// Project name.
        project: String,
        /// The policy file.
        file: std::path::PathBuf,
    },
    /// Delete it.
    Delete {
        /// Project name.
        project: String,
    },
    /// Run it now and show, per repository, how many artifacts it kept.
    Run {
        /// Project name.
        project: String,
        /// Delete nothing; only log what would go.
        #[arg(long)]
        dry_run: bool,
    },
    /// Its executions, newest first.
    History {
        /// Project name.
        project: String,
    },
    /// The log of an execution: per repository, every artifact and its verdict.
    Log {
        /// Project name.
        project: String,
        /// Execution id (from `berth retention history`).
        execution: i64,
        /// Only this repository (`project/name`).
        #[arg(long)]
        repository: Option<String>,
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
    out: Output,
}

impl Api {
    fn new(args: &ApiArgs) -> anyhow::Result<Api> {
        let out = Output::parse(&args.output)?;
        if args.password.is_none() {
            bail!("give the password with --password or BERTH_PASSWORD");
        }
        let mut http = reqwest::Client::builder();
        if let Some(path) = &args.ca_file {
            let pem = std::fs::read(path).with_context(|| format!("reading --ca-file {}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("--ca-file {}: not PEM certificates", path.display()))?;
            anyhow::ensure!(!certs.is_empty(), "--ca-file {}: no certificate in it", path.display());
            for c in certs {
                http = http.add_root_certificate(c);
            }
        }
        Ok(Api { http: http.build()?, args: args.clone(), out })
    }

    /// Print `v` as JSON or YAML when asked; `false` when a table is wanted instead.
    fn structured(&self, v: &Value) -> anyhow::Result<bool> {
        self.out.structured(v)
    }

    /// Print `v` in the structured format asked for (JSON unless YAML).
    fn print(&self, v: &Value) -> anyhow::Result<()> {
        if !self.out.structured(v)? {
            print_json(v)?;
        }
        Ok(())
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<(u16, Value)> {
        let (status, _, v) = self.call_full(method, path, body).await?;
        Ok((status, v))
    }

    /// Like [`Api::call`], with the `Location` of what was created.
    async fn create(&self, path: &str, body: Option<Value>) -> anyhow::Result<String> {
        let (_, location, _) = self.call_full(reqwest::Method::POST, path, body).await?;
        location.with_context(|| format!("POST {path} answered without a Location"))
    }

    async fn call_full(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Option<String>, Value)> {
        let url = format!("{}/api/v2.0{path}", self.args.url.trim_end_matches('/'));
        let mut req = self.http.request(method, &url).basic_auth(&self.args.username, self.args.password.as_deref());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.with_context(|| format!("calling {url}"))?;
        let status = resp.status().as_u16();
        let location = resp.headers().get("location").and_then(|l| l.to_str().ok()).map(str::to_owned);
        let text = resp.text().await.unwrap_or_default();
        let v: Value =
            if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(json!(text)) };
        if status >= 400 {
            let msg = v["errors"][0]["message"].as_str().map(str::to_owned).unwrap_or_else(|| text.clone());
            bail!("{status}: {msg}");
        }
        Ok((status, location, v))
    }

    /// Every item of a paged listing (following `page` until a short page).
    async fn list_all(&self, path: &str) -> anyhow::Result<Value> {
        const PAGE: usize = 100;
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut all = Vec::new();
        for page in 1.. {
            let (_, v) =
                self.call(reqwest::Method::GET, &format!("{path}{sep}page={page}&page_size={PAGE}"), None).await?;
            let items = v.as_array().cloned().unwrap_or_default();
            let n = items.len();
            all.extend(items);
            if n < PAGE {
                break;
            }
        }
        Ok(Value::Array(all))
    }

    /// Is structured output (JSON or YAML) wanted?
    fn json(&self) -> bool {
        self.out != Output::Table
    }

    /// The id of the item named `name` (or given as a number) in the listing at `list`.
    async fn id_named(&self, list: &str, name: &str, what: &str, hint: &str) -> anyhow::Result<i64> {
        if let Ok(id) = name.parse::<i64>() {
            return Ok(id);
        }
        let (_, items) = self.call(reqwest::Method::GET, &format!("{list}?page_size=100"), None).await?;
        items
            .as_array()
            .and_then(|a| a.iter().find(|i| i["name"] == name))
            .and_then(|i| i["id"].as_i64())
            .with_context(|| format!("no {what} named {name:?} ({hint} shows them)"))
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

/// A JSON value as a table cell (`Value`'s `Display` ignores widths, so columns would not align).
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Run `berth project member …`.
async fn member(api: &Api, cmd: MemberCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let members = |project: &str| {
        let path = format!("/projects/{}/members", enc(project));
        async move { api.list_all(&path).await }
    };
    let find = |list: &Value, name: &str| -> anyhow::Result<i64> {
        list.as_array()
            .and_then(|a| a.iter().find(|m| m["entity_name"] == name))
            .and_then(|m| m["id"].as_i64())
            .with_context(|| format!("{name:?} is not a member (berth project member list shows them)"))
    };
    match cmd {
        MemberCommand::List { project } => {
            let list = members(&project).await?;
            if !api.structured(&list)? {
                let rows = list.as_array().into_iter().flatten().map(|m| {
                    let kind = if m["entity_type"] == "g" { "group" } else { "user" };
                    vec![cell(&m["entity_name"]), kind.to_owned(), cell(&m["role_name"])]
                });
                println!("{}", table(&["NAME", "TYPE", "ROLE"], rows));
            }
        }
        MemberCommand::Add { project, user, group, role } => {
            let role_id = role_id(&role)?;
            let body = match (&user, &group) {
                (Some(u), _) => json!({"role_id": role_id, "member_user": {"username": u}}),
                (None, Some(g)) => json!({"role_id": role_id, "member_group": {"group_name": g, "group_type": 3}}),
                (None, None) => bail!("give --user or --group"),
            };
            api.call(Method::POST, &format!("/projects/{}/members", enc(&project)), Some(body)).await?;
            let who = user.or(group).unwrap_or_default();
            if !api.structured(&json!({"project": project, "member": who, "role_id": role_id}))? {
                println!("added {who} to {project} as {role}");
            }
        }
        MemberCommand::Role { project, name, role } => {
            let role_id = role_id(&role)?;
            let id = find(&members(&project).await?, &name)?;
            let path = format!("/projects/{}/members/{id}", enc(&project));
            api.call(Method::PUT, &path, Some(json!({ "role_id": role_id }))).await?;
            if !api.structured(&json!({"project": project, "member": name, "role_id": role_id}))? {
                println!("{name} is now {role} in {project}");
            }
        }
        MemberCommand::Remove { project, name } => {
            let id = find(&members(&project).await?, &name)?;
            api.call(Method::DELETE, &format!("/projects/{}/members/{id}", enc(&project)), None).await?;
            if !api.structured(&json!({"project": project, "removed": name}))? {
                println!("removed {name} from {project}");
            }
        }
    }
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
            if !api.structured(&p)? {
                println!(
                    "created project {name} (id {}, {})",
                    p["project_id"],
                    if public { "public" } else { "private" }
                );
            }
        }
        ProjectCommand::List => {
            let list = api.list_all("/projects").await?;
            if !api.structured(&list)? {
                let rows = list.as_array().into_iter().flatten().map(|p| {
                    vec![
                        cell(&p["project_id"]),
                        cell(&p["name"]),
                        cell(&p["metadata"]["public"]),
                        cell(&p["repo_count"]),
                        cell(&p["owner_name"]),
                    ]
                });
                println!("{}", table(&["ID", "NAME", "PUBLIC", "REPOSITORIES", "OWNER"], rows));
            }
        }
        ProjectCommand::Show { name } => {
            let (_, p) = api.call(reqwest::Method::GET, &format!("/projects/{}", enc(&name)), None).await?;
            let (_, summary) =
                api.call(reqwest::Method::GET, &format!("/projects/{}/summary", enc(&name)), None).await?;
            let v = json!({"project": p, "summary": summary});
            if !api.structured(&v)? {
                let quota = |k: &str| match summary["quota"][k]["storage"].as_i64() {
                    Some(n) if n >= 0 => berth_types::human_bytes(n as u64),
                    _ => "unlimited".into(),
                };
                let mut rows = vec![
                    vec!["id".to_owned(), cell(&p["project_id"])],
                    vec!["owner".to_owned(), cell(&p["owner_name"])],
                    vec!["created".to_owned(), cell(&p["creation_time"])],
                    vec!["repositories".to_owned(), cell(&summary["repo_count"])],
                    vec!["storage used".to_owned(), quota("used")],
                    vec!["storage limit".to_owned(), quota("hard")],
                    vec![
                        "members".to_owned(),
                        format!(
                            "{} admins, {} maintainers, {} developers, {} guests",
                            summary["project_admin_count"],
                            summary["maintainer_count"],
                            summary["developer_count"],
                            summary["guest_count"]
                        ),
                    ],
                ];
                if let Some(m) = p["metadata"].as_object() {
                    rows.extend(m.iter().map(|(k, v)| vec![k.clone(), cell(v)]));
                }
                println!("{}", table(&["PROJECT", &name], rows));
            }
        }
        ProjectCommand::Update { name, public, set } => {
            let mut metadata = serde_json::Map::new();
            for kv in &set {
                let (k, v) = kv.split_once('=').with_context(|| format!("--set {kv:?}: use KEY=VALUE"))?;
                metadata.insert(k.trim().to_owned(), json!(v.trim()));
            }
            if let Some(p) = public {
                metadata.insert("public".into(), json!(p.to_string()));
            }
            anyhow::ensure!(!metadata.is_empty(), "nothing to change: give --public or --set KEY=VALUE");
            let path = format!("/projects/{}", enc(&name));
            api.call(reqwest::Method::PUT, &path, Some(json!({ "metadata": metadata }))).await?;
            let (_, p) = api.call(reqwest::Method::GET, &path, None).await?;
            if !api.structured(&p)? {
                let keys: Vec<&String> = metadata.keys().collect();
                let now: Vec<String> =
                    keys.iter().map(|k| format!("{k}={}", cell(&p["metadata"][k.as_str()]))).collect();
                println!("updated project {name}: {}", now.join(", "));
            }
        }
        ProjectCommand::Delete { name } => {
            api.call(reqwest::Method::DELETE, &format!("/projects/{}", enc(&name)), None).await?;
            if !api.structured(&json!({"deleted": name}))? {
                println!("deleted project {name}");
            }
        }
        ProjectCommand::Member { command } => member(&api, command).await?,
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
            if !api.structured(&r)? {
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
            if !api.structured(&v)? {
                println!("lifted the login locks of {name}");
            }
        }
        RobotCommand::Trust { name, issuer, audience, subject, claims, jwks_url, clear } => {
            let path = format!("/robots/{}/federation", robot_id(&api, &name).await?);
            if clear {
                api.call(reqwest::Method::DELETE, &path, None).await?;
                println!("{name} accepts no identity tokens now");
                return Ok(());
            }
            let (_, mut fed) = api.call(reqwest::Method::GET, &path, None).await?;
            if let Some(issuer) = issuer {
                let mut wanted = serde_json::Map::new();
                for c in &claims {
                    let (k, v) = c.split_once('=').with_context(|| format!("--claim {c:?}: write NAME=PATTERN"))?;
                    wanted.insert(k.to_owned(), json!(v));
                }
                let mut rule = json!({"issuer": issuer, "audience": audience, "subject": subject, "claims": wanted});
                if let Some(u) = jwks_url {
                    rule["jwks_url"] = json!(u);
                }
                let mut rules = fed["rules"].as_array().cloned().unwrap_or_default();
                rules.push(rule);
                fed = api.call(reqwest::Method::PUT, &path, Some(json!({"rules": rules}))).await?.1;
            }
            if !api.structured(&fed)? {
                let rows = fed["rules"].as_array().into_iter().flatten().map(|r| {
                    let claims = r["claims"]
                        .as_object()
                        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", cell(v))).collect::<Vec<_>>().join(" "))
                        .unwrap_or_default();
                    vec![cell(&r["issuer"]), cell(&r["audience"]), cell(&r["subject"]), claims]
                });
                println!("{}", table(&["ISSUER", "AUDIENCE", "SUBJECT", "CLAIMS"], rows));
            }
        }
        RobotCommand::List => {
            let list = api.list_all("/robots").await?;
            if !api.structured(&list)? {
                let rows = list.as_array().into_iter().flatten().map(|r| {
                    let exp = r["expires_at"].as_i64().unwrap_or(-1);
                    vec![
                        cell(&r["id"]),
                        cell(&r["name"]),
                        cell(&r["level"]),
                        if r["disable"] == true { "yes".into() } else { "no".into() },
                        if exp < 0 { "never".to_owned() } else { berth_auth::rfc3339(exp * 1000) },
                    ]
                });
                println!("{}", table(&["ID", "NAME", "LEVEL", "DISABLED", "EXPIRES"], rows));
            }
        }
        RobotCommand::Disable { name } => robot_disable(&api, &name, true).await?,
        RobotCommand::Enable { name } => robot_disable(&api, &name, false).await?,
        RobotCommand::Refresh { name } => {
            let id = robot_id(&api, &name).await?;
            let (_, v) = api.call(reqwest::Method::PATCH, &format!("/robots/{id}"), Some(json!({}))).await?;
            if !api.structured(&json!({"name": name, "secret": v["secret"]}))? {
                println!("new secret of {name} (shown once, store it now): {}", cell(&v["secret"]));
            }
        }
        RobotCommand::Delete { name } => {
            let id = robot_id(&api, &name).await?;
            api.call(reqwest::Method::DELETE, &format!("/robots/{id}"), None).await?;
            if !api.structured(&json!({"deleted": name}))? {
                println!("deleted robot account {name}");
            }
        }
    }
    Ok(())
}

/// The id of robot account `name` (its full name).
async fn robot_id(api: &Api, name: &str) -> anyhow::Result<i64> {
    api.list_all("/robots")
        .await?
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == name))
        .and_then(|r| r["id"].as_i64())
        .with_context(|| format!("no robot account named {name:?} (berth robot list shows them)"))
}

async fn robot_disable(api: &Api, name: &str, disable: bool) -> anyhow::Result<()> {
    let id = robot_id(api, name).await?;
    api.call(reqwest::Method::PUT, &format!("/robots/{id}"), Some(json!({ "disable": disable }))).await?;
    let word = if disable { "disabled" } else { "enabled" };
    if !api.structured(&json!({"name": name, "disable": disable}))? {
        println!("{word} robot account {name}");
    }
    Ok(())
}

/// Run `berth user …`.
pub async fn user(args: &ApiArgs, cmd: UserCommand) -> anyhow::Result<()> {
    let api = Api::new(args)?;
    match cmd {
        UserCommand::Create { name, user_password, email, admin } => {
            // `--password` is the caller's own (to sign in to the API), easily taken for the
            // new user's: say so when it is given without --user-password.
            if user_password.is_none() && std::env::args().any(|a| a == "--password" || a.starts_with("--password=")) {
                eprintln!(
                    "note: --password is your own password for the API; the new user's is --user-password (without it, \
                     one is generated and printed)"
                );
            }
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
                api.print(&v)?;
            } else {
                println!("created user {name} (id {id}){}", if admin { ", a system administrator" } else { "" });
                if generated {
                    println!("password (shown once): {pw}");
                }
            }
        }
        UserCommand::List => {
            let (_, list) = api.call(reqwest::Method::GET, "/users?page_size=100", None).await?;
            if !api.structured(&list)? {
                let rows = list.as_array().into_iter().flatten().map(|u| {
                    vec![
                        cell(&u["user_id"]),
                        u["username"].as_str().unwrap_or("").to_owned(),
                        cell(&u["sysadmin_flag"]),
                    ]
                });
                println!("{}", table(&["ID", "USERNAME", "ADMIN"], rows));
            }
        }
        UserCommand::Unlock { name } => {
            let id = api.user_id(&name).await?;
            let (_, v) = api.call(reqwest::Method::DELETE, &format!("/users/{id}/login_locks"), None).await?;
            if !api.structured(&v)? {
                println!("lifted the login locks of {name}");
            }
        }
        UserCommand::CliSecret { command: CliSecretCommand::Reset { name } } => {
            let id = api.user_id(&name).await?;
            let (_, v) = api.call(reqwest::Method::PUT, &format!("/users/{id}/cli_secret"), None).await?;
            let secret = v["secret"].as_str().context("the server returned no secret")?;
            if api.json() {
                api.print(&json!({"user_id": id, "username": name, "secret": secret}))?;
            } else {
                println!("new CLI secret for {name} (shown once; use it as the password of docker login): {secret}");
            }
        }
        UserCommand::CliSecret { command: CliSecretCommand::Revoke { name } } => {
            let id = api.user_id(&name).await?;
            api.call(reqwest::Method::DELETE, &format!("/users/{id}/cli_secret"), None).await?;
            if api.json() {
                api.print(&json!({"user_id": id, "username": name, "revoked": true}))?;
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
        AuditCommand::List { user, operation, project, limit } => {
            let mut terms = Vec::new();
            if let Some(u) = user {
                terms.push(format!("username={u}"));
            }
            if let Some(o) = operation {
                terms.push(format!("operation={o}"));
            }
            let base = match &project {
                Some(p) => format!("/projects/{}/logs", enc(p)),
                None => "/audit-logs".to_owned(),
            };
            let path = format!("{base}?page_size={}&q={}", limit.clamp(1, 100), enc(&terms.join(",")));
            let (_, list) = api.call(reqwest::Method::GET, &path, None).await?;
            if !api.structured(&list)? {
                let rows = list.as_array().into_iter().flatten().map(|e| {
                    let times = e["repeats"].as_i64().filter(|n| *n > 1).map(|n| format!(" ×{n}")).unwrap_or_default();
                    vec![
                        cell(&e["op_time"]),
                        cell(&e["username"]),
                        cell(&e["operation"]),
                        format!("{}{times}", cell(&e["resource"])),
                        cell(&e["result"]),
                    ]
                });
                println!("{}", table(&["TIME", "USER", "OPERATION", "RESOURCE", "RESULT"], rows));
            }
        }
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
            if api.structured(&v)? {
                // printed as asked
            } else if dry_run {
                println!("would purge {} audit entries older than {older_than}", v["purged"]);
            } else {
                println!("purged {} audit entries older than {older_than}", v["purged"]);
            }
        }
    }
    Ok(())
}

/// The cells of a run: id, status, kind, when, what it freed.
fn gc_row(r: &Value) -> Vec<String> {
    let res = &r["result"];
    let freed = if res.is_object() {
        let verb = if res["dry_run"].as_bool() == Some(true) { "would free" } else { "freed" };
        format!(
            "{verb} {} blobs ({}), {} untagged manifests",
            res["blobs_deleted"],
            berth_types::human_bytes(res["bytes_freed"].as_u64().unwrap_or(0)),
            res["manifests_deleted"]
        )
    } else {
        String::new()
    };
    vec![
        cell(&r["id"]),
        r["job_status"].as_str().unwrap_or("").to_owned(),
        r["job_kind"].as_str().unwrap_or("").to_owned(),
        r["creation_time"].as_str().unwrap_or("").to_owned(),
        freed,
    ]
}

/// The header of [`gc_row`]s.
const GC_HEADER: [&str; 5] = ["ID", "STATUS", "KIND", "STARTED", "RESULT"];

fn print_gc_report(r: &Value) {
    println!("{}", table(&GC_HEADER, [gc_row(r)]));
    let repos = r["result"]["repositories"].as_object();
    if let Some(repos) = repos.filter(|m| !m.is_empty()) {
        println!();
        let rows = repos.iter().map(|(name, f)| {
            let name = if name.is_empty() { "(deleted earlier)" } else { name.as_str() };
            vec![
                name.to_owned(),
                cell(&f["blobs"]),
                berth_types::human_bytes(f["bytes"].as_u64().unwrap_or(0)),
                cell(&f["manifests"]),
            ]
        });
        println!("{}", table(&["REPOSITORY", "BLOBS", "BYTES", "MANIFESTS"], rows));
    }
}

/// Run `berth gc …`.
pub async fn gc(args: &ApiArgs, cmd: GcCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let api = Api::new(args)?;
    match cmd {
        GcCommand::Run { dry_run, delete_untagged, time_window, wait } => {
            let body = json!({
                "schedule": {"type": "Manual"},
                "parameters": {"dry_run": dry_run, "delete_untagged": delete_untagged, "time_window": time_window},
            });
            let (_, v) = api.call(Method::POST, "/system/gc/schedule", Some(body)).await?;
            let id = v["id"].as_i64().context("the server did not say which run it started")?;
            if !wait {
                if !api.structured(&v)? {
                    println!("started garbage collection run {id}; follow it with `berth gc status {id}`");
                }
                return Ok(());
            }
            loop {
                let (_, r) = api.call(Method::GET, &format!("/system/gc/{id}"), None).await?;
                match r["job_status"].as_str() {
                    Some("Pending" | "Running" | "Stopping") => {
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
                    status => {
                        if !api.structured(&r)? {
                            print_gc_report(&r);
                        }
                        if status != Some("Success") {
                            let (_, log) = api.call(Method::GET, &format!("/system/gc/{id}/log"), None).await?;
                            bail!("run {id} ended {}: {}", status.unwrap_or("?"), log.as_str().unwrap_or("").trim());
                        }
                        return Ok(());
                    }
                }
            }
        }
        GcCommand::Status { id } => {
            let r = match id {
                Some(id) => api.call(Method::GET, &format!("/system/gc/{id}"), None).await?.1,
                None => {
                    let (_, list) = api.call(Method::GET, "/system/gc?page_size=1", None).await?;
                    list.as_array().and_then(|a| a.first()).cloned().context("no garbage collection has run yet")?
                }
            };
            if !api.structured(&r)? {
                print_gc_report(&r);
            }
        }
        GcCommand::History { limit } => {
            let (_, list) =
                api.call(Method::GET, &format!("/system/gc?page_size={}", limit.clamp(1, 100)), None).await?;
            if !api.structured(&list)? {
                println!("{}", table(&GC_HEADER, list.as_array().into_iter().flatten().map(gc_row)));
            }
        }
        GcCommand::Log { id } => {
            let (_, log) = api.call(Method::GET, &format!("/system/gc/{id}/log"), None).await?;
            print!("{}", log.as_str().unwrap_or(""));
        }
        GcCommand::Stop { id } => {
            api.call(Method::PUT, &format!("/system/gc/{id}"), None).await?;
            println!("asked run {id} to stop");
        }
        GcCommand::Pause { duration } => {
            let seconds = std::time::Duration::from(duration).as_secs().max(1);
            let (_, v) = api.call(Method::POST, "/system/gc/pause", Some(json!({"seconds": seconds}))).await?;
            println!("garbage collection deletes nothing until {}", v["paused_until"].as_str().unwrap_or("?"));
        }
        GcCommand::Resume => {
            api.call(Method::DELETE, "/system/gc/pause", None).await?;
            println!("garbage collection may delete again");
        }
        GcCommand::Schedule { kind: None, cron: None, .. } => {
            let (_, v) = api.call(Method::GET, "/system/gc/schedule", None).await?;
            if !api.structured(&v)? {
                let s = &v["schedule"];
                match s["type"].as_str() {
                    None | Some("None") => println!("no garbage collection is scheduled"),
                    Some(t) => println!(
                        "{t} ({}), next at {}; parameters {}",
                        s["cron"].as_str().unwrap_or(""),
                        s["next_scheduled_time"].as_str().unwrap_or("?"),
                        v["job_parameters"].as_str().unwrap_or("{}")
                    ),
                }
            }
        }
        GcCommand::Schedule { kind, cron, delete_untagged, time_window } => {
            let kind = kind.unwrap_or_else(|| "Custom".into());
            let body = json!({
                "schedule": {"type": kind, "cron": cron},
                "parameters": {"delete_untagged": delete_untagged, "time_window": time_window},
            });
            api.call(Method::PUT, "/system/gc/schedule", Some(body)).await?;
            let (_, v) = api.call(Method::GET, "/system/gc/schedule", None).await?;
            match v["schedule"]["next_scheduled_time"].as_str() {
                Some(next) => println!("garbage collection scheduled {kind}; next run at {next}"),
                None => println!("garbage collection is no longer scheduled"),
            }
        }
    }
    Ok(())
}

fn limit_text(hard: i64) -> String {
    if hard < 0 { "unlimited".into() } else { berth_types::human_bytes(hard as u64) }
}

/// Run `berth quota …`.
pub async fn quota(args: &ApiArgs, cmd: QuotaCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let api = Api::new(args)?;
    match cmd {
        QuotaCommand::List => {
            let mut all = Vec::new();
            for page in 1.. {
                let (_, list) = api.call(Method::GET, &format!("/quotas?page={page}&page_size=100"), None).await?;
                let items = list.as_array().cloned().unwrap_or_default();
                let n = items.len();
                all.extend(items);
                if n < 100 {
                    break;
                }
            }
            if api.json() {
                api.print(&Value::Array(all))?;
            } else {
                let rows = all.iter().map(|q| {
                    let (used, hard) =
                        (q["used"]["storage"].as_i64().unwrap_or(0), q["hard"]["storage"].as_i64().unwrap_or(-1));
                    let pct = if hard > 0 { format!("{:.0}%", used as f64 * 100.0 / hard as f64) } else { "-".into() };
                    vec![
                        q["ref"]["name"].as_str().unwrap_or("").to_owned(),
                        berth_types::human_bytes(used.max(0) as u64),
                        limit_text(hard),
                        pct,
                    ]
                });
                println!("{}", table(&["PROJECT", "USED", "LIMIT", "USE%"], rows));
            }
        }
        QuotaCommand::Set { project, limit } => {
            let bytes = parse_size(&limit)?;
            let (_, p) = api.call(Method::GET, &format!("/projects/{}", enc(&project)), None).await?;
            let id = p["project_id"].as_i64().context("the server did not give the project's id")?;
            api.call(Method::PUT, &format!("/quotas/{id}"), Some(json!({"hard": {"storage": bytes}}))).await?;
            println!("project {project}: storage limit {}", limit_text(bytes));
        }
        QuotaCommand::Verify { fix } => {
            let path = if fix { "/quotas/verify?fix=true" } else { "/quotas/verify" };
            let (_, list) = api.call(Method::POST, path, None).await?;
            if api.json() {
                api.print(&list)?;
            }
            let mut off = 0;
            for c in list.as_array().into_iter().flatten() {
                if c["consistent"].as_bool() == Some(true) {
                    continue;
                }
                off += 1;
                if !api.json() {
                    println!(
                        "{}: stored {} bytes, computed {} bytes ({} objects off){}",
                        c["project"].as_str().unwrap_or(""),
                        c["stored"],
                        c["computed"],
                        c["objects_off"],
                        if fix { " — fixed" } else { "" }
                    );
                }
            }
            let total = list.as_array().map_or(0, Vec::len);
            if !api.json() && off == 0 {
                println!("{total} projects checked: every stored usage equals what the projects hold, to the byte");
            }
            if off > 0 && !fix {
                bail!("{off} of {total} projects' stored usage differs; run `berth quota verify --fix` to correct it");
            }
        }
    }
    Ok(())
}

/// Run `berth immutable …`.
pub async fn immutable(args: &ApiArgs, cmd: ImmutableCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let api = Api::new(args)?;
    let sel = |v: &Value, i: usize| -> String {
        let s = &v[i];
        let not = matches!(s["decoration"].as_str(), Some("excludes" | "repoExcludes"));
        format!("{}{}", if not { "not " } else { "" }, s["pattern"].as_str().unwrap_or(""))
    };
    match cmd {
        ImmutableCommand::List { project } => {
            let (_, list) =
                api.call(Method::GET, &format!("/projects/{}/immutabletagrules", enc(&project)), None).await?;
            if !api.structured(&list)? {
                let rows = list.as_array().into_iter().flatten().map(|r| {
                    vec![
                        cell(&r["id"]),
                        (if r["disabled"].as_bool() == Some(true) { "no" } else { "yes" }).to_owned(),
                        sel(&r["scope_selectors"]["repository"], 0),
                        sel(&r["tag_selectors"], 0),
                    ]
                });
                println!("{}", table(&["ID", "ENABLED", "REPOSITORIES", "TAGS"], rows));
            }
        }
        ImmutableCommand::Add { project, tags, repos, exclude_tags, exclude_repos } => {
            let body = json!({
                "tag_selectors": [{"kind": "doublestar", "decoration": if exclude_tags { "excludes" } else { "matches" }, "pattern": tags}],
                "scope_selectors": {"repository": [{"kind": "doublestar",
                    "decoration": if exclude_repos { "repoExcludes" } else { "repoMatches" }, "pattern": repos}]},
            });
            api.call(Method::POST, &format!("/projects/{}/immutabletagrules", enc(&project)), Some(body)).await?;
            println!("added an immutable tag rule to project {project}");
        }
        ImmutableCommand::Delete { project, id } => {
            api.call(Method::DELETE, &format!("/projects/{}/immutabletagrules/{id}", enc(&project)), None).await?;
            println!("deleted immutable tag rule {id} of project {project}");
        }
        ImmutableCommand::Mutability { repository, mode, exclude } => {
            let (project, name) = repository
                .split_once('/')
                .with_context(|| format!("{repository:?}: give the repository as project/name"))?;
            let path = format!("/projects/{}/repositories/{}/tag_mutability", enc(project), enc(name));
            let v = match mode {
                None => api.call(Method::GET, &path, None).await?.1,
                Some(mode) => {
                    let filters: Vec<Value> =
                        exclude.iter().map(|f| json!({"filterType": "WILDCARD", "filter": f})).collect();
                    let body = json!({"imageTagMutability": mode.to_ascii_uppercase(), "imageTagMutabilityExclusionFilters": filters});
                    api.call(Method::PUT, &path, Some(body)).await?.1
                }
            };
            if !api.structured(&v)? {
                let filters: Vec<&str> = v["imageTagMutabilityExclusionFilters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f["filter"].as_str())
                    .collect();
                let except =
                    if filters.is_empty() { String::new() } else { format!(" (except {})", filters.join(", ")) };
                println!("{repository}: {}{except}", v["imageTagMutability"].as_str().unwrap_or("MUTABLE"));
            }
        }
    }
    Ok(())
}

fn read_file_or_stdin(file: &std::path::Path) -> anyhow::Result<String> {
    if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).context("reading standard input")?;
        Ok(s)
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
    }
}

/// Poll `path` until `done` says so (ten minutes at most).
async fn wait_for(api: &Api, path: &str, done: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    loop {
        let (_, v) = api.call(reqwest::Method::GET, path, None).await?;
        if done(&v) {
            return Ok(v);
        }
        if std::time::Instant::now() > deadline {
            bail!("{path} did not finish within ten minutes; look again later");
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// Epoch seconds as an RFC 3339 time (to the second).
fn epoch_cell(v: &Value) -> String {
    match v.as_f64() {
        Some(secs) if secs >= 0.0 => {
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64))
                .to_string()
        }
        _ => "-".into(),
    }
}

/// Images in ECR's preview shape, as a table.
fn print_images(images: &Value, last: &str, last_of: impl Fn(&Value) -> String) {
    let rows = images.as_array().into_iter().flatten().map(|i| {
        let digest = i["imageDigest"].as_str().unwrap_or("");
        let tags: Vec<&str> = i["imageTags"].as_array().into_iter().flatten().filter_map(|t| t.as_str()).collect();
        let tags = if tags.is_empty() { "<untagged>".to_string() } else { tags.join(",") };
        vec![digest.get(..19).unwrap_or(digest).to_owned(), tags, epoch_cell(&i["imagePushedAt"]), last_of(i)]
    });
    println!("{}", table(&["DIGEST", "TAGS", "PUSHED", last], rows));
}

/// Run `berth lifecycle …`.
pub async fn lifecycle(args: &ApiArgs, cmd: LifecycleCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let api = Api::new(args)?;
    let path_of = |repository: &str| -> anyhow::Result<String> {
        let (project, name) = repository
            .split_once('/')
            .with_context(|| format!("{repository:?}: give the repository as project/name"))?;
        Ok(format!("/projects/{}/repositories/{}/lifecycle_policy", enc(project), enc(name)))
    };
    let rule = |i: &Value| format!("rule {}", cell(&i["appliedRulePriority"]));
    match cmd {
        LifecycleCommand::Get { repository } => {
            let (_, v) = api.call(Method::GET, &path_of(&repository)?, None).await?;
            if !api.structured(&v)? {
                let text = v["lifecyclePolicyText"].as_str().unwrap_or("");
                let pretty = serde_json::from_str::<Value>(text)
                    .ok()
                    .and_then(|p| serde_json::to_string_pretty(&p).ok())
                    .unwrap_or_else(|| text.to_string());
                println!("{pretty}");
                println!("last applied: {}", epoch_cell(&v["lastEvaluatedAt"]));
            }
        }
        LifecycleCommand::Put { repository, file } => {
            let text = read_file_or_stdin(&file)?;
            api.call(Method::PUT, &path_of(&repository)?, Some(json!({"lifecyclePolicyText": text}))).await?;
            println!("set the lifecycle policy of {repository}; it is applied within the hour, then daily");
        }
        LifecycleCommand::Delete { repository } => {
            api.call(Method::DELETE, &path_of(&repository)?, None).await?;
            println!("deleted the lifecycle policy of {repository}");
        }
        LifecycleCommand::Preview { repository, file } => {
            let path = format!("{}/preview", path_of(&repository)?);
            let body = match file {
                Some(f) => Some(json!({"lifecyclePolicyText": read_file_or_stdin(&f)?})),
                None => None,
            };
            api.call(Method::POST, &path, body).await?;
            let done = wait_for(&api, &format!("{path}?maxResults=1000"), |v| v["status"] != "IN_PROGRESS").await?;
            if api.structured(&done)? {
                // printed as asked
            } else if done["status"] != "COMPLETE" {
                bail!("the preview failed: {}", cell(&done["failureReason"]));
            } else {
                print_images(&done["previewResults"], "RULE", rule);
                let n = done["summary"]["expiringImageTotalCount"].as_u64().unwrap_or(0);
                println!("{n} {} would expire", if n == 1 { "image" } else { "images" });
            }
        }
        LifecycleCommand::Apply { repository } => {
            let location = api.create(&format!("{}/executions", path_of(&repository)?), None).await?;
            let path = location.trim_start_matches("/api/v2.0");
            let done = wait_for(&api, path, |v| v["status"] != "IN_PROGRESS").await?;
            if api.structured(&done)? {
                // printed as asked
            } else if done["status"] != "COMPLETE" {
                bail!("applying the policy failed: {}", cell(&done["failureReason"]));
            } else {
                print_images(&done["expiredImages"], "RULE", rule);
                let kept = done["keptImages"].as_array().map_or(0, Vec::len);
                if kept > 0 {
                    println!("kept although the policy expires them:");
                    print_images(&done["keptImages"], "WHY", |i| cell(&i["reason"]));
                }
                let n = done["expiredImages"].as_array().map_or(0, Vec::len);
                println!("{n} {} expired", if n == 1 { "image" } else { "images" });
            }
        }
    }
    Ok(())
}

/// Run `berth label …`.
pub async fn label(args: &ApiArgs, cmd: LabelCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let api = Api::new(args)?;
    let project_id = |project: String| {
        let api = &api;
        async move {
            let (_, p) = api.call(Method::GET, &format!("/projects/{}", enc(&project)), None).await?;
            p["project_id"].as_i64().with_context(|| format!("project {project:?} has no id"))
        }
    };
    let artifact = |repository: &str, reference: &str| -> anyhow::Result<String> {
        let (project, name) = repository
            .split_once('/')
            .with_context(|| format!("{repository:?}: give the repository as project/name"))?;
        Ok(format!("/projects/{}/repositories/{}/artifacts/{}", enc(project), enc(name), enc(reference)))
    };
    match cmd {
        LabelCommand::List { project } => {
            let query = match project {
                Some(p) => format!("scope=p&project_id={}", project_id(p).await?),
                None => "scope=g".into(),
            };
            let (_, list) = api.call(Method::GET, &format!("/labels?{query}&page_size=100"), None).await?;
            if !api.structured(&list)? {
                let rows = list
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|l| vec![cell(&l["id"]), cell(&l["name"]), cell(&l["color"]), cell(&l["description"])]);
                println!("{}", table(&["ID", "NAME", "COLOR", "DESCRIPTION"], rows));
            }
        }
        LabelCommand::Create { name, project, color, description } => {
            let mut body = json!({"name": name, "color": color, "description": description, "scope": "g"});
            if let Some(p) = &project {
                body["scope"] = "p".into();
                body["project_id"] = project_id(p.clone()).await?.into();
            }
            let location = api.create("/labels", Some(body)).await?;
            let id = location.rsplit('/').next().unwrap_or("?");
            match project {
                Some(p) => println!("created label {name} (id {id}) in project {p}"),
                None => println!("created global label {name} (id {id})"),
            }
        }
        LabelCommand::Delete { id } => {
            api.call(Method::DELETE, &format!("/labels/{id}"), None).await?;
            println!("deleted label {id}");
        }
        LabelCommand::Add { repository, reference, id } => {
            let path = format!("{}/labels", artifact(&repository, &reference)?);
            api.call(Method::POST, &path, Some(json!({ "id": id }))).await?;
            println!("labelled {repository}:{reference} with label {id}");
        }
        LabelCommand::Remove { repository, reference, id } => {
            let path = format!("{}/labels/{id}", artifact(&repository, &reference)?);
            api.call(Method::DELETE, &path, None).await?;
            println!("removed label {id} from {repository}:{reference}");
        }
    }
    Ok(())
}

/// Run `berth retention …`.
pub async fn retention(args: &ApiArgs, cmd: RetentionCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let api = Api::new(args)?;
    // The project's id and its retention policy's id (Harbor keeps it in the metadata).
    let lookup = |project: String| {
        let api = &api;
        async move {
            let (_, p) = api.call(Method::GET, &format!("/projects/{}", enc(&project)), None).await?;
            let id = p["project_id"].as_i64().with_context(|| format!("project {project:?} has no id"))?;
            let retention = p["metadata"]["retention_id"].as_str().and_then(|r| r.parse::<i64>().ok());
            anyhow::Ok((id, retention))
        }
    };
    let need = |project: &str, r: Option<i64>| {
        r.with_context(|| format!("project {project} has no retention policy (set one with berth retention set)"))
    };
    match cmd {
        RetentionCommand::Show { project } => {
            let (_, r) = lookup(project.clone()).await?;
            let (_, v) = api.call(Method::GET, &format!("/retentions/{}", need(&project, r)?), None).await?;
            api.print(&v)?;
        }
        RetentionCommand::Set { project, file } => {
            let (id, r) = lookup(project.clone()).await?;
            let mut body: Value =
                serde_json::from_str(&read_file_or_stdin(&file)?).context("the policy file is not JSON")?;
            if body.is_array() {
                body = json!({ "rules": body });
            }
            body["algorithm"] = body.get("algorithm").cloned().unwrap_or_else(|| json!("or"));
            body["scope"] = json!({"level": "project", "ref": id});
            match r {
                Some(r) => {
                    api.call(Method::PUT, &format!("/retentions/{r}"), Some(body)).await?;
                }
                None => {
                    api.create("/retentions", Some(body)).await?;
                }
            }
            println!("set the retention policy of project {project}");
        }
        RetentionCommand::Delete { project } => {
            let (_, r) = lookup(project.clone()).await?;
            api.call(Method::DELETE, &format!("/retentions/{}", need(&project, r)?), None).await?;
            println!("deleted the retention policy of project {project}");
        }
        RetentionCommand::Run { project, dry_run } => {
            let (_, r) = lookup(project.clone()).await?;
            let policy = need(&project, r)?;
            let location =
                api.create(&format!("/retentions/{policy}/executions"), Some(json!({"dry_run": dry_run}))).await?;
            let id: i64 = location.rsplit('/').next().and_then(|i| i.parse().ok()).context("execution id")?;
            let list = format!("/retentions/{policy}/executions?page_size=100");
            let done = wait_for(&api, &list, |v| {
                v.as_array().into_iter().flatten().any(|e| {
                    e["id"].as_i64() == Some(id)
                        && !matches!(e["status"].as_str(), Some("Pending" | "Running" | "Stopping"))
                })
            })
            .await?;
            let run = done.as_array().into_iter().flatten().find(|e| e["id"].as_i64() == Some(id)).cloned();
            let (_, tasks) = api
                .call(Method::GET, &format!("/retentions/{policy}/executions/{id}/tasks?page_size=100"), None)
                .await?;
            if api.json() {
                api.print(&json!({"execution": run, "tasks": tasks}))?;
            } else {
                let rows = tasks.as_array().into_iter().flatten().map(|t| {
                    let (total, kept) = (t["total"].as_i64().unwrap_or(0), t["retained"].as_i64().unwrap_or(0));
                    vec![
                        cell(&t["repository"]),
                        cell(&t["status"]),
                        total.to_string(),
                        kept.to_string(),
                        (total - kept).to_string(),
                    ]
                });
                println!("{}", table(&["REPOSITORY", "STATUS", "TOTAL", "RETAINED", "DELETED"], rows));
                let what = if dry_run { "dry run" } else { "execution" };
                let status = run.as_ref().map(|r| cell(&r["status"])).unwrap_or_default();
                println!("{what} {id}: {status} (berth retention log {project} {id} shows every artifact)");
            }
        }
        RetentionCommand::History { project } => {
            let (_, r) = lookup(project.clone()).await?;
            let (_, list) = api
                .call(Method::GET, &format!("/retentions/{}/executions?page_size=100", need(&project, r)?), None)
                .await?;
            if !api.structured(&list)? {
                let rows = list.as_array().into_iter().flatten().map(|e| {
                    vec![
                        cell(&e["id"]),
                        cell(&e["status"]),
                        cell(&e["trigger"]),
                        (if e["dry_run"].as_bool() == Some(true) { "yes" } else { "no" }).to_owned(),
                        cell(&e["start_time"]),
                    ]
                });
                println!("{}", table(&["ID", "STATUS", "TRIGGER", "DRY RUN", "STARTED"], rows));
            }
        }
        RetentionCommand::Log { project, execution, repository } => {
            let (_, r) = lookup(project.clone()).await?;
            let policy = need(&project, r)?;
            let base = format!("/retentions/{policy}/executions/{execution}/tasks");
            let (_, tasks) = api.call(Method::GET, &format!("{base}?page_size=100"), None).await?;
            for t in tasks.as_array().into_iter().flatten() {
                if repository.as_deref().is_some_and(|r| t["repository"] != r) {
                    continue;
                }
                let (_, log) = api.call(Method::GET, &format!("{base}/{}", cell(&t["id"])), None).await?;
                println!("{}:\n{}", cell(&t["repository"]), log.as_str().unwrap_or(""));
            }
        }
    }
    Ok(())
}

/// Run `berth usage`: per project and day, stored, pushed and pulled bytes and counts.
pub async fn usage(
    args: &ApiArgs,
    project: Option<String>,
    from: Option<String>,
    to: Option<String>,
) -> anyhow::Result<()> {
    let api = Api::new(args)?;
    let mut q = Vec::new();
    if let Some(p) = &project {
        q.push(format!("project={}", enc(p)));
    }
    if let Some(f) = &from {
        q.push(format!("from={}", enc(f)));
    }
    if let Some(t) = &to {
        q.push(format!("to={}", enc(t)));
    }
    let (_, rows) = api.call(reqwest::Method::GET, &format!("/usage?{}", q.join("&")), None).await?;
    let rows = rows.as_array().cloned().unwrap_or_default();
    let cols = ["project", "date", "stored_bytes", "pushed_bytes", "pulled_bytes", "pushes", "pulls"];
    match api.out {
        Output::Json | Output::Yaml => api.print(&Value::Array(rows))?,
        Output::Csv => {
            println!("{}", cols.join(","));
            for r in &rows {
                let cells: Vec<String> = cols
                    .iter()
                    .map(|c| match &r[*c] {
                        Value::String(s) if s.contains([',', '"']) => format!("\"{}\"", s.replace('"', "\"\"")),
                        Value::String(s) => s.clone(),
                        v => v.to_string(),
                    })
                    .collect();
                println!("{}", cells.join(","));
            }
        }
        Output::Table => {
            let hb = |v: &Value| berth_types::human_bytes(v.as_u64().unwrap_or(0));
            let cells = rows.iter().map(|r| {
                vec![
                    r["project"].as_str().unwrap_or("").to_owned(),
                    r["date"].as_str().unwrap_or("").to_owned(),
                    hb(&r["stored_bytes"]),
                    hb(&r["pushed_bytes"]),
                    hb(&r["pulled_bytes"]),
                    cell(&r["pushes"]),
                    cell(&r["pulls"]),
                ]
            });
            println!("{}", table(&["PROJECT", "DATE", "STORED", "PUSHED", "PULLED", "PUSHES", "PULLS"], cells));
            if rows.is_empty() {
                println!("no usage recorded in that period");
            }
        }
    }
    Ok(())
}

/// Run `berth registry …`.
pub async fn registry(args: &ApiArgs, cmd: RegistryCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let api = Api::new(args)?;
    let id_of = |registry: String| {
        let api = &api;
        async move { api.id_named("/registries", &registry, "registry endpoint", "berth registry list").await }
    };
    match cmd {
        RegistryCommand::List => {
            let (_, list) = api.call(Method::GET, "/registries?page_size=100", None).await?;
            if api.json() {
                return api.print(&list);
            }
            let rows = list.as_array().cloned().unwrap_or_default();
            let cells = rows.iter().map(|r| {
                let user = r["credential"]["access_key"].as_str().unwrap_or("");
                vec![
                    cell(&r["id"]),
                    cell(&r["name"]),
                    cell(&r["type"]),
                    cell(&r["url"]) + if r["insecure"] == true { " (insecure)" } else { "" },
                    cell(&r["status"]),
                    (if user.is_empty() { "anonymous" } else { user }).to_owned(),
                ]
            });
            println!("{}", table(&["ID", "NAME", "TYPE", "URL", "STATUS", "CREDENTIAL"], cells));
            if rows.is_empty() {
                println!("no registry endpoints (add one with berth registry create)");
            }
        }
        RegistryCommand::Create {
            name,
            endpoint,
            kind,
            access_key,
            password_stdin,
            ca_file,
            insecure,
            description,
        } => {
            let password = if password_stdin {
                let mut p = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut p).context("reading standard input")?;
                p.trim_end_matches(['\r', '\n']).to_owned()
            } else {
                String::new()
            };
            let ca = match &ca_file {
                Some(f) => std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?,
                None => String::new(),
            };
            let body = json!({"name": name, "url": endpoint, "type": kind, "insecure": insecure, "description": description,
                "credential": {"type": "basic", "access_key": access_key.unwrap_or_default(), "access_secret": password},
                "ca_certificate": ca});
            let location = api.create("/registries", Some(body)).await?;
            let id = location.rsplit('/').next().unwrap_or("?");
            println!("created registry endpoint {name} (id {id}); check it with berth registry ping {name}");
        }
        RegistryCommand::Ping { registry } => {
            let id = id_of(registry.clone()).await?;
            api.call(Method::POST, "/registries/ping", Some(json!({ "id": id }))).await?;
            println!("{registry} answered and accepted the credentials");
        }
        RegistryCommand::Delete { registry } => {
            let id = id_of(registry.clone()).await?;
            api.call(Method::DELETE, &format!("/registries/{id}"), None).await?;
            println!("deleted registry endpoint {registry}");
        }
    }
    Ok(())
}

/// Run `berth replication …`.
pub async fn replication(args: &ApiArgs, cmd: ReplicationCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let api = Api::new(args)?;
    let id_of = |policy: String| {
        let api = &api;
        async move { api.id_named("/replication/policies", &policy, "replication policy", "berth replication list").await }
    };
    let print_tasks = |tasks: &Value| {
        let rows = tasks.as_array().into_iter().flatten().map(|t| {
            vec![
                cell(&t["src_resource"]),
                cell(&t["dst_resource"]),
                cell(&t["status"]),
                t["end_time"].as_str().unwrap_or("-").to_owned(),
            ]
        });
        println!("{}", table(&["SOURCE", "DESTINATION", "STATUS", "ENDED"], rows));
    };
    match cmd {
        ReplicationCommand::List => {
            let (_, list) = api.call(Method::GET, "/replication/policies?page_size=100", None).await?;
            if api.json() {
                return api.print(&list);
            }
            let rows = list.as_array().cloned().unwrap_or_default();
            let cells = rows.iter().map(|p| {
                let direction = if p["src_registry"]["id"] == 0 {
                    format!("push to {}", cell(&p["dest_registry"]["name"]))
                } else {
                    format!("pull from {}", cell(&p["src_registry"]["name"]))
                };
                let filters: Vec<String> = p["filters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|f| {
                        let not = if f["decoration"] == "excludes" { "!" } else { "" };
                        format!("{}{not}={}", cell(&f["type"]), cell(&f["value"]))
                    })
                    .collect();
                let trigger = p["trigger"]["type"].as_str().filter(|t| !t.is_empty()).unwrap_or("manual");
                vec![cell(&p["id"]), cell(&p["name"]), direction, trigger.to_owned(), filters.join(" ")]
            });
            println!("{}", table(&["ID", "NAME", "DIRECTION", "TRIGGER", "FILTERS"], cells));
            if rows.is_empty() {
                println!("no replication policies (create one with berth replication create FILE)");
            }
        }
        ReplicationCommand::Create { file } => {
            let body: Value =
                serde_json::from_str(&read_file_or_stdin(&file)?).context("the policy file is not JSON")?;
            let location = api.create("/replication/policies", Some(body.clone())).await?;
            let id = location.rsplit('/').next().unwrap_or("?");
            println!("created replication policy {} (id {id})", cell(&body["name"]));
        }
        ReplicationCommand::Delete { policy } => {
            let id = id_of(policy.clone()).await?;
            api.call(Method::DELETE, &format!("/replication/policies/{id}"), None).await?;
            println!("deleted replication policy {policy}");
        }
        ReplicationCommand::Run { policy, no_wait } => {
            let id = id_of(policy.clone()).await?;
            let location = api.create("/replication/executions", Some(json!({ "policy_id": id }))).await?;
            let run: i64 = location.rsplit('/').next().and_then(|i| i.parse().ok()).context("execution id")?;
            if no_wait {
                println!("started run {run} of {policy} (berth replication log {run} shows its tasks)");
                return Ok(());
            }
            let done =
                wait_for(&api, &format!("/replication/executions/{run}"), |v| v["status"] != "InProgress").await?;
            let (_, tasks) =
                api.call(Method::GET, &format!("/replication/executions/{run}/tasks?page_size=100"), None).await?;
            if api.json() {
                return api.print(&json!({"execution": done, "tasks": tasks}));
            }
            print_tasks(&tasks);
            println!("run {run}: {} ({})", cell(&done["status"]), cell(&done["status_text"]));
            if done["status"] != "Succeed" {
                bail!("the run did not succeed; berth replication log {run} says why");
            }
        }
        ReplicationCommand::History { policy } => {
            let id = id_of(policy).await?;
            let (_, list) =
                api.call(Method::GET, &format!("/replication/executions?policy_id={id}&page_size=100"), None).await?;
            if api.json() {
                return api.print(&list);
            }
            let rows = list.as_array().into_iter().flatten().map(|e| {
                vec![
                    cell(&e["id"]),
                    cell(&e["status"]),
                    cell(&e["trigger"]),
                    cell(&e["start_time"]),
                    cell(&e["succeed"]),
                    cell(&e["failed"]),
                    cell(&e["status_text"]),
                ]
            });
            println!("{}", table(&["ID", "STATUS", "TRIGGER", "STARTED", "DONE", "FAILED", "RESULT"], rows));
        }
        ReplicationCommand::Log { execution } => {
            let (_, tasks) = api
                .call(Method::GET, &format!("/replication/executions/{execution}/tasks?page_size=100"), None)
                .await?;
            if api.json() {
                return api.print(&tasks);
            }
            for t in tasks.as_array().into_iter().flatten() {
                let path = format!("/replication/executions/{execution}/tasks/{}/log", cell(&t["id"]));
                let (_, log) = api.call(Method::GET, &path, None).await?;
                println!(
                    "{} ({}):\n{}",
                    cell(&t["src_resource"]),
                    cell(&t["status"]),
                    log.as_str().unwrap_or("").trim_end()
                );
            }
        }
        ReplicationCommand::Stop { execution } => {
            api.call(Method::PUT, &format!("/replication/executions/{execution}"), None).await?;
            println!("stopped run {execution}");
        }
    }
    Ok(())
}

/// `berth webhook …`
#[derive(Subcommand, Debug)]
pub enum WebhookCommand {
    /// A project's webhook policies: their events, targets and when each last fired.
    List {
        /// Project name.
        project: String,
    },
    /// Create a policy: a receiver for some events of a project. Prints its signing secret,
    /// which is not shown again.
    Create {
        /// Project name.
        project: String,
        /// The policy's name.
        name: String,
        /// The receiver's URL (or a Slack incoming-webhook URL with --notify-type slack).
        #[arg(long)]
        address: String,
        /// Event types, comma-separated: PUSH_ARTIFACT, PULL_ARTIFACT, DELETE_ARTIFACT,
        /// SCANNING_COMPLETED, SCANNING_FAILED, SCANNING_STOPPED, QUOTA_EXCEED, QUOTA_WARNING,
        /// REPLICATION, TAG_RETENTION.
        #[arg(long, value_delimiter = ',', required = true)]
        events: Vec<String>,
        /// `http` (JSON) or `slack`.
        #[arg(long, default_value = "http")]
        notify_type: String,
        /// `Default` (Harbor's JSON) or `CloudEvents` (http only).
        #[arg(long)]
        payload_format: Option<String>,
        /// Sent as the `Authorization` header (http only).
        #[arg(long)]
        auth_header: Option<String>,
        /// Accept the receiver's TLS certificate whatever it is.
        #[arg(long)]
        skip_cert_verify: bool,
        /// What it is for.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Turn a policy on (events create deliveries again).
    Enable {
        /// Project name.
        project: String,
        /// Policy name or id.
        policy: String,
    },
    /// Turn a policy off (deliveries already made are still sent).
    Disable {
        /// Project name.
        project: String,
        /// Policy name or id.
        policy: String,
    },
    /// Delete a policy and its delivery history.
    Delete {
        /// Project name.
        project: String,
        /// Policy name or id.
        policy: String,
    },
    /// Send a test event to a policy's targets now, and say what each answered.
    Test {
        /// Project name.
        project: String,
        /// Policy name or id.
        policy: String,
    },
    /// A policy's deliveries, newest first; `--status Error` lists the dead letters.
    Deliveries {
        /// Project name.
        project: String,
        /// Policy name or id.
        policy: String,
        /// Only `Pending`, `Running`, `Success` or `Error`.
        #[arg(long)]
        status: Option<String>,
    },
    /// Send a finished delivery (a dead letter, say) again.
    Redeliver {
        /// Project name.
        project: String,
        /// Policy name or id.
        policy: String,
        /// The delivery's id (from `berth webhook deliveries`).
        delivery: i64,
    },
}

/// `berth webhook …`: a project's webhook policies and their deliveries.
pub async fn webhook(args: &ApiArgs, cmd: WebhookCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let api = Api::new(args)?;
    let base = |project: &str| format!("/projects/{}/webhook/policies", enc(project));
    let id_of = |project: String, policy: String| {
        let api = &api;
        async move {
            let list = format!("/projects/{}/webhook/policies", enc(&project));
            api.id_named(&list, &policy, "webhook policy", &format!("berth webhook list {project}")).await
        }
    };
    match cmd {
        WebhookCommand::List { project } => {
            let list = api.list_all(&base(&project)).await?;
            if api.json() {
                return api.print(&list);
            }
            let (_, last) =
                api.call(Method::GET, &format!("/projects/{}/webhook/lasttrigger", enc(&project)), None).await?;
            let rows: Vec<Value> = list.as_array().cloned().unwrap_or_default();
            let cells = rows.iter().map(|p| {
                let targets: Vec<String> = p["targets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| match t["payload_format"].as_str() {
                        Some("CloudEvents") => format!("{} (CloudEvents)", cell(&t["address"])),
                        _ if t["type"] == "slack" => format!("{} (Slack)", cell(&t["address"])),
                        _ => cell(&t["address"]),
                    })
                    .collect();
                let events: Vec<String> = p["event_types"].as_array().into_iter().flatten().map(cell).collect();
                let fired = last
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|t| t["policy_name"] == p["name"])
                    .filter_map(|t| t["last_trigger_time"].as_str())
                    .max()
                    .unwrap_or("never")
                    .to_owned();
                vec![
                    cell(&p["id"]),
                    cell(&p["name"]),
                    if p["enabled"] == true { "yes".into() } else { "no".into() },
                    events.join(", "),
                    targets.join(", "),
                    fired,
                ]
            });
            println!("{}", table(&["ID", "NAME", "ENABLED", "EVENTS", "TARGETS", "LAST FIRED"], cells));
            if rows.is_empty() {
                println!("no webhook policies in {project} (create one with berth webhook create)");
            }
        }
        WebhookCommand::Create {
            project,
            name,
            address,
            events,
            notify_type,
            payload_format,
            auth_header,
            skip_cert_verify,
            description,
        } => {
            let mut target = json!({"type": notify_type, "address": address, "skip_cert_verify": skip_cert_verify});
            if let Some(f) = payload_format {
                target["payload_format"] = json!(f);
            }
            if let Some(h) = auth_header {
                target["auth_header"] = json!(h);
            }
            let body = json!({"name": name, "description": description, "enabled": true,
                              "event_types": events, "targets": [target]});
            let (_, location, v) = api.call_full(Method::POST, &base(&project), Some(body)).await?;
            if api.json() {
                return api.print(&v);
            }
            let id = location.as_deref().and_then(|l| l.rsplit('/').next()).unwrap_or("?");
            println!("created webhook policy {name} (id {id}) in {project}");
            println!("signing secret (shown once; receivers check X-Berth-Signature-256 with it):");
            println!("{}", cell(&v["secret"]));
        }
        WebhookCommand::Enable { project, policy } => switch_webhook(&api, &project, &policy, true).await?,
        WebhookCommand::Disable { project, policy } => switch_webhook(&api, &project, &policy, false).await?,
        WebhookCommand::Delete { project, policy } => {
            let id = id_of(project.clone(), policy.clone()).await?;
            api.call(Method::DELETE, &format!("{}/{id}", base(&project)), None).await?;
            println!("deleted webhook policy {policy} of {project}");
        }
        WebhookCommand::Test { project, policy } => {
            let id = id_of(project.clone(), policy.clone()).await?;
            let (_, v) = api.call(Method::POST, &format!("{}/{id}/test", base(&project)), None).await?;
            if api.json() {
                return api.print(&v);
            }
            for r in v["results"].as_array().into_iter().flatten() {
                match r["status_code"].as_u64() {
                    Some(code) => println!("{}: delivered (HTTP {code})", cell(&r["address"])),
                    None => println!("{}: {}", cell(&r["address"]), cell(&r["error"])),
                }
            }
        }
        WebhookCommand::Deliveries { project, policy, status } => {
            let id = id_of(project.clone(), policy.clone()).await?;
            let q = status.map(|s| format!("?q=status%3D{}", enc(&s))).unwrap_or_default();
            let list = api.list_all(&format!("{}/{id}/executions{q}", base(&project))).await?;
            if api.json() {
                return api.print(&list);
            }
            let rows: Vec<Value> = list.as_array().cloned().unwrap_or_default();
            let cells = rows.iter().map(|e| {
                let a = &e["extra_attrs"];
                vec![
                    cell(&e["id"]),
                    cell(&a["event_type"]),
                    cell(&e["status"]),
                    cell(&a["attempts"]),
                    a["last_status_code"].as_i64().map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                    cell(&e["start_time"]),
                    cell(&e["status_message"]),
                ]
            });
            println!("{}", table(&["ID", "EVENT", "STATUS", "TRIES", "HTTP", "CREATED", "LAST TRY"], cells));
            if rows.is_empty() {
                println!("no deliveries");
            }
        }
        WebhookCommand::Redeliver { project, policy, delivery } => {
            let id = id_of(project.clone(), policy.clone()).await?;
            api.call(Method::POST, &format!("{}/{id}/executions/{delivery}/redeliver", base(&project)), None).await?;
            println!(
                "delivery {delivery} will be sent again (berth webhook deliveries {project} {policy} shows how it went)"
            );
        }
    }
    Ok(())
}

/// Turn a webhook policy on or off (its other settings, masked auth header included, kept).
async fn switch_webhook(api: &Api, project: &str, policy: &str, on: bool) -> anyhow::Result<()> {
    let list = format!("/projects/{}/webhook/policies", enc(project));
    let id = api.id_named(&list, policy, "webhook policy", &format!("berth webhook list {project}")).await?;
    let (_, mut p) = api.call(reqwest::Method::GET, &format!("{list}/{id}"), None).await?;
    p["enabled"] = json!(on);
    api.call(reqwest::Method::PUT, &format!("{list}/{id}"), Some(p)).await?;
    println!("webhook policy {policy} of {project} is {}", if on { "on" } else { "off" });
    Ok(())
}

/// `berth signature …`
#[derive(Subcommand, Debug)]
pub enum SignatureCommand {
    /// A project's signature policy: its mode, trusted cosign keys, Notation trust stores and
    /// trust policy.
    Show {
        /// Project name.
        project: String,
    },
    /// Set a project's signature policy from a JSON file (`-` reads standard input):
    /// {"mode": "off|warn|enforce", "cosign_keys": [{"name", "public_key"}],
    /// "trust_stores": [{"name", "certificates"}], "trust_policy": {Notation's trustpolicy.json}}.
    Set {
        /// Project name.
        project: String,
        /// The policy file.
        file: std::path::PathBuf,
    },
    /// Remove a project's signature policy.
    Delete {
        /// Project name.
        project: String,
    },
    /// Check an artifact's signatures under its project's policy (exits 1 unless verified).
    Verify {
        /// Project name.
        project: String,
        /// Repository, without the project (`app`, `tools/cli`).
        repository: String,
        /// Tag or digest.
        reference: String,
    },
}

/// `berth signature …`: a project's signature policy, and an artifact's verdict.
pub async fn signature(args: &ApiArgs, cmd: SignatureCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let api = Api::new(args)?;
    let path = |project: &str| format!("/projects/{}/signature-policy", enc(project));
    match cmd {
        SignatureCommand::Show { project } => {
            let (_, p) = api.call(Method::GET, &path(&project), None).await?;
            if api.json() {
                return api.print(&p);
            }
            println!("mode: {} (version {})", cell(&p["mode"]), cell(&p["version"]));
            let keys: Vec<String> =
                p["cosign_keys"].as_array().into_iter().flatten().map(|k| cell(&k["name"])).collect();
            println!("cosign keys: {}", if keys.is_empty() { "none".to_owned() } else { keys.join(", ") });
            let stores: Vec<String> =
                p["trust_stores"].as_array().into_iter().flatten().map(|k| cell(&k["name"])).collect();
            println!(
                "Notation trust stores: {}",
                if stores.is_empty() { "none".to_owned() } else { stores.join(", ") }
            );
            let policies = p["trust_policy"]["trustPolicies"].as_array().cloned().unwrap_or_default();
            let rows = policies.iter().map(|t| {
                let list = |v: &Value| v.as_array().into_iter().flatten().map(cell).collect::<Vec<_>>().join(", ");
                vec![
                    cell(&t["name"]),
                    list(&t["registryScopes"]),
                    cell(&t["signatureVerification"]["level"]),
                    list(&t["trustStores"]),
                    list(&t["trustedIdentities"]),
                ]
            });
            if !policies.is_empty() {
                println!("{}", table(&["TRUST POLICY", "SCOPES", "LEVEL", "STORES", "IDENTITIES"], rows));
            }
        }
        SignatureCommand::Set { project, file } => {
            let body: Value =
                serde_json::from_str(&read_file_or_stdin(&file)?).context("the policy file is not JSON")?;
            let (_, v) = api.call(Method::PUT, &path(&project), Some(body)).await?;
            println!("signature policy of {project} set (version {})", cell(&v["version"]));
        }
        SignatureCommand::Delete { project } => {
            api.call(Method::DELETE, &path(&project), None).await?;
            println!("signature policy of {project} removed");
        }
        SignatureCommand::Verify { project, repository, reference } => {
            let p = format!(
                "/projects/{}/repositories/{}/artifacts/{}/signature",
                enc(&project),
                enc(&enc(&repository)),
                enc(&reference)
            );
            let (_, v) = api.call(Method::GET, &p, None).await?;
            if api.json() {
                api.print(&v)?;
            } else {
                match v["status"].as_str() {
                    Some("verified") => {
                        println!("{}: verified, signed by {}", cell(&v["digest"]), cell(&v["signed_by"]))
                    }
                    Some("not_checked") => {
                        println!("{}: not checked (project {project} has no signature policy)", cell(&v["digest"]))
                    }
                    _ => {}
                }
            }
            if v["status"] != "verified" {
                let why = v["reason"].as_str().map(|r| format!(": {r}")).unwrap_or_default();
                bail!("{project}/{repository}:{reference} ({}) is {}{why}", cell(&v["digest"]), cell(&v["status"]));
            }
        }
    }
    Ok(())
}
