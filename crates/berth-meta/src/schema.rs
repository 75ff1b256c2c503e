//! Schema migrations, portable between SQLite and PostgreSQL.
//!
//! Each entry runs once, in order, inside a transaction, and is recorded in
//! `berth_migrations`. Never edit an entry that has shipped: add a new one.
//!
//! Placeholders filled per backend: `{BYTES}` (SQLite `BLOB`, PostgreSQL `BYTEA`) and `{NAME}`
//! (a text column compared and sorted byte-wise: SQLite `TEXT`, PostgreSQL `TEXT COLLATE "C"`),
//! so tag and repository listings have the same lexical order everywhere. `{SERIAL}` is an
//! auto-incrementing 64-bit primary key (SQLite `INTEGER PRIMARY KEY AUTOINCREMENT`,
//! PostgreSQL `BIGSERIAL PRIMARY KEY`).

/// `(version, statements)`, applied in order.
pub const MIGRATIONS: &[(i64, &[&str])] = &[
    (
        1,
        &[
            "CREATE TABLE repositories (name {NAME} PRIMARY KEY, created_at BIGINT NOT NULL)",
            "CREATE TABLE blobs (digest TEXT PRIMARY KEY, size BIGINT NOT NULL, created_at BIGINT NOT NULL)",
            "CREATE TABLE repo_blobs (repo TEXT NOT NULL, digest TEXT NOT NULL, created_at BIGINT NOT NULL,
            PRIMARY KEY (repo, digest))",
            "CREATE INDEX repo_blobs_digest ON repo_blobs (digest)",
            "CREATE TABLE manifests (repo TEXT NOT NULL, digest TEXT NOT NULL, media_type TEXT NOT NULL,
            artifact_type TEXT, size BIGINT NOT NULL, subject TEXT, annotations TEXT,
            created_at BIGINT NOT NULL, PRIMARY KEY (repo, digest))",
            "CREATE INDEX manifests_subject ON manifests (repo, subject)",
            "CREATE TABLE manifest_refs (repo TEXT NOT NULL, digest TEXT NOT NULL, child TEXT NOT NULL,
            kind TEXT NOT NULL, PRIMARY KEY (repo, digest, child, kind))",
            "CREATE INDEX manifest_refs_child ON manifest_refs (child)",
            "CREATE TABLE tags (repo TEXT NOT NULL, name {NAME} NOT NULL, digest TEXT NOT NULL,
            updated_at BIGINT NOT NULL, PRIMARY KEY (repo, name))",
            "CREATE INDEX tags_digest ON tags (repo, digest)",
            "CREATE TABLE uploads (id TEXT PRIMARY KEY, repo TEXT NOT NULL, created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL)",
            "CREATE INDEX uploads_updated ON uploads (updated_at)",
            "CREATE TABLE manifest_content (digest TEXT PRIMARY KEY, content {BYTES} NOT NULL)",
        ],
    ),
    (
        2,
        &[
            "CREATE TABLE jobs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, payload TEXT NOT NULL, dedup_key TEXT,
            state TEXT NOT NULL, attempts BIGINT NOT NULL, max_attempts BIGINT NOT NULL,
            run_after BIGINT NOT NULL, lease_owner TEXT, lease_until BIGINT, last_error TEXT,
            created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, finished_at BIGINT)",
            "CREATE INDEX jobs_claim ON jobs (kind, state, run_after)",
            "CREATE UNIQUE INDEX jobs_dedup ON jobs (dedup_key)
            WHERE dedup_key IS NOT NULL AND state IN ('queued', 'running')",
        ],
    ),
    (
        3,
        &[
            "CREATE TABLE users (id {SERIAL}, username {NAME} NOT NULL UNIQUE, email TEXT NOT NULL,
            realname TEXT NOT NULL, comment TEXT NOT NULL, password_hash TEXT, sysadmin BIGINT NOT NULL,
            cli_secret_hash TEXT, cli_secret_at BIGINT, oidc_subject TEXT UNIQUE, groups TEXT NOT NULL,
            created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)",
            "CREATE TABLE projects (id {SERIAL}, name {NAME} NOT NULL UNIQUE, owner_id BIGINT NOT NULL,
            public BIGINT NOT NULL, metadata TEXT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)",
            "CREATE TABLE project_members (id {SERIAL}, project_id BIGINT NOT NULL, entity_type TEXT NOT NULL,
            user_id BIGINT, group_name TEXT, role_id BIGINT NOT NULL, created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL)",
            "CREATE UNIQUE INDEX project_members_user ON project_members (project_id, user_id)
            WHERE user_id IS NOT NULL",
            "CREATE UNIQUE INDEX project_members_group ON project_members (project_id, group_name)
            WHERE group_name IS NOT NULL",
            "CREATE TABLE robots (id {SERIAL}, name {NAME} NOT NULL UNIQUE, description TEXT NOT NULL,
            project_id BIGINT, secret_hash TEXT NOT NULL, disabled BIGINT NOT NULL, duration BIGINT NOT NULL,
            expires_at BIGINT NOT NULL, permissions TEXT NOT NULL, creator TEXT NOT NULL,
            created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)",
            "CREATE TABLE repo_policies (repo {NAME} PRIMARY KEY, document TEXT NOT NULL, updated_at BIGINT NOT NULL)",
            "CREATE TABLE audit_log (id {SERIAL}, op_time BIGINT NOT NULL, username TEXT NOT NULL,
            operation TEXT NOT NULL, resource_type TEXT NOT NULL, resource TEXT NOT NULL, project TEXT,
            client_ip TEXT, result TEXT NOT NULL, detail TEXT)",
            "CREATE INDEX audit_log_time ON audit_log (op_time)",
            "CREATE INDEX audit_log_project ON audit_log (project, op_time)",
            "CREATE TABLE signing_keys (kid TEXT PRIMARY KEY, private_key {BYTES} NOT NULL,
            created_at BIGINT NOT NULL, retired_at BIGINT)",
            "ALTER TABLE repositories ADD COLUMN pull_count BIGINT NOT NULL DEFAULT 0",
        ],
    ),
    (
        4,
        &[
            "CREATE TABLE vuln_records (id TEXT PRIMARY KEY, source TEXT NOT NULL, modified TEXT NOT NULL,
            record TEXT NOT NULL)",
            "CREATE INDEX vuln_records_source ON vuln_records (source)",
            "CREATE TABLE vuln_sources (name TEXT PRIMARY KEY, location TEXT NOT NULL, imported_at BIGINT NOT NULL,
            records BIGINT NOT NULL, withdrawn BIGINT NOT NULL, newest_modified TEXT NOT NULL)",
            "CREATE TABLE vuln_generation (id BIGINT PRIMARY KEY, generation BIGINT NOT NULL)",
            "INSERT INTO vuln_generation (id, generation) VALUES (1, 0)",
            "CREATE TABLE inventories (digest TEXT PRIMARY KEY, inventory TEXT NOT NULL, created_at BIGINT NOT NULL)",
            "CREATE TABLE scan_reports (digest TEXT PRIMARY KEY, repo TEXT NOT NULL, status TEXT NOT NULL,
            error TEXT, report TEXT, generation BIGINT NOT NULL, started_at BIGINT, finished_at BIGINT)",
            "CREATE TABLE cve_allowlist (scope TEXT NOT NULL, cve_id TEXT NOT NULL, expires_at BIGINT NOT NULL,
            PRIMARY KEY (scope, cve_id))",
        ],
    ),
    (
        5,
        &[
            // When a password or secret last changed: refresh tokens and sessions from before are void.
            "ALTER TABLE users ADD COLUMN credentials_at BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE robots ADD COLUMN credentials_at BIGINT NOT NULL DEFAULT 0",
        ],
    ),
    (
        6,
        &[
            // The event log (`events.rs`): every state change, in commit order.
            "CREATE TABLE events (seq {SERIAL}, at BIGINT NOT NULL, kind TEXT NOT NULL, actor TEXT NOT NULL,
            client_ip TEXT, project TEXT, repo TEXT, digest TEXT, tag TEXT, data TEXT NOT NULL)",
            "CREATE INDEX events_at ON events (at)",
            "CREATE INDEX events_repo ON events (repo, seq)",
            "CREATE TABLE event_cursors (consumer TEXT PRIMARY KEY, seq BIGINT NOT NULL, updated_at BIGINT NOT NULL)",
            // Pull times, kept by the `pulls` consumer.
            "ALTER TABLE repositories ADD COLUMN pull_time BIGINT",
            "ALTER TABLE manifests ADD COLUMN pull_time BIGINT",
        ],
    ),
    (
        7,
        &[
            // Who opened each upload session, so sessions can be capped per account.
            "ALTER TABLE uploads ADD COLUMN owner TEXT NOT NULL DEFAULT ''",
            "CREATE INDEX uploads_repo ON uploads (repo)",
            "CREATE INDEX uploads_owner ON uploads (owner)",
        ],
    ),
    (
        8,
        &[
            // The latest pull through each tag, kept by the `pulls` consumer.
            "ALTER TABLE tags ADD COLUMN pull_time BIGINT",
        ],
    ),
    (
        9,
        &[
            // Garbage collection (`gc.rs`): a blob reserved by an upload that is committing
            // its bytes is not collected before this time (Unix ms).
            "ALTER TABLE blobs ADD COLUMN pending_until BIGINT",
            "CREATE TABLE gc_runs (id {SERIAL}, run_kind TEXT NOT NULL, parameters TEXT NOT NULL,
            status TEXT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, result TEXT,
            log TEXT NOT NULL)",
            "CREATE TABLE schedules (name TEXT PRIMARY KEY, kind TEXT NOT NULL, cron TEXT, parameters TEXT NOT NULL,
            next_at BIGINT, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)",
        ],
    ),
    (
        10,
        &[
            // Quotas (`quota.rs`): per project, each object (blob or manifest digest) once,
            // with how many links hold it; filled from existing links after migrating.
            "CREATE TABLE quota_objects (project {NAME} NOT NULL, digest TEXT NOT NULL, size BIGINT NOT NULL,
            refs BIGINT NOT NULL, PRIMARY KEY (project, digest))",
            "CREATE TABLE quotas (project {NAME} PRIMARY KEY, hard BIGINT NOT NULL, used BIGINT NOT NULL,
            updated_at BIGINT NOT NULL)",
        ],
    ),
    (
        11,
        &[
            // Fences (`gc.rs`): while `berth backup` holds the `gc` fence, no blob bytes are deleted.
            "CREATE TABLE fences (name TEXT PRIMARY KEY, holder TEXT NOT NULL, until_at BIGINT NOT NULL)",
        ],
    ),
    (
        12,
        &[
            // Tag immutability: Harbor's rules per project (`rule`: its JSON), ECR's setting per
            // repository (`config`: its JSON).
            "CREATE TABLE immutable_rules (id {SERIAL}, project {NAME} NOT NULL, rule TEXT NOT NULL,
            created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)",
            "CREATE INDEX immutable_rules_project ON immutable_rules (project)",
            "CREATE TABLE tag_mutability (repo {NAME} PRIMARY KEY, config TEXT NOT NULL, updated_at BIGINT NOT NULL)",
        ],
    ),
    (
        13,
        &[
            // Scrub: when a blob's bytes were last re-hashed, and why it is quarantined (its
            // bytes do not match its digest, or are missing): never served while set.
            "ALTER TABLE blobs ADD COLUMN checked_at BIGINT",
            "ALTER TABLE blobs ADD COLUMN quarantined TEXT",
        ],
    ),
    (
        14,
        &[
            // Usage metering (the `usage` consumer): per project and UTC day.
            "CREATE TABLE usage_daily (project {NAME} NOT NULL, day BIGINT NOT NULL, stored_bytes BIGINT NOT NULL,
            pushed_bytes BIGINT NOT NULL, pulled_bytes BIGINT NOT NULL, pushes BIGINT NOT NULL, pulls BIGINT NOT NULL,
            PRIMARY KEY (project, day))",
        ],
    ),
    (
        15,
        &[
            // Lifecycle (per repository) and retention (per project) policies, and their runs
            // (`policy.rs`).
            "CREATE TABLE policies (id {SERIAL}, kind TEXT NOT NULL, scope {NAME} NOT NULL, document TEXT NOT NULL,
            created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, evaluated_at BIGINT, UNIQUE (kind, scope))",
            "CREATE TABLE policy_runs (id {SERIAL}, policy_id BIGINT NOT NULL, kind TEXT NOT NULL,
            trigger_kind TEXT NOT NULL, dry_run BIGINT NOT NULL, status TEXT NOT NULL, document TEXT NOT NULL,
            created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, result TEXT)",
            "CREATE INDEX policy_runs_policy ON policy_runs (policy_id, kind)",
        ],
    ),
    (
        16,
        &[
            // "Which manifests of this repository reference X" (parents of a child manifest,
            // GC's is-it-still-referenced checks) without walking the repository's references:
            // `manifest_refs_child` alone is a scan when one layer is shared by many manifests,
            // and SQLite prefers the covering primary key to an index it must look up from.
            "CREATE INDEX manifest_refs_repo_child ON manifest_refs (repo, child, kind, digest)",
        ],
    ),
    (
        17,
        &[
            // Harbor's labels (`label.rs`): global (`g`, project '') or per project (`p`), and
            // which artifacts carry them.
            "CREATE TABLE labels (id {SERIAL}, name {NAME} NOT NULL, description TEXT NOT NULL, color TEXT NOT NULL,
            scope TEXT NOT NULL, project {NAME} NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
            UNIQUE (scope, project, name))",
            "CREATE TABLE artifact_labels (repo {NAME} NOT NULL, digest TEXT NOT NULL, label_id BIGINT NOT NULL,
            created_at BIGINT NOT NULL, PRIMARY KEY (repo, digest, label_id))",
            "CREATE INDEX artifact_labels_label ON artifact_labels (label_id)",
        ],
    ),
    (
        18,
        &[
            // Other registries (`upstream.rs`): the upstreams of proxy caches and the ends of
            // replication. `secret` is sealed under a key outside the database.
            "CREATE TABLE upstreams (id {SERIAL}, name {NAME} NOT NULL UNIQUE, kind TEXT NOT NULL, url TEXT NOT NULL,
            description TEXT NOT NULL, insecure BIGINT NOT NULL, access_key TEXT NOT NULL, secret TEXT, ca_pem TEXT,
            status TEXT NOT NULL, checked_at BIGINT, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)",
        ],
    ),
    (
        19,
        &[
            // Pull-through caches (`upstream.rs`): repositories under `prefix` are fetched from
            // an upstream (Harbor's proxy-cache projects: the prefix is the project).
            "CREATE TABLE cache_rules (prefix {NAME} PRIMARY KEY, upstream_id BIGINT NOT NULL,
            upstream_prefix TEXT NOT NULL, ttl_ms BIGINT NOT NULL, created_at BIGINT NOT NULL)",
        ],
    ),
    (
        20,
        &[
            // Replication (`replication.rs`): policies as documents, runs, one task per artifact.
            "CREATE TABLE replication_policies (id {SERIAL}, name {NAME} NOT NULL UNIQUE, document TEXT NOT NULL,
            created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)",
            "CREATE TABLE replication_executions (id {SERIAL}, policy_id BIGINT NOT NULL, trigger TEXT NOT NULL,
            status TEXT NOT NULL, status_text TEXT NOT NULL, started_at BIGINT NOT NULL, ended_at BIGINT)",
            "CREATE INDEX replication_executions_policy ON replication_executions (policy_id, id)",
            "CREATE TABLE replication_tasks (id {SERIAL}, execution_id BIGINT NOT NULL, resource_type TEXT NOT NULL,
            src_resource TEXT NOT NULL, dst_resource TEXT NOT NULL, operation TEXT NOT NULL, status TEXT NOT NULL,
            log TEXT NOT NULL, started_at BIGINT, ended_at BIGINT, UNIQUE (execution_id, src_resource))",
        ],
    ),
    (
        21,
        &[
            // When a user first signed in (NULL: never): `BERTH_ADMIN_PASSWORD` applies to an
            // admin who never has.
            "ALTER TABLE users ADD COLUMN first_login_at BIGINT",
        ],
    ),
    (
        22,
        &[
            // Pulls per artifact (the repository's total is in `repositories.pull_count`).
            "ALTER TABLE manifests ADD COLUMN pull_count BIGINT NOT NULL DEFAULT 0",
        ],
    ),
    (
        23,
        &[
            // Repeated identical audit entries (a CI job pulling the same tag all day) are one
            // entry with a count.
            "ALTER TABLE audit_log ADD COLUMN repeats BIGINT NOT NULL DEFAULT 1",
        ],
    ),
    (
        24,
        &[
            // CVE exports (Harbor's /export/cve): who asked, for what, and the CSV made.
            "CREATE TABLE cve_exports (id {SERIAL}, user_id BIGINT NOT NULL, user_name TEXT NOT NULL,
            request TEXT NOT NULL, status TEXT NOT NULL, status_text TEXT NOT NULL, started_at BIGINT NOT NULL,
            ended_at BIGINT, csv TEXT)",
        ],
    ),
    (
        25,
        &[
            // Settings changed at run time (Harbor's PUT /configurations), over berth.toml's.
            "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at BIGINT NOT NULL)",
        ],
    ),
    (
        26,
        &[
            // Access keys (AWS SigV4, the ECR API) of users and robots; the secret sealed
            // under the key file (SigV4 needs it back to verify a signature).
            "CREATE TABLE access_keys (id TEXT PRIMARY KEY, account TEXT NOT NULL, secret TEXT NOT NULL,
            active BIGINT NOT NULL, created_at BIGINT NOT NULL, last_used_at BIGINT)",
            "CREATE INDEX access_keys_account ON access_keys (account)",
        ],
    ),
    (
        27,
        &[
            // Per-repository settings of the ECR API (`kind`: `scanning` for scanOnPush,
            // `tags` for resource tags), each a JSON document.
            "CREATE TABLE repo_settings (repo {NAME} NOT NULL, kind TEXT NOT NULL, config TEXT NOT NULL,
            updated_at BIGINT NOT NULL, PRIMARY KEY (repo, kind))",
        ],
    ),
    (
        28,
        &[
            // The identity tokens a robot accepts instead of its secret (workload identity
            // federation): trust rules as JSON.
            "CREATE TABLE robot_federation (robot_id BIGINT PRIMARY KEY, config TEXT NOT NULL,
            updated_at BIGINT NOT NULL)",
        ],
    ),
    (
        29,
        &[
            // Webhooks (Harbor's webhook policies): a project's receivers, and one delivery per
            // (policy, event, target), created by the `webhooks` consumer (`webhook.rs`).
            "CREATE TABLE webhook_policies (id {SERIAL}, project {NAME} NOT NULL, name TEXT NOT NULL,
            description TEXT NOT NULL, enabled BIGINT NOT NULL, event_types TEXT NOT NULL, targets TEXT NOT NULL,
            secret TEXT NOT NULL, creator TEXT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
            UNIQUE (project, name))",
            "CREATE TABLE webhook_deliveries (id {SERIAL}, policy_id BIGINT NOT NULL, seq BIGINT NOT NULL,
            target BIGINT NOT NULL, event_type TEXT NOT NULL, notify_type TEXT NOT NULL, address TEXT NOT NULL,
            payload TEXT NOT NULL, status TEXT NOT NULL, attempts BIGINT NOT NULL, next_at BIGINT NOT NULL,
            holder TEXT, lease_until BIGINT, last_code BIGINT, log TEXT NOT NULL, created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL, ended_at BIGINT, UNIQUE (policy_id, seq, target))",
            "CREATE INDEX webhook_deliveries_open ON webhook_deliveries (status, next_at)",
            "CREATE INDEX webhook_deliveries_head ON webhook_deliveries (policy_id, target, status, id)",
        ],
    ),
    (
        30,
        &[
            // A project's signature policy (`signature.rs`): an empty document is none.
            "CREATE TABLE signature_policies (project {NAME} PRIMARY KEY, document TEXT NOT NULL,
            version BIGINT NOT NULL, updated_at BIGINT NOT NULL)",
        ],
    ),
    (
        31,
        &[
            // Harbor's user groups (`/usergroups`): `member_key` is what project members and a
            // user's groups name — an LDAP group's DN (lowercased), else the group's name.
            "CREATE TABLE user_groups (id {SERIAL}, name TEXT NOT NULL, group_type BIGINT NOT NULL,
            ldap_group_dn TEXT NOT NULL, member_key TEXT NOT NULL UNIQUE, created_at BIGINT NOT NULL)",
        ],
    ),
    (
        32,
        &[
            // Repeated entries (pulls) merge into the latest identical one of the last hour:
            // found by resource, newest first, not by a walk of the hour's entries.
            "CREATE INDEX audit_log_resource ON audit_log (resource, id)",
            // Pages of a repository's artifacts, newest first (in the listing's order, so no
            // sort), and whether it holds indexes; a repository's last tag change.
            "CREATE INDEX manifests_created ON manifests (repo, created_at DESC, digest)",
            "CREATE INDEX tags_updated ON tags (repo, updated_at)",
            "CREATE INDEX manifest_refs_kind ON manifest_refs (repo, kind)",
            // Pages of a subject's referrers, oldest first.
            "CREATE INDEX manifests_referrers ON manifests (repo, subject, created_at, digest)",
        ],
    ),
    (
        33,
        &[
            // A repository's manifests, counted as they are stored and deleted: a page of a
            // project's repositories counted them, 100,000 index entries for a large one.
            "ALTER TABLE repositories ADD COLUMN manifest_count BIGINT NOT NULL DEFAULT 0",
            "UPDATE repositories SET manifest_count = c.n FROM (SELECT repo, COUNT(*) AS n FROM manifests GROUP BY repo)
            AS c WHERE repositories.name = c.repo",
        ],
    ),
    (
        34,
        &[
            // Every counted pull is an event, of a random repository under a pull load over
            // many images, and its entry in this index was a page written (and checkpointed)
            // per pull: about 25 µs of the ~230 a pull's bookkeeping cost at a million
            // manifests. The log is read by cursor; `berth events list --repo` now scans from
            // the newest event, as the project and actor filters always did.
            "DROP INDEX IF EXISTS events_repo",
        ],
    ),
];
