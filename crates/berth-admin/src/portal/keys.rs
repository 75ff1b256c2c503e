//! Access keys (AWS SigV4, for `aws ecr` and boto3 pointed at Berth) in the portal: a panel
//! listing an account's keys with activate, deactivate and delete, and a button for a new one
//! whose secret is shown once. The profile page shows the user's own keys; a robot account's
//! page shows the robot's, changeable by who may manage the robot. Both post to their page's
//! `…/access-keys` with the same form, and the change goes through the same service calls as
//! the management API.

use maud::{Markup, html};
use serde::Deserialize;

use crate::AdminState;

/// What the last action did, for the panel to say.
pub(super) enum KeyNotice {
    None,
    /// A new key: its secret, shown this once.
    Created {
        id: String,
        secret: String,
    },
    Done(String),
    Error(String),
}

/// The panel's form: `action` is `create`, `activate`, `deactivate` or `delete`.
#[derive(Deserialize)]
pub(super) struct KeyForm {
    pub csrf: String,
    pub action: String,
    #[serde(default)]
    pub key: String,
}

/// The URL `aws --endpoint-url` takes: the configured one, else what the browser used.
pub(super) fn endpoint(s: &AdminState, headers: &axum::http::HeaderMap) -> String {
    match &s.external_url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => format!("{}://{}", if s.tls { "https" } else { "http" }, super::registry_host(s, headers)),
    }
}

/// Do what the form asks for `account`.
pub(super) async fn apply(s: &AdminState, account: &str, f: &KeyForm, origin: &berth_auth::Origin) -> KeyNotice {
    let outcome = match f.action.as_str() {
        "create" => match s.auth.create_access_key(account, origin).await {
            Ok((id, secret)) => return KeyNotice::Created { id, secret },
            Err(e) => Err(e),
        },
        "activate" | "deactivate" => {
            let active = f.action == "activate";
            s.auth.set_access_key_active(account, &f.key, active, origin).await.map(|()| {
                if active {
                    format!("Access key {} is active again.", f.key)
                } else {
                    format!("Access key {} is inactive: it signs nothing until activated.", f.key)
                }
            })
        }
        "delete" => {
            s.auth.delete_access_key(account, &f.key, origin).await.map(|()| format!("Access key {} deleted.", f.key))
        }
        other => return KeyNotice::Error(format!("Unknown action {other:?}.")),
    };
    match outcome {
        Ok(msg) => KeyNotice::Done(msg),
        Err(e) => KeyNotice::Error(super::api_err(e).0),
    }
}

/// The panel: `account`'s keys, changeable when `may_manage`, the forms posting to `action`.
pub(super) async fn panel(
    s: &AdminState,
    account: &str,
    action: &str,
    csrf: &str,
    may_manage: bool,
    notice: &KeyNotice,
    endpoint: &str,
) -> Markup {
    let keys = s.auth.access_keys(account).await;
    html! {
        div.panel.stack #access-keys {
            p {
                "Access keys sign requests to Berth's ECR API, so that " code { "aws ecr" } " and boto3 work "
                "against Berth with " code { "--endpoint-url" } ". At most two, so that one can be rotated at a time."
            }
            @match notice {
                KeyNotice::Created { id, secret } => {
                    div.notice role="status" {
                        p { strong { "New access key " code { (id) } ". Its secret — copy it now; it is not shown again:" } }
                        p { code.secret #access-key-secret { (secret) } }
                        (super::commands(&[(
                            "aws",
                            format!(
                                "export AWS_ACCESS_KEY_ID={id}\nexport AWS_SECRET_ACCESS_KEY={secret}\n\
                                 aws ecr describe-repositories --region us-east-1 --endpoint-url {endpoint}"
                            ),
                        )]))
                    }
                }
                KeyNotice::Done(msg) => { p.ok role="status" { (msg) } }
                KeyNotice::Error(e) => { p.error role="alert" { (e) } }
                KeyNotice::None => {}
            }
            @match &keys {
                Err(_) => { p.error role="alert" { "The access keys cannot be read right now; try again shortly." } }
                Ok(keys) if keys.is_empty() => { p.muted { "No access keys." } }
                Ok(keys) => {
                    table {
                        thead { tr { th { "Access key id" } th { "Status" } th.hide-narrow { "Created" } @if may_manage { th { "Actions" } } } }
                        tbody {
                            @for k in keys {
                                tr {
                                    td { code { (k.id) } }
                                    td { @if k.active { span.badge.public { "Active" } } @else { span.badge { "Inactive" } } }
                                    td.hide-narrow { (super::when(k.created_at)) }
                                    @if may_manage {
                                        td.actions {
                                            @let toggle = if k.active { ("deactivate", "Deactivate") } else { ("activate", "Activate") };
                                            @for (op, label) in [toggle, ("delete", "Delete")] {
                                                form.inline method="post" action=(action) {
                                                    input type="hidden" name="csrf" value=(csrf);
                                                    input type="hidden" name="action" value=(op);
                                                    input type="hidden" name="key" value=(k.id);
                                                    @if op == "delete" {
                                                        button.quiet.danger type="submit" aria-label=(format!("Delete {}", k.id)) { (label) }
                                                    } @else {
                                                        button.quiet type="submit" aria-label=(format!("{label} {}", k.id)) { (label) }
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if may_manage {
                form method="post" action=(action) {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="action" value="create";
                    button type="submit" { "Create an access key" }
                }
            }
        }
    }
}
