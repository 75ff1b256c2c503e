//! Repository policies in the JSON form AWS ECR uses: parsed, validated and evaluated by the
//! pure `berth-policy` crate (`berth_policy::ecr`, on its linear-time pattern engine), and
//! re-exported here so callers keep writing `berth_auth::policy::{EcrAction, RepoPolicy, …}`.

pub use berth_policy::ecr::*;
