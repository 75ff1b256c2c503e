//! Repository policies in the JSON form AWS ECR uses, evaluated without I/O (re-exported as
//! `berth_auth::policy`).
//!
//! ```json
//! { "Version": "2012-10-17",
//!   "Statement": [ { "Sid": "NoPushFromCi", "Effect": "Deny",
//!                    "Principal": {"AWS": ["robot$proj+ci"]}, "Action": ["ecr:PutImage"] } ] }
//! ```
//!
//! `Principal` is `"*"`, or `{"AWS": …}` / `{"Berth": …}` holding one name or a list: a
//! username, a robot's full name, `*`, or an IAM-style ARN whose last `/` part is the name
//! (`arn:aws:iam::123456789012:user/alice` names `alice`). `Action` is one ECR action or a
//! list, with `*` wildcards (`ecr:*`, `ecr:Batch*`). Evaluation: an explicit `Deny` that
//! matches wins over everything; a matching `Allow` grants the action even without a role;
//! otherwise the policy has no opinion and roles decide. `Condition`, `NotAction`,
//! `NotPrincipal` and `Resource` are refused rather than ignored, so a document never means
//! less than it says.
//!
//! Action patterns are compiled once, when the document is parsed, as case-insensitive
//! [`Syntax::Wildcard`] patterns of the crate's one pattern engine.

use serde_json::Value;

use crate::pattern::{Pattern, PatternOptions, Syntax};

/// An ECR action Berth maps onto its own operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcrAction {
    /// Read a manifest (pull).
    BatchGetImage,
    /// Download a layer (pull).
    GetDownloadUrlForLayer,
    /// `HEAD` a layer (pull, push).
    BatchCheckLayerAvailability,
    /// Put a manifest or a tag (push).
    PutImage,
    /// Start a blob upload (push).
    InitiateLayerUpload,
    /// Send a blob chunk (push).
    UploadLayerPart,
    /// Finish a blob upload (push).
    CompleteLayerUpload,
    /// Delete artifacts or tags.
    BatchDeleteImage,
    /// List tags and artifacts.
    ListImages,
    /// Describe artifacts.
    DescribeImages,
    /// Describe the repository.
    DescribeRepositories,
    /// Delete the repository.
    DeleteRepository,
    /// Read this policy.
    GetRepositoryPolicy,
    /// Set this policy.
    SetRepositoryPolicy,
    /// Delete this policy.
    DeleteRepositoryPolicy,
    /// Scan an image.
    StartImageScan,
    /// Read scan findings.
    DescribeImageScanFindings,
    /// Read the lifecycle policy.
    GetLifecyclePolicy,
    /// Set the lifecycle policy.
    PutLifecyclePolicy,
    /// Delete the lifecycle policy.
    DeleteLifecyclePolicy,
    /// Start a lifecycle policy preview.
    StartLifecyclePolicyPreview,
    /// Read a lifecycle policy preview.
    GetLifecyclePolicyPreview,
    /// Set the repository's tag mutability.
    PutImageTagMutability,
    /// Set the repository's scan on push.
    PutImageScanningConfiguration,
    /// Add resource tags to the repository.
    TagResource,
    /// Remove resource tags from the repository.
    UntagResource,
    /// List the repository's resource tags.
    ListTagsForResource,
}

impl EcrAction {
    /// Every action Berth knows.
    pub const ALL: [EcrAction; 27] = [
        EcrAction::BatchGetImage,
        EcrAction::GetDownloadUrlForLayer,
        EcrAction::BatchCheckLayerAvailability,
        EcrAction::PutImage,
        EcrAction::InitiateLayerUpload,
        EcrAction::UploadLayerPart,
        EcrAction::CompleteLayerUpload,
        EcrAction::BatchDeleteImage,
        EcrAction::ListImages,
        EcrAction::DescribeImages,
        EcrAction::DescribeRepositories,
        EcrAction::DeleteRepository,
        EcrAction::GetRepositoryPolicy,
        EcrAction::SetRepositoryPolicy,
        EcrAction::DeleteRepositoryPolicy,
        EcrAction::StartImageScan,
        EcrAction::DescribeImageScanFindings,
        EcrAction::GetLifecyclePolicy,
        EcrAction::PutLifecyclePolicy,
        EcrAction::DeleteLifecyclePolicy,
        EcrAction::StartLifecyclePolicyPreview,
        EcrAction::GetLifecyclePolicyPreview,
        EcrAction::PutImageTagMutability,
        EcrAction::PutImageScanningConfiguration,
        EcrAction::TagResource,
        EcrAction::UntagResource,
        EcrAction::ListTagsForResource,
    ];

    /// The `ecr:…` name.
    pub fn name(self) -> &'static str {
        match self {
            EcrAction::BatchGetImage => "ecr:BatchGetImage",
            EcrAction::GetDownloadUrlForLayer => "ecr:GetDownloadUrlForLayer",
            EcrAction::BatchCheckLayerAvailability => "ecr:BatchCheckLayerAvailability",
            EcrAction::PutImage => "ecr:PutImage",
            EcrAction::InitiateLayerUpload => "ecr:InitiateLayerUpload",
            EcrAction::UploadLayerPart => "ecr:UploadLayerPart",
            EcrAction::CompleteLayerUpload => "ecr:CompleteLayerUpload",
            EcrAction::BatchDeleteImage => "ecr:BatchDeleteImage",
            EcrAction::ListImages => "ecr:ListImages",
            EcrAction::DescribeImages => "ecr:DescribeImages",
            EcrAction::DescribeRepositories => "ecr:DescribeRepositories",
            EcrAction::DeleteRepository => "ecr:DeleteRepository",
            EcrAction::GetRepositoryPolicy => "ecr:GetRepositoryPolicy",
            EcrAction::SetRepositoryPolicy => "ecr:SetRepositoryPolicy",
            EcrAction::DeleteRepositoryPolicy => "ecr:DeleteRepositoryPolicy",
            EcrAction::StartImageScan => "ecr:StartImageScan",
            EcrAction::DescribeImageScanFindings => "ecr:DescribeImageScanFindings",
            EcrAction::GetLifecyclePolicy => "ecr:GetLifecyclePolicy",
            EcrAction::PutLifecyclePolicy => "ecr:PutLifecyclePolicy",
            EcrAction::DeleteLifecyclePolicy => "ecr:DeleteLifecyclePolicy",
            EcrAction::StartLifecyclePolicyPreview => "ecr:StartLifecyclePolicyPreview",
            EcrAction::GetLifecyclePolicyPreview => "ecr:GetLifecyclePolicyPreview",
            EcrAction::PutImageTagMutability => "ecr:PutImageTagMutability",
            EcrAction::PutImageScanningConfiguration => "ecr:PutImageScanningConfiguration",
            EcrAction::TagResource => "ecr:TagResource",
            EcrAction::UntagResource => "ecr:UntagResource",
            EcrAction::ListTagsForResource => "ecr:ListTagsForResource",
        }
    }
}

/// `Allow` or `Deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Grants.
    Allow,
    /// Refuses, whatever else grants.
    Deny,
}

/// Whom a statement is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principals {
    /// Everybody, anonymous users included.
    Any,
    /// These usernames or robot names.
    Named(Vec<String>),
}

/// One statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Its id, if given.
    pub sid: Option<String>,
    /// Allow or deny.
    pub effect: Effect,
    /// Whom it is about.
    pub principals: Principals,
    /// Action patterns (`ecr:PutImage`, `ecr:*`, `*`).
    pub actions: Vec<String>,
    /// `actions`, compiled.
    compiled: Vec<Pattern>,
}

impl Statement {
    /// Does one of its action patterns match `action`?
    pub fn covers(&self, action: EcrAction) -> bool {
        self.compiled.iter().any(|p| p.matches(action.name()))
    }
}

/// A parsed, valid policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoPolicy {
    /// The statements, in order.
    pub statements: Vec<Statement>,
}

/// Why a document was refused: the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PolicyError {
    /// The offending field, e.g. `Statement[1].Effect`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// What a policy says about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A `Deny` statement matched (its `Sid`, if any).
    Deny(Option<String>),
    /// An `Allow` statement matched.
    Allow,
    /// No statement matched.
    NoOpinion,
}

/// An action pattern: `*` any run, `?` one character, case-insensitive as IAM action names are.
fn action_pattern(text: &str) -> Result<Pattern, crate::pattern::PatternError> {
    Pattern::new(text, Syntax::Wildcard, PatternOptions { case_insensitive: true })
}

fn strings(v: &Value, field: &str) -> Result<Vec<String>, PolicyError> {
    let bad = |m: &str| PolicyError { field: field.to_owned(), message: m.to_owned() };
    let list = match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map(str::to_owned).ok_or_else(|| bad("must be a string or a list of strings")))
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(bad("must be a string or a list of strings")),
    };
    if list.is_empty() {
        return Err(bad("must not be empty"));
    }
    if list.iter().any(|s| s.trim().is_empty()) {
        return Err(bad("must not hold an empty string"));
    }
    Ok(list)
}

fn principal_name(s: &str) -> String {
    if s.starts_with("arn:") { s.rsplit('/').next().unwrap_or(s).to_owned() } else { s.to_owned() }
}

impl RepoPolicy {
    /// Parse and validate a document.
    pub fn parse(text: &str) -> Result<RepoPolicy, PolicyError> {
        let doc: Value = serde_json::from_str(text)
            .map_err(|e| PolicyError { field: "(document)".into(), message: format!("not valid JSON: {e}") })?;
        Self::from_value(&doc)
    }

    /// Validate a document already parsed as JSON.
    pub fn from_value(doc: &Value) -> Result<RepoPolicy, PolicyError> {
        let err = |f: &str, m: String| PolicyError { field: f.to_owned(), message: m };
        let obj = doc.as_object().ok_or_else(|| err("(document)", "must be a JSON object".into()))?;
        for k in obj.keys() {
            if k != "Version" && k != "Statement" && k != "Id" {
                return Err(err(k, "unknown field: a policy has Version, Statement and optionally Id".into()));
            }
        }
        match obj.get("Version").and_then(Value::as_str) {
            Some("2012-10-17") | Some("2008-10-17") => {}
            Some(v) => return Err(err("Version", format!("{v:?}: use \"2012-10-17\""))),
            None => return Err(err("Version", "is required (\"2012-10-17\")".into())),
        }
        let stmts = match obj.get("Statement") {
            Some(Value::Array(a)) => a.clone(),
            Some(v @ Value::Object(_)) => vec![v.clone()],
            Some(_) => return Err(err("Statement", "must be a list of statements".into())),
            None => return Err(err("Statement", "is required".into())),
        };
        if stmts.is_empty() {
            return Err(err("Statement", "must hold at least one statement".into()));
        }
        let mut statements = Vec::with_capacity(stmts.len());
        for (i, s) in stmts.iter().enumerate() {
            let f = |name: &str| format!("Statement[{i}].{name}");
            let so = s.as_object().ok_or_else(|| err(&format!("Statement[{i}]"), "must be an object".into()))?;
            for k in so.keys() {
                match k.as_str() {
                    "Sid" | "Effect" | "Principal" | "Action" => {}
                    "Condition" | "NotAction" | "NotPrincipal" | "Resource" | "NotResource" => {
                        return Err(err(&f(k), "is not supported by Berth".into()));
                    }
                    _ => return Err(err(&f(k), "unknown field".into())),
                }
            }
            let sid = match so.get("Sid") {
                None => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return Err(err(&f("Sid"), "must be a string".into())),
            };
            let effect = match so.get("Effect").and_then(Value::as_str) {
                Some("Allow") => Effect::Allow,
                Some("Deny") => Effect::Deny,
                Some(o) => return Err(err(&f("Effect"), format!("must be \"Allow\" or \"Deny\", not {o:?}"))),
                None => return Err(err(&f("Effect"), "is required (\"Allow\" or \"Deny\")".into())),
            };
            let principals = match so.get("Principal") {
                Some(Value::String(s)) if s == "*" => Principals::Any,
                Some(Value::Object(p)) => {
                    let mut names = Vec::new();
                    for (k, v) in p {
                        if k != "AWS" && k != "Berth" {
                            return Err(err(&f(&format!("Principal.{k}")), "use \"AWS\" or \"Berth\"".into()));
                        }
                        names.extend(strings(v, &f(&format!("Principal.{k}")))?.iter().map(|n| principal_name(n)));
                    }
                    if names.is_empty() {
                        return Err(err(&f("Principal"), "must name at least one principal".into()));
                    }
                    if names.iter().any(|n| n == "*") { Principals::Any } else { Principals::Named(names) }
                }
                Some(_) => return Err(err(&f("Principal"), "must be \"*\" or {\"AWS\": [names]}".into())),
                None => return Err(err(&f("Principal"), "is required".into())),
            };
            let actions = strings(so.get("Action").unwrap_or(&Value::Null), &f("Action"))
                .map_err(|e| if so.contains_key("Action") { e } else { err(&f("Action"), "is required".into()) })?;
            let mut compiled = Vec::with_capacity(actions.len());
            for (j, a) in actions.iter().enumerate() {
                let field = format!("Statement[{i}].Action[{j}]");
                let p = action_pattern(a).map_err(|e| err(&field, e.to_string()))?;
                if !EcrAction::ALL.iter().any(|k| p.matches(k.name())) {
                    return Err(err(
                        &field,
                        format!("{a:?} matches no ECR action Berth supports (e.g. ecr:BatchGetImage, ecr:PutImage)"),
                    ));
                }
                compiled.push(p);
            }
            statements.push(Statement { sid, effect, principals, actions, compiled });
        }
        Ok(RepoPolicy { statements })
    }

    /// What the policy says about `principal` (`None`: anonymous) doing `action`.
    pub fn evaluate(&self, principal: Option<&str>, action: EcrAction) -> Verdict {
        let mut allowed = false;
        for s in &self.statements {
            let who = match &s.principals {
                Principals::Any => true,
                Principals::Named(n) => principal.is_some_and(|p| n.iter().any(|x| x == p)),
            };
            if !who || !s.covers(action) {
                continue;
            }
            match s.effect {
                Effect::Deny => return Verdict::Deny(s.sid.clone()),
                Effect::Allow => allowed = true,
            }
        }
        if allowed { Verdict::Allow } else { Verdict::NoOpinion }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(doc: &str) -> String {
        RepoPolicy::parse(doc).unwrap_err().field
    }

    #[test]
    fn deny_wins_and_allow_grants() {
        let p = RepoPolicy::parse(
            r#"{"Version":"2012-10-17","Statement":[
              {"Sid":"all-pull","Effect":"Allow","Principal":"*","Action":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]},
              {"Sid":"no-ci-push","Effect":"Deny","Principal":{"AWS":["arn:aws:iam::1:user/robot$p+ci","bob"]},"Action":"ecr:Put*"},
              {"Effect":"Deny","Principal":{"Berth":"eve"},"Action":"ecr:*"}]}"#,
        )
        .unwrap();
        assert_eq!(p.evaluate(None, EcrAction::BatchGetImage), Verdict::Allow);
        assert_eq!(p.evaluate(Some("robot$p+ci"), EcrAction::PutImage), Verdict::Deny(Some("no-ci-push".into())));
        assert_eq!(p.evaluate(Some("bob"), EcrAction::PutImage), Verdict::Deny(Some("no-ci-push".into())));
        assert_eq!(p.evaluate(Some("alice"), EcrAction::PutImage), Verdict::NoOpinion);
        assert_eq!(p.evaluate(Some("eve"), EcrAction::BatchGetImage), Verdict::Deny(None));
        assert_eq!(p.evaluate(Some("bob"), EcrAction::BatchDeleteImage), Verdict::NoOpinion);
    }

    #[test]
    fn invalid_documents_name_the_field() {
        assert_eq!(field("{"), "(document)");
        assert_eq!(field(r#"{"Statement":[]}"#), "Version");
        assert_eq!(field(r#"{"Version":"2012-10-17"}"#), "Statement");
        assert_eq!(
            field(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Permit","Principal":"*","Action":"ecr:*"}]}"#),
            "Statement[0].Effect"
        );
        assert_eq!(
            field(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"ecr:*"},
                   {"Effect":"Deny","Principal":"*","Action":["ecr:PutImage","s3:GetObject"]}]}"#
            ),
            "Statement[1].Action[1]"
        );
        assert_eq!(
            field(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Other":"x"},"Action":"ecr:*"}]}"#
            ),
            "Statement[0].Principal.Other"
        );
        assert_eq!(
            field(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"ecr:*","Condition":{}}]}"#
            ),
            "Statement[0].Condition"
        );
        assert_eq!(
            field(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*"}]}"#),
            "Statement[0].Action"
        );
        assert_eq!(
            field(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*"}]}"#),
            "Statement[0].Principal"
        );
    }

    fn glob(pattern: &str, text: &str) -> bool {
        action_pattern(pattern).unwrap().matches(text)
    }

    #[test]
    fn too_long_action_patterns_are_refused_where_they_stand() {
        let doc = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":"*","Action":["ecr:*","{}"]}}]}}"#,
            "*a".repeat(2100)
        );
        let e = RepoPolicy::parse(&doc).unwrap_err();
        assert_eq!(e.field, "Statement[0].Action[1]");
        assert!(e.message.contains("at most 4096 bytes"), "{}", e.message);
    }

    #[test]
    fn adversarial_action_patterns_are_fast() {
        // Validation matches each pattern against every action name; the old backtracking
        // matcher took exponential time on this one.
        let doc = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Deny","Principal":"*","Action":["ecr:*","{}"]}}]}}"#,
            "*a".repeat(21) + "*"
        );
        let t = std::time::Instant::now();
        assert_eq!(RepoPolicy::parse(&doc).unwrap_err().field, "Statement[0].Action[1]");
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn globs() {
        assert!(glob("ecr:*", "ecr:PutImage"));
        assert!(glob("*", "ecr:PutImage"));
        assert!(glob("ecr:batch*", "ecr:BatchGetImage"));
        assert!(!glob("ecr:Batch*", "ecr:PutImage"));
        assert!(glob("ecr:?utImage", "ecr:PutImage"));
    }
}
