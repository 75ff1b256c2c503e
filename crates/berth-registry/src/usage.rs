//! Usage metering for charge-back, the way cloud registries bill: per project and UTC day,
//! the bytes stored, the bytes pushed and pulled, and the pushes and pulls. Kept as durable
//! rows (`usage_daily`) by the `usage` event consumer from `artifact.pushed`,
//! `artifact.pulled`, `blob.pushed` and `blob.pulled` events (the blob ones counted by the
//! registry as bytes move, one event per repository and second); the stored figure is the
//! project's quota usage when the day's last event was applied.

use std::collections::BTreeMap;

use berth_meta::{Consumer, ConsumerError, Effect, EventKind, EventRecord, project_of};

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

/// The `usage` consumer.
pub struct UsageConsumer;

#[async_trait::async_trait]
impl Consumer for UsageConsumer {
    fn name(&self) -> &str {
        "usage"
    }

    async fn effects(&self, events: &[EventRecord]) -> Result<Vec<Effect>, ConsumerError> {
        // (project, day) → (pushed bytes, pulled bytes, pushes, pulls)
        let mut days: BTreeMap<(String, i64), (i64, i64, i64, i64)> = BTreeMap::new();
        for r in events {
            let e = &r.event;
            let Some(repo) = e.repo.as_deref() else { continue };
            let num = |k: &str| e.data.get(k).and_then(|v| v.as_i64()).unwrap_or(0);
            let delta = match e.kind {
                EventKind::ArtifactPushed => (num("size"), 0, 1, 0),
                EventKind::ArtifactPulled => (0, 0, 0, num("count").max(1)),
                EventKind::BlobPushed => (num("bytes"), 0, 0, 0),
                EventKind::BlobPulled => (0, num("bytes"), 0, 0),
                // Storage changed: record the day's figure.
                EventKind::ArtifactDeleted | EventKind::BlobDeleted | EventKind::RepositoryDeleted => (0, 0, 0, 0),
                _ => continue,
            };
            let d = days.entry((project_of(repo).to_owned(), e.at.div_euclid(DAY_MS))).or_default();
            d.0 += delta.0;
            d.1 += delta.1;
            d.2 += delta.2;
            d.3 += delta.3;
        }
        let today = crate::now_ms().div_euclid(DAY_MS);
        Ok(days
            .into_iter()
            .map(|((project, day), (pushed_bytes, pulled_bytes, pushes, pulls))| Effect::Usage {
                project,
                day,
                pushed_bytes,
                pulled_bytes,
                pushes,
                pulls,
                today: day == today,
            })
            .collect())
    }
}

/// A date (`2026-12-05`) as UTC days since the epoch.
pub fn day_of(date: &str) -> Option<i64> {
    let mut it = date.trim().splitn(3, '-');
    let (y, m, d): (i64, i64, i64) = (it.next()?.parse().ok()?, it.next()?.parse().ok()?, it.next()?.parse().ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1970..=9999).contains(&y) {
        return None;
    }
    // Days from civil (proleptic Gregorian), after Howard Hinnant's algorithm.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (date_of(days) == date.trim()).then_some(days)
}

/// UTC days since the epoch as a date (`2026-12-05`).
pub fn date_of(day: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs((day.max(0) as u64) * 86_400);
    humantime::format_rfc3339_seconds(t).to_string()[..10].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_bad_ones_are_refused() {
        assert_eq!(day_of("1970-01-01"), Some(0));
        assert_eq!(day_of("2026-12-05"), Some(20_792));
        assert_eq!(date_of(20_792), "2026-12-05");
        assert_eq!(day_of("2024-02-29").map(date_of).as_deref(), Some("2024-02-29"));
        for bad in ["2025-02-29", "2026-13-01", "yesterday", "2026-12", ""] {
            assert_eq!(day_of(bad), None, "{bad}");
        }
    }
}
