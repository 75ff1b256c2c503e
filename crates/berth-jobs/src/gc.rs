//! The garbage-collection service as the management API and the CLI see it: ask for a run,
//! follow it, stop it, and schedule runs (Harbor's `/api/v2.0/system/gc`). The collection
//! itself is `berth_registry::Collector`, run by a `gc` job on a worker.
//!
//! Schedules are Harbor's: a type (`None`, `Hourly`, `Daily`, `Weekly`, `Custom`) and a
//! six-field cron with seconds first (`0 0 3 * * *`). Every worker replica ticks; the due
//! firing is claimed by compare-and-set on the stored `next_at`, so each fires once.

use std::str::FromStr;
use std::sync::Arc;

use berth_meta::{GcRunRecord, GcStore, JobQueue, MetaError, NewJob, ScheduleRecord};
use serde::{Deserialize, Serialize};

use crate::now_ms;

/// Kind of the job that runs one collection.
pub const GC: &str = "gc";

/// A run's parameters, as Harbor's API takes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcParameters {
    /// Delete untagged manifests too.
    #[serde(default)]
    pub delete_untagged: bool,
    /// Only report.
    #[serde(default)]
    pub dry_run: bool,
    /// Hours: keep what is younger (Harbor's default 2; 0 collects at once).
    #[serde(default = "default_window")]
    pub time_window: u64,
    /// Blob deletions in flight at once (Harbor allows 1–5).
    #[serde(default = "default_workers")]
    pub workers: u64,
}

fn default_window() -> u64 {
    2
}

fn default_workers() -> u64 {
    1
}

impl Default for GcParameters {
    fn default() -> Self {
        GcParameters { delete_untagged: false, dry_run: false, time_window: 2, workers: 1 }
    }
}

impl GcParameters {
    /// Check the values a client sent.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=5).contains(&self.workers) {
            return Err(format!("workers must be between 1 and 5, not {}", self.workers));
        }
        if self.time_window > 24 * 365 {
            return Err(format!("time_window is in hours and at most 8760 (a year), not {}", self.time_window));
        }
        Ok(())
    }
}

/// The payload of a `gc` job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GcJobPayload {
    /// The run it carries out.
    pub run: i64,
}

/// Why a request about collection was refused.
#[derive(Debug, thiserror::Error)]
pub enum GcRequestError {
    /// Malformed parameters or schedule.
    #[error("{0}")]
    Invalid(String),
    /// Another collection is queued or running.
    #[error("a garbage collection is already queued or running (run {0}); wait for it or stop it")]
    Busy(i64),
    /// No such run.
    #[error("no garbage collection run {0}")]
    NotFound(i64),
    /// The store failed.
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// A parsed Harbor schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// `None`, `Hourly`, `Daily`, `Weekly` or `Custom`.
    pub kind: String,
    /// The cron it fires by (absent for `None`).
    pub cron: Option<String>,
}

impl Schedule {
    /// From Harbor's `{"type": …, "cron": …}`; `Hourly`/`Daily`/`Weekly` get Harbor's crons.
    pub fn parse(kind: &str, cron: Option<&str>) -> Result<Schedule, String> {
        let fixed = |c: &str| Some(c.to_owned());
        let (kind, cron) = match kind {
            "None" => ("None", None),
            "Hourly" => ("Hourly", fixed("0 0 * * * *")),
            "Daily" => ("Daily", fixed("0 0 0 * * *")),
            "Weekly" => ("Weekly", fixed("0 0 0 * * 0")),
            "Custom" => match cron.map(str::trim).filter(|c| !c.is_empty()) {
                Some(c) => ("Custom", Some(c.to_owned())),
                None => {
                    return Err("a Custom schedule needs a cron (six fields, seconds first: \"0 0 3 * * *\")".into());
                }
            },
            other => {
                return Err(format!(
                    "schedule type {other:?} is not one of None, Hourly, Daily, Weekly, Custom, Manual"
                ));
            }
        };
        if let Some(c) = &cron {
            next_fire(c, now_ms())?;
        }
        Ok(Schedule { kind: kind.into(), cron })
    }
}

/// The first time after `after` (Unix ms) a six-field cron (seconds first; day of week 0–6
/// from Sunday, or names) fires, in UTC.
pub fn next_fire(cron: &str, after: i64) -> Result<i64, String> {
    let fields: Vec<&str> = cron.split_whitespace().collect();
    if fields.len() != 6 {
        return Err(format!(
            "cron {cron:?} has {} fields; Harbor's cron has six, seconds first (\"0 0 3 * * *\": 03:00 every day)",
            fields.len()
        ));
    }
    // Harbor (robfig/cron) counts days of the week 0–6 from Sunday; the `cron` crate 1–7.
    let dow = shift_weekdays(fields[5]).ok_or_else(|| format!("cron {cron:?}: bad day of week {:?}", fields[5]))?;
    let expr = format!("{} {} {} {} {} {}", fields[0], fields[1], fields[2], fields[3], fields[4], dow);
    let schedule = cron::Schedule::from_str(&expr).map_err(|e| format!("cron {cron:?} is not valid: {e}"))?;
    let start = chrono::DateTime::from_timestamp_millis(after).unwrap_or_default();
    schedule.after(&start).next().map(|t| t.timestamp_millis()).ok_or_else(|| format!("cron {cron:?} never fires"))
}

/// `0-6` (Sunday first) → `1-7` in every number of a day-of-week field.
fn shift_weekdays(field: &str) -> Option<String> {
    let mut out = String::new();
    let mut num = String::new();
    let mut after_slash = false;
    let flush = |num: &mut String, out: &mut String, after_slash: bool| -> Option<()> {
        if !num.is_empty() {
            let n: u32 = num.parse().ok()?;
            if after_slash {
                out.push_str(num);
            } else {
                if n > 7 {
                    return None;
                }
                // 7 is Sunday too in robfig's dialect.
                out.push_str(&((n % 7) + 1).to_string());
            }
            num.clear();
        }
        Some(())
    };
    for c in field.chars() {
        if c.is_ascii_digit() {
            num.push(c);
        } else {
            flush(&mut num, &mut out, after_slash)?;
            after_slash = c == '/';
            out.push(c);
        }
    }
    flush(&mut num, &mut out, after_slash)?;
    Some(out)
}

/// The service.
#[derive(Clone)]
pub struct GcService {
    store: Arc<dyn GcStore>,
    queue: Arc<dyn JobQueue>,
}

/// Name of the collection's schedule.
const SCHEDULE: &str = "gc";

/// Who holds the GC fence during an operator's pause.
const PAUSE_HOLDER: &str = "an operator's pause (berth gc pause)";

impl GcService {
    /// The service over its stores.
    pub fn new(store: Arc<dyn GcStore>, queue: Arc<dyn JobQueue>) -> Self {
        GcService { store, queue }
    }

    /// Ask for a run (`kind`: `Manual` or `Schedule`); returns its id.
    pub async fn start(&self, kind: &str, params: &GcParameters) -> Result<i64, GcRequestError> {
        params.validate().map_err(GcRequestError::Invalid)?;
        let (recent, _) = self.store.gc_runs(0, 20).await?;
        if let Some(busy) = recent.iter().find(|r| matches!(r.status.as_str(), "Pending" | "Running" | "Stopping")) {
            // A run whose job is gone (crashed, cancelled) no longer blocks.
            let alive = self.queue.jobs(Some(GC), None, 50).await?.iter().any(|j| {
                matches!(j.state, berth_meta::JobState::Queued | berth_meta::JobState::Running)
                    && serde_json::from_str::<GcJobPayload>(&j.payload).is_ok_and(|p| p.run == busy.id)
            });
            if alive {
                return Err(GcRequestError::Busy(busy.id));
            }
            let note = "the job carrying this run is gone (the process stopped); marked as failed\n";
            self.store.update_gc_run(busy.id, "Error", None, Some(note), now_ms(), None).await?;
        }
        let payload = serde_json::to_string(params).map_err(|e| GcRequestError::Invalid(e.to_string()))?;
        let id = self.store.create_gc_run(kind, &payload, now_ms()).await?;
        // One run at a time: the check above, and the handler's concurrency of one across
        // replicas (a run asked for at the same moment waits in the queue).
        let job = NewJob {
            kind: GC.into(),
            payload: serde_json::json!({ "run": id }).to_string(),
            dedup_key: Some(format!("{GC}-{id}")),
            max_attempts: 1,
            run_after: 0,
        };
        self.queue.enqueue(&job, now_ms()).await?;
        Ok(id)
    }

    /// Runs, newest first, and how many there are.
    pub async fn runs(&self, offset: i64, limit: i64) -> Result<(Vec<GcRunRecord>, i64), MetaError> {
        self.store.gc_runs(offset, limit).await
    }

    /// One run.
    pub async fn run(&self, id: i64) -> Result<Option<GcRunRecord>, MetaError> {
        self.store.gc_run(id).await
    }

    /// Ask a pending or running run to stop (it stops between batches).
    pub async fn stop(&self, id: i64) -> Result<(), GcRequestError> {
        let run = self.store.gc_run(id).await?.ok_or(GcRequestError::NotFound(id))?;
        match run.status.as_str() {
            "Pending" => {
                self.store
                    .update_gc_run(id, "Stopped", None, Some("stopped before it started\n"), now_ms(), None)
                    .await?;
                Ok(())
            }
            "Running" => Ok(self.store.update_gc_run(id, "Stopping", None, None, now_ms(), None).await?),
            other => Err(GcRequestError::Invalid(format!("run {id} is {other}, not running"))),
        }
    }

    /// Hold off blob deletion until `until` (Unix ms) — while an operator copies the bucket
    /// after a database dump, for example. Returns false if something else (a running
    /// `berth backup`) holds it.
    pub async fn pause(&self, until: i64) -> Result<bool, MetaError> {
        self.store.hold_fence("gc", PAUSE_HOLDER, until, now_ms()).await
    }

    /// Lift a pause made by [`GcService::pause`].
    pub async fn resume(&self) -> Result<(), MetaError> {
        self.store.release_fence("gc", PAUSE_HOLDER).await
    }

    /// The schedule, if one was ever set.
    pub async fn schedule(&self) -> Result<Option<ScheduleRecord>, MetaError> {
        self.store.schedule(SCHEDULE).await
    }

    /// Set (or, with type `None`, clear) the schedule.
    pub async fn set_schedule(&self, schedule: &Schedule, params: &GcParameters) -> Result<(), GcRequestError> {
        params.validate().map_err(GcRequestError::Invalid)?;
        let now = now_ms();
        let next_at = match &schedule.cron {
            Some(c) => Some(next_fire(c, now).map_err(GcRequestError::Invalid)?),
            None => None,
        };
        let created_at = self.store.schedule(SCHEDULE).await?.map(|s| s.created_at).unwrap_or(now);
        let record = ScheduleRecord {
            name: SCHEDULE.into(),
            kind: schedule.kind.clone(),
            cron: schedule.cron.clone(),
            parameters: serde_json::to_string(params).map_err(|e| GcRequestError::Invalid(e.to_string()))?,
            next_at,
            created_at,
            updated_at: now,
        };
        Ok(self.store.put_schedule(&record).await?)
    }

    /// Fire the schedule if it is due (called periodically by every worker; one wins).
    /// Returns the run started, if any.
    pub async fn tick(&self, now: i64) -> Result<Option<i64>, GcRequestError> {
        let Some(s) = self.store.schedule(SCHEDULE).await? else { return Ok(None) };
        let (Some(due), Some(cron)) = (s.next_at, s.cron.as_deref()) else { return Ok(None) };
        if due > now {
            return Ok(None);
        }
        let next = next_fire(cron, now).ok();
        if !self.store.claim_schedule(SCHEDULE, due, next, now).await? {
            return Ok(None);
        }
        let params: GcParameters = serde_json::from_str(&s.parameters).unwrap_or_default();
        match self.start("Schedule", &params).await {
            Ok(id) => Ok(Some(id)),
            Err(GcRequestError::Busy(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harbor_crons_fire_when_harbor_would() {
        // 2025-12-05 (a Friday) 20:46:28 UTC.
        let t = 1_764_967_588_000;
        let at = |c: &str| {
            let ms = next_fire(c, t).unwrap();
            chrono::DateTime::from_timestamp_millis(ms).unwrap().format("%a %F %T").to_string()
        };
        assert_eq!(at("0 0 * * * *"), "Fri 2025-12-05 21:00:00");
        assert_eq!(at("0 0 0 * * *"), "Sat 2025-12-06 00:00:00");
        assert_eq!(at("0 0 0 * * 0"), "Sun 2025-12-07 00:00:00", "0 is Sunday, as in Harbor");
        assert_eq!(at("0 30 2 * * 1-5"), "Mon 2025-12-08 02:30:00");
        assert!(next_fire("0 0 * * *", t).unwrap_err().contains("six"));
        assert!(next_fire("0 0 25 * * *", t).is_err());
        assert!(next_fire("0 0 0 * * 9", t).is_err());
    }

    #[test]
    fn schedule_types_are_harbors() {
        assert_eq!(Schedule::parse("Daily", None).unwrap().cron.as_deref(), Some("0 0 0 * * *"));
        assert_eq!(Schedule::parse("None", Some("ignored")).unwrap().cron, None);
        assert!(Schedule::parse("Custom", None).is_err());
        assert!(Schedule::parse("Sometimes", None).unwrap_err().contains("Hourly"));
        assert!(Schedule::parse("Custom", Some("every day")).is_err());
    }

    #[test]
    fn parameters_are_checked() {
        let p: GcParameters = serde_json::from_str(r#"{"delete_untagged": true}"#).unwrap();
        assert_eq!((p.time_window, p.workers, p.dry_run), (2, 1, false));
        assert!(serde_json::from_str::<GcParameters>(r#"{"delete_untaged": true}"#).is_err());
        assert!(GcParameters { workers: 9, ..Default::default() }.validate().is_err());
    }
}
