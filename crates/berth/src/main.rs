//! `berth`: the command-line entry point.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use berth::cli;
use berth_config::{Config, LogFormat, Overrides};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "berth", version, about = "Berth: a container image registry in one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Debug, Default)]
struct ServeArgs {
    /// Configuration file (TOML). Also BERTH_CONFIG.
    #[arg(long, env = "BERTH_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 0.0.0.0:5000].
    #[arg(long)]
    listen: Option<String>,
    /// Directory for blobs and the embedded database [default: ./berth-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// PEM certificate chain: serve HTTPS (HTTP/1.1 and HTTP/2).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long)]
    log_format: Option<String>,
    /// What this process does: api (registry API), worker (background jobs), or all.
    #[arg(long)]
    role: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry.
    Serve(ServeArgs),
    /// Create or upgrade the metadata database, then exit.
    Migrate(ServeArgs),
    /// Back up the embedded data (database snapshot + the blobs it references), also while
    /// Berth runs.
    Backup {
        /// A new or empty directory for the backup.
        #[arg(long)]
        to: PathBuf,
        #[command(flatten)]
        args: ServeArgs,
    },
    /// Re-hash stored blobs and quarantine any whose bytes do not match their digest (also
    /// while Berth runs; a job does the same hourly for blobs unchecked for 30 days).
    Scrub {
        /// Check every blob, not only those unchecked for 30 days.
        #[arg(long)]
        all: bool,
        /// Most bytes read per second, e.g. `100MiB` (0: unlimited).
        #[arg(long, default_value = "0")]
        rate: String,
        /// Only list the quarantined blobs.
        #[arg(long)]
        list: bool,
        #[command(flatten)]
        args: ServeArgs,
    },
    /// Restore a backup into a new data directory (then start Berth on it).
    Restore {
        /// The backup directory.
        #[arg(long)]
        from: PathBuf,
        #[command(flatten)]
        args: ServeArgs,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Background jobs in the metadata database.
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// The event log in the metadata database: every change, and where each consumer stands.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Projects, through the management API of a running Berth.
    Project {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(subcommand)]
        command: cli::ProjectCommand,
    },
    /// Robot accounts, through the management API.
    Robot {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(subcommand)]
        command: cli::RobotCommand,
    },
    /// Users and CLI secrets, through the management API.
    User {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(subcommand)]
        command: cli::UserCommand,
    },
    /// The audit log, through the management API.
    Audit {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(subcommand)]
        command: cli::AuditCommand,
    },
    /// Garbage collection (free the storage of deleted content), through the management API.
    Gc {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(subcommand)]
        command: cli::GcCommand,
    },
    /// Per-project storage quotas, through the management API.
    Quota {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(subcommand)]
        command: cli::QuotaCommand,
    },
    /// Immutable tags: Harbor's rules per project, ECR's mutability per repository.
    Immutable {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(subcommand)]
        command: cli::ImmutableCommand,
    },
    /// ECR lifecycle policies of a repository: get, put, delete, preview, apply.
    Lifecycle {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(subcommand)]
        command: cli::LifecycleCommand,
    },
    /// Your access keys, or a robot account's (AWS SigV4, for `aws ecr` and boto3 against
    /// Berth): create, list, activate, deactivate, delete.
    AccessKey {
        #[command(flatten)]
        api: cli::ApiArgs,
        /// A robot account's keys instead of yours (its full name, `robot$…`), for who may
        /// manage the robot.
        #[arg(long, global = true)]
        robot: Option<String>,
        #[command(subcommand)]
        command: cli::AccessKeyCommand,
    },
    /// Harbor labels: list, create, delete; add to and remove from artifacts.
    Label {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(subcommand)]
        command: cli::LabelCommand,
    },
    /// Registry endpoints (upstreams of proxy caches, ends of replication): list, create, ping, delete.
    Registry {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(subcommand)]
        command: cli::RegistryCommand,
    },
    /// Signature policies: a project's trusted cosign keys and Notation trust policy (show, set,
    /// delete), and an artifact's verdict (verify).
    Signature {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(subcommand)]
        command: cli::SignatureCommand,
    },
    /// Webhooks of a project: list, create, enable, disable, delete, test, deliveries (the
    /// dead letters with --status Error), redeliver.
    Webhook {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(subcommand)]
        command: cli::WebhookCommand,
    },
    /// Replication policies (push to or pull from a registry endpoint): list, create, delete, run, history, log, stop.
    Replication {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(subcommand)]
        command: cli::ReplicationCommand,
    },
    /// Harbor tag retention of a project: show, set, delete, run (or dry-run), history, log.
    Retention {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(subcommand)]
        command: cli::RetentionCommand,
    },
    /// Exports through the management API: `berth export cve --project P -o findings.csv`.
    Export {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(subcommand)]
        command: cli::ExportCommand,
    },
    /// CVE allowlists, the system's or a project's: show, set.
    Allowlist {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(subcommand)]
        command: cli::AllowlistCommand,
    },
    /// Background jobs through the management API: list, show, stop, retry.
    Job {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(subcommand)]
        command: cli::JobCommand,
    },
    /// Repositories: list, delete.
    Repo {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(subcommand)]
        command: cli::RepoCommand,
    },
    /// Artifacts: list, show (with scan results), delete, tag, untag.
    Artifact {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(subcommand)]
        command: cli::ArtifactCommand,
    },
    /// Vulnerability scans: start, report, scan everything.
    Scan {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(subcommand)]
        command: cli::ScanCommand,
    },
    /// A registry password good for 12 hours, for the account you sign in as (as
    /// `aws ecr get-login-password`): pipe it into `podman login -u NAME --password-stdin`.
    /// Prints only the password (`--output json` adds the username and expiry).
    LoginPassword {
        #[command(flatten)]
        api: cli::ApiArgs,
    },
    /// Usage for charge-back, per project and UTC day, through the management API
    /// (`--output text|json|csv`).
    Usage {
        #[command(flatten)]
        api: cli::ApiArgs,
        /// One project (all projects need a system administrator).
        #[arg(long)]
        project: Option<String>,
        /// First day, e.g. 2026-12-01 (default 30 days before --to).
        #[arg(long)]
        from: Option<String>,
        /// Last day (default today).
        #[arg(long)]
        to: Option<String>,
    },
    /// The offline vulnerability database (OSV), in the metadata database.
    Vulndb {
        #[command(subcommand)]
        command: VulndbCommand,
    },
    /// The token signing key, in the metadata database.
    TokenKey {
        #[command(subcommand)]
        command: TokenKeyCommand,
    },
    /// Print a shell completion script: `berth completions bash > /etc/bash_completion.d/berth`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `berth man | man -l -`.
    Man,
    /// Ask the server on this machine whether it is healthy (`/healthz`); exit 0 if so, 1 if
    /// not. The image's HEALTHCHECK. Default: the address BERTH_LISTEN names, on loopback.
    Healthcheck {
        /// The server's URL instead.
        #[arg(long)]
        url: Option<String>,
    },
    /// Administration on the metadata database itself (no server needed).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Set a lost password (of `admin` unless --username says otherwise), offline: a new one
    /// is generated and printed, or read from stdin.
    ResetPassword {
        #[command(flatten)]
        args: ServeArgs,
        /// Whose password.
        #[arg(long, default_value = "admin")]
        username: String,
        /// Read the new password from stdin instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Fill an empty registry with synthetic images, for scale benchmarks (bench/scale.py):
    /// public projects proj-000 …, repositories of small tagged images linking blobs from a
    /// shared pool, a repository with many tags (proj-000/big) and an image with many
    /// referrers (proj-000/signed:latest). Written in bulk, offline.
    Fill {
        #[command(flatten)]
        args: ServeArgs,
        #[command(flatten)]
        options: berth::fill::FillOptions,
    },
}

#[derive(Subcommand)]
enum VulndbCommand {
    /// Import OSV advisories: a directory of *.json, gzipped JSON Lines (*.jsonl.gz) or a zip
    /// of *.json. Works with or without a running server; stored reports are re-evaluated.
    Import {
        /// File or directory.
        path: PathBuf,
        #[command(flatten)]
        args: ServeArgs,
        /// text, json or yaml.
        #[arg(long, default_value = "text")]
        output: String,
    },
    /// Sources, record counts and age of the imported advisories.
    Status {
        #[command(flatten)]
        args: ServeArgs,
        /// text, json or yaml.
        #[arg(long, default_value = "text")]
        output: String,
    },
}

#[derive(Subcommand)]
enum TokenKeyCommand {
    /// Make a new signing key; tokens signed by the old one stay valid until they expire.
    Rotate(ServeArgs),
}

#[derive(Subcommand)]
enum EventsCommand {
    /// List events, newest first.
    List {
        #[command(flatten)]
        args: ServeArgs,
        /// Only events of this kind (repeatable), e.g. artifact.pushed, tag.deleted, login.failed.
        #[arg(long)]
        kind: Vec<String>,
        /// Only events of this project.
        #[arg(long)]
        project: Option<String>,
        /// Only events of this repository (full name, e.g. library/app).
        #[arg(long)]
        repo: Option<String>,
        /// Only events by this user or robot.
        #[arg(long)]
        actor: Option<String>,
        /// Only events after this sequence number.
        #[arg(long)]
        after: Option<i64>,
        /// Only events from the last DURATION (e.g. 30m, 2h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// text, json or yaml.
        #[arg(long, default_value = "text")]
        output: String,
    },
    /// Where each consumer stands in the log, and how far behind it is.
    Consumers {
        #[command(flatten)]
        args: ServeArgs,
        /// text, json or yaml.
        #[arg(long, default_value = "text")]
        output: String,
    },
}

#[derive(Subcommand)]
enum JobsCommand {
    /// List jobs, newest first.
    List {
        #[command(flatten)]
        args: ServeArgs,
        /// Only jobs in this state: queued, running, succeeded, failed, cancelled.
        #[arg(long)]
        state: Option<String>,
        /// Only jobs of this kind, e.g. upload-expiry.
        #[arg(long)]
        kind: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// text, json or yaml.
        #[arg(long, default_value = "text")]
        output: String,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration — a file (if given), the BERTH_… environment, the flags —
    /// every key, and the TLS files; print the effective settings with their sources
    /// (secrets redacted).
    Check {
        /// The file (default: $BERTH_CONFIG, or none).
        file: Option<PathBuf>,
        #[command(flatten)]
        args: ServeArgs,
        /// toml or json.
        #[arg(long, default_value = "toml")]
        output: String,
    },
}

fn overrides(args: &ServeArgs) -> Overrides {
    Overrides {
        listen: args.listen.clone(),
        data_dir: args.data_dir.clone(),
        tls_cert: args.tls_cert.clone(),
        tls_key: args.tls_key.clone(),
        log_format: args.log_format.clone(),
        role: args.role.clone(),
    }
}

fn load(args: &ServeArgs) -> anyhow::Result<Config> {
    Ok(Config::load(args.config.as_deref(), std::env::vars(), &overrides(args))?)
}

/// `--output` of the offline commands: `true` for json or yaml, `false` for text (or
/// table); anything else is an error.
fn wants_structured(output: &str) -> anyhow::Result<bool> {
    match output {
        "text" | "table" => Ok(false),
        "json" | "yaml" | "yml" => Ok(true),
        other => anyhow::bail!("--output {other:?}: use text, json or yaml"),
    }
}

/// Print `v` as `output` (json or yaml) asks.
fn print_structured(output: &str, v: serde_json::Value) -> anyhow::Result<()> {
    if output == "json" {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", serde_norway::to_string(&v)?);
    }
    Ok(())
}

/// Write to stdout; a reader that went away (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().write_all(bytes) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Log to stderr through [`berth::logsink`]: a request's log line costs an append to a
/// buffer that a thread writes out every 20 ms; lines still buffered are written when the
/// returned guard drops.
fn init_logging(cfg: &Config) -> berth::logsink::LogGuard {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (sink, guard) = berth::logsink::LogSink::start(std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(move || sink.clone()).with_ansi(ansi);
    match cfg.log_format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).init(),
        LogFormat::Text => builder.init(),
    }
    guard
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// glibc's malloc serves buffers of 128 KiB and more from their own maps, which `free`
/// returns to the system; but after the first such free it raises that threshold (up to
/// 32 MiB), and later large buffers (a password hash's 19 MiB, a decompression window, a big
/// manifest) come from arenas that keep the memory resident for good. Fixing the threshold at
/// 1 MiB keeps idle memory idle. Fixing it also fixes the trim threshold (free memory at the
/// top of the heap given back), which would otherwise stay at 128 KiB: every request's
/// buffers would be returned and faulted in again (zeroed pages) over and over; 32 MiB, as
/// the adaptive setting would reach.
fn pin_malloc_thresholds() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called first thing, before any thread.
    #[expect(unsafe_code, reason = "glibc's mallopt has no safe wrapper")]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 4 << 20);
    }
}

fn main() -> std::process::ExitCode {
    // The error and its causes in one line, never a stack trace (whatever RUST_BACKTRACE says):
    // these are messages for people running a command.
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    pin_malloc_thresholds();
    // Files Berth creates (database, blobs, uploads, keys) are private to its user.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    match cli.command {
        Command::Serve(args) => {
            let cfg = load(&args)?;
            let _log = init_logging(&cfg);
            rt.block_on(async {
                let running = berth::start(&cfg).await?;
                let handle = running.handle();
                tokio::spawn(async move {
                    shutdown_signal().await;
                    tracing::info!("shutting down");
                    handle.graceful_shutdown(Some(Duration::from_secs(10)));
                });
                running.wait().await
            })
        }
        Command::Backup { to, args } => {
            let cfg = load(&args)?;
            rt.block_on(async {
                let t = std::time::Instant::now();
                let st = berth::backup::backup(&cfg, &to).await?;
                println!(
                    "backed up {} blobs ({} MiB) and the database to {} in {:.1} s",
                    st.blobs,
                    st.bytes >> 20,
                    to.display(),
                    t.elapsed().as_secs_f64()
                );
                Ok(())
            })
        }
        Command::Scrub { all, rate, list, args } => {
            let cfg = load(&args)?;
            rt.block_on(async {
                berth::require_meta(&cfg)?;
                let registry = berth::open_registry(&cfg).await?;
                if !list {
                    let rate = if rate.trim() == "0" { 0 } else { berth::cli::parse_size(&rate)? as u64 };
                    let opts = berth_registry::ScrubOptions {
                        rate,
                        recheck_after: if all { Duration::ZERO } else { berth::jobs::SCRUB_RECHECK },
                        max_time: None,
                    };
                    let r = registry.scrub(&opts).await?;
                    println!(
                        "checked {} blobs ({}) in {:.1} s: {} quarantined",
                        r.checked,
                        berth_types::human_bytes(r.bytes),
                        r.duration_ms as f64 / 1000.0,
                        r.quarantined.len()
                    );
                }
                let q = registry.quarantined().await?;
                if !q.is_empty() {
                    println!("{:<71}  {:<32}  REASON", "QUARANTINED BLOB", "REPOSITORIES");
                    for (d, reason, repos) in &q {
                        let repos = if repos.is_empty() { "(none: GC frees it)".to_owned() } else { repos.join(",") };
                        println!("{d:<71}  {repos:<32}  {reason}");
                    }
                } else if list {
                    println!("no blob is quarantined");
                }
                Ok(())
            })
        }
        Command::Restore { from, args } => {
            let cfg = load(&args)?;
            rt.block_on(async {
                let st = berth::backup::restore(&cfg, &from).await?;
                println!(
                    "restored {} blobs ({} MiB) and the database into {}",
                    st.blobs,
                    st.bytes >> 20,
                    cfg.data_dir.display()
                );
                Ok(())
            })
        }
        Command::Migrate(args) => {
            let cfg = load(&args)?;
            let _log = init_logging(&cfg);
            let created = match &cfg.metadata {
                berth_config::MetadataConfig::Sqlite { path } => !path.exists(),
                berth_config::MetadataConfig::Postgres { .. } => false,
            };
            rt.block_on(async {
                berth::open_registry(&cfg).await?;
                let what = berth::describe_meta(&cfg);
                if created {
                    println!("created {what}");
                } else {
                    println!("{what} is up to date");
                }
                Ok(())
            })
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "berth", &mut out);
            write_stdout(&out)
        }
        Command::Healthcheck { url } => rt.block_on(cli::healthcheck(url)),
        Command::Man => {
            let mut out = Vec::new();
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut out)?;
            write_stdout(&out)
        }
        Command::Admin { command: AdminCommand::ResetPassword { args, username, password_stdin } } => {
            let cfg = load(&args)?;
            let given = if password_stdin {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).context("reading the password from stdin")?;
                let pw = line.trim_end_matches(['\n', '\r']).to_owned();
                anyhow::ensure!(!pw.is_empty(), "no password on stdin");
                Some(pw)
            } else {
                None
            };
            rt.block_on(async {
                let meta = berth::open_meta_existing(&cfg).await?;
                let auth = berth::open_auth(&cfg, meta).await?;
                match auth.reset_password(&username, given.as_deref()).await? {
                    Some(generated) => println!("new password of {username}: {generated}"),
                    None => println!("set the password of {username}"),
                }
                println!(
                    "(running servers take it within seconds; web sessions and refresh tokens issued before it end)"
                );
                Ok(())
            })
        }
        Command::Admin { command: AdminCommand::Fill { args, options } } => {
            let cfg = load(&args)?;
            rt.block_on(async {
                berth::require_meta(&cfg)?;
                berth::fill::fill(&cfg, &options).await
            })
        }
        Command::Events {
            command: EventsCommand::List { args, kind, project, repo, actor, after, since, limit, output },
        } => {
            let cfg = load(&args)?;
            let kinds = kind
                .iter()
                .map(|k| {
                    k.parse::<berth_meta::EventKind>().map_err(|_| {
                        let all: Vec<_> = berth_meta::EventKind::ALL.iter().map(|k| k.as_str()).collect();
                        anyhow::anyhow!("unknown event kind {k:?}; the kinds are: {}", all.join(", "))
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let since = since
                .map(|s| {
                    humantime::parse_duration(&s)
                        .map_err(|e| anyhow::anyhow!("--since {s:?} is not a duration such as 30m, 2h or 7d: {e}"))
                })
                .transpose()?
                .map(|d| berth_auth::now_ms() - d.as_millis() as i64);
            let q = berth_meta::EventQuery { kinds, project, repo, actor, after, since, limit: limit.clamp(1, 10_000) };
            rt.block_on(async {
                use berth_meta::EventLog;
                let meta = berth::open_meta_existing(&cfg).await?;
                let events = meta.query_events(&q).await?;
                if wants_structured(&output)? {
                    let v: Vec<_> = events.iter().map(berth::event_json).collect();
                    print_structured(&output, serde_json::to_value(&v)?)?;
                } else {
                    print!("{}", berth::events_table(&events));
                }
                Ok(())
            })
        }
        Command::Events { command: EventsCommand::Consumers { args, output } } => {
            let cfg = load(&args)?;
            rt.block_on(async {
                use berth_meta::EventLog;
                let meta = berth::open_meta_existing(&cfg).await?;
                let last = meta.last_event_seq().await?;
                let cursors = meta.consumer_cursors().await?;
                if wants_structured(&output)? {
                    let v: Vec<_> = cursors
                        .iter()
                        .map(|c| {
                            serde_json::json!({
                                "consumer": c.consumer, "seq": c.seq, "behind": (last - c.seq).max(0),
                                "updated_at": berth_auth::rfc3339(c.updated_at),
                            })
                        })
                        .collect();
                    print_structured(&output, serde_json::json!({"last_seq": last, "consumers": v}))?;
                } else {
                    println!("last event: {last}");
                    println!("{:<16}  {:>10}  {:>8}  UPDATED", "CONSUMER", "AT", "BEHIND");
                    for c in &cursors {
                        println!(
                            "{:<16}  {:>10}  {:>8}  {}",
                            c.consumer,
                            c.seq,
                            (last - c.seq).max(0),
                            berth_auth::rfc3339(c.updated_at)
                        );
                    }
                }
                Ok(())
            })
        }
        Command::Jobs { command: JobsCommand::List { args, state, kind, limit, output } } => {
            let cfg = load(&args)?;
            let state = state.map(|s| s.parse::<berth_jobs::JobState>()).transpose()?;
            rt.block_on(async {
                let jobs = berth_jobs::Jobs::new(berth::open_meta_existing(&cfg).await?);
                let jobs = jobs.list(kind.as_deref(), state, limit).await?;
                if wants_structured(&output)? {
                    let v: Vec<_> = jobs
                        .iter()
                        .map(|j| {
                            serde_json::json!({
                                "id": j.id, "kind": j.kind, "state": j.state.as_str(), "attempts": j.attempts,
                                "max_attempts": j.max_attempts, "last_error": j.last_error, "lease_owner": j.lease_owner,
                                "created_at": j.created_at, "updated_at": j.updated_at, "finished_at": j.finished_at,
                            })
                        })
                        .collect();
                    print_structured(&output, serde_json::to_value(&v)?)?;
                } else {
                    println!("{:<36}  {:<16}  {:<10}  {:>8}  ERROR", "ID", "KIND", "STATE", "ATTEMPTS");
                    for j in &jobs {
                        println!(
                            "{:<36}  {:<16}  {:<10}  {:>8}  {}",
                            j.id,
                            j.kind,
                            j.state.as_str(),
                            format!("{}/{}", j.attempts, j.max_attempts),
                            j.last_error.as_deref().unwrap_or("")
                        );
                    }
                }
                Ok(())
            })
        }
        Command::Project { api, command } => rt.block_on(cli::project(&api, command)),
        Command::Robot { api, command } => rt.block_on(cli::robot(&api, command)),
        Command::User { api, command } => rt.block_on(cli::user(&api, command)),
        Command::Audit { api, command } => rt.block_on(cli::audit(&api, command)),
        Command::Gc { api, command } => rt.block_on(cli::gc(&api, command)),
        Command::Quota { api, command } => rt.block_on(cli::quota(&api, command)),
        Command::Immutable { api, command } => rt.block_on(cli::immutable(&api, command)),
        Command::Lifecycle { api, command } => rt.block_on(cli::lifecycle(&api, command)),
        Command::Retention { api, command } => rt.block_on(cli::retention(&api, command)),
        Command::Label { api, command } => rt.block_on(cli::label(&api, command)),
        Command::AccessKey { api, robot, command } => rt.block_on(cli::access_key(&api, robot.as_deref(), command)),
        Command::Registry { api, command } => rt.block_on(cli::registry(&api, command)),
        Command::Replication { api, command } => rt.block_on(cli::replication(&api, command)),
        Command::Webhook { api, command } => rt.block_on(cli::webhook(&api, command)),
        Command::Signature { api, command } => rt.block_on(cli::signature(&api, command)),
        Command::Export { api, command } => rt.block_on(cli::export(&api, command)),
        Command::Allowlist { api, command } => rt.block_on(cli::allowlist(&api, command)),
        Command::Job { api, command } => rt.block_on(cli::job(&api, command)),
        Command::Repo { api, command } => rt.block_on(cli::repo(&api, command)),
        Command::Artifact { api, command } => rt.block_on(cli::artifact(&api, command)),
        Command::Scan { api, command } => rt.block_on(cli::scan(&api, command)),
        Command::Usage { api, project, from, to } => rt.block_on(cli::usage(&api, project, from, to)),
        Command::LoginPassword { api } => rt.block_on(cli::login_password(&api)),
        Command::Vulndb { command: VulndbCommand::Import { path, args, output } } => {
            let cfg = load(&args)?;
            rt.block_on(async {
                let meta = berth::open_meta_existing(&cfg).await?;
                let started = std::time::Instant::now();
                let bar = cli::spinner(&format!("importing advisories from {}", path.display()));
                let stats = berth_scanner::import(&meta, &path).await;
                bar.finish_and_clear();
                let stats = stats?;
                if wants_structured(&output)? {
                    print_structured(&output, serde_json::to_value(&stats)?)?;
                } else {
                    println!(
                        "imported {} advisories ({} withdrawn, {} invalid skipped) from {} source(s) in {:.1} s: {}",
                        stats.records,
                        stats.withdrawn,
                        stats.invalid,
                        stats.sources.len(),
                        started.elapsed().as_secs_f64(),
                        stats.sources.join(", ")
                    );
                    println!("generation {}; stored reports are re-evaluated by the worker", stats.generation);
                }
                Ok(())
            })
        }
        Command::Vulndb { command: VulndbCommand::Status { args, output } } => {
            let cfg = load(&args)?;
            rt.block_on(async {
                let scanning = berth_scanner::Scanning::new(berth::open_meta_existing(&cfg).await?);
                let (sources, generation) = scanning.vulndb_status().await?;
                let now = berth_auth::now_ms();
                if wants_structured(&output)? {
                    let v: Vec<_> = sources
                        .iter()
                        .map(|s| {
                            serde_json::json!({
                                "name": s.name, "location": s.location, "imported_at": berth_auth::rfc3339(s.imported_at),
                                "age_seconds": (now - s.imported_at) / 1000, "records": s.records, "withdrawn": s.withdrawn,
                                "newest_modified": s.newest_modified,
                            })
                        })
                        .collect();
                    print_structured(&output, serde_json::json!({"generation": generation, "sources": v}))?;
                } else if sources.is_empty() {
                    println!("no advisories imported yet: berth vulndb import PATH");
                } else {
                    println!("generation {generation}");
                    println!("{:<32}  {:>8}  {:>9}  {:<20}  {:<10}  NEWEST RECORD", "SOURCE", "RECORDS", "WITHDRAWN", "IMPORTED", "AGE");
                    for s in &sources {
                        let age = (now - s.imported_at).max(0) / 1000;
                        println!(
                            "{:<32}  {:>8}  {:>9}  {:<20}  {:<10}  {}",
                            s.name,
                            s.records,
                            s.withdrawn,
                            berth_auth::rfc3339(s.imported_at),
                            format!("{}d {}h", age / 86_400, age % 86_400 / 3600),
                            s.newest_modified
                        );
                    }
                }
                Ok(())
            })
        }
        Command::TokenKey { command: TokenKeyCommand::Rotate(args) } => {
            let cfg = load(&args)?;
            rt.block_on(async {
                let meta = berth::open_meta_existing(&cfg).await?;
                let auth = berth::open_auth(&cfg, meta).await?;
                let kid = auth.rotate_signing_key().await?;
                println!("new token signing key {kid}; replicas pick it up on the next unknown key id or restart");
                Ok(())
            })
        }
        Command::Config { command: ConfigCommand::Check { file, args, output } } => {
            anyhow::ensure!(output == "toml" || output == "json", "--output {output:?}: use toml or json");
            let file = file.or(args.config.clone());
            let what = match &file {
                Some(f) => f.display().to_string(),
                None => "the configuration (no file; BERTH_… variables and flags)".to_owned(),
            };
            let (cfg, settings) = Config::explain(file.as_deref(), std::env::vars(), &overrides(&args))
                .with_context(|| format!("{what} is not valid"))?;
            if let Some(t) = &cfg.tls {
                berth::tls_config(t).with_context(|| format!("{what} is not valid"))?;
            }
            if output == "json" {
                let v = serde_json::json!({"valid": true, "file": file, "settings": settings});
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("# {what} is valid; the effective settings, each with where it came from:");
                print!("{}", berth_config::to_toml(&settings));
            }
            Ok(())
        }
    }
}
