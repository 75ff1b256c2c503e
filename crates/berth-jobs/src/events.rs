//! Event-log consumers: the loop that moves a [`Consumer`] along the log with its durable
//! cursor, and [`tail`], a per-process follower without one (for cache invalidation).

use std::sync::Arc;
use std::time::Duration;

use berth_meta::{Consumer, EventLog, EventRecord};
use tracing::{Instrument, debug, info_span, warn};

use crate::now_ms;

/// How a consumer reads the log.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerOptions {
    /// How long to wait when the log has nothing new.
    pub poll: Duration,
    /// Most events per batch (one transaction).
    pub batch: i64,
    /// First wait after a failure; doubles up to a minute.
    pub backoff: Duration,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions { poll: Duration::from_millis(250), batch: 2000, backoff: Duration::from_millis(500) }
    }
}

/// How long a consumer may hold progress over events that had no effects before storing it.
const SKIPPED_FLUSH: Duration = Duration::from_secs(1);

/// Events a consumer read that had no effects, past its stored cursor: their cursor move is
/// a durable write (an fsync, on SQLite), and a dozen consumers writing one per pushed
/// manifest held the database's write lock more than the pushes did. Such progress is kept
/// in memory and stored with the next batch that has effects, when the log goes quiet, or
/// after [`SKIPPED_FLUSH`]. After a crash those events are read again, and again have no
/// effects (or have the effects they would have had then: at least once, as always).
struct Skipped {
    /// The stored cursor this progress is on top of.
    stored: i64,
    /// The last event read.
    at: i64,
    since: std::time::Instant,
}

/// One step of [`run_consumer`]: read a batch after the stored cursor (or after progress held
/// in memory on top of it), compute its effects, and apply them with the cursor move —
/// holding back the moves of batches without effects (see [`Skipped`]). Returns how many
/// events were read (0: nothing new, or another process took the batch).
async fn step(
    log: &dyn EventLog,
    consumer: &dyn Consumer,
    batch: i64,
    skipped: &mut Option<Skipped>,
) -> Result<usize, berth_meta::ConsumerError> {
    let stored = log.consumer_cursor(consumer.name()).await?;
    // Another process may have moved the stored cursor since: then start from there.
    let from = match skipped {
        Some(s) if s.stored == stored => s.at,
        _ => {
            *skipped = None;
            stored
        }
    };
    let events = log.events_after(from, batch).await?;
    let Some(last) = events.last() else {
        if let Some(s) = skipped.take() {
            log.advance_consumer(consumer.name(), s.stored, s.at, &[], now_ms()).await?;
        }
        return Ok(0);
    };
    let to = last.seq;
    let effects = consumer.effects(&events).await?;
    if effects.is_empty() {
        let since = skipped.as_ref().map_or_else(std::time::Instant::now, |s| s.since);
        if since.elapsed() < SKIPPED_FLUSH {
            *skipped = Some(Skipped { stored, at: to, since });
            return Ok(events.len());
        }
    }
    *skipped = None;
    if log.advance_consumer(consumer.name(), stored, to, &effects, now_ms()).await? {
        debug!(consumer = consumer.name(), from = stored, to, effects = effects.len(), "consumed events");
        Ok(events.len())
    } else {
        Ok(0)
    }
}

/// Run `consumer` until the task is aborted: at least once for every event, its effects
/// applied exactly once (they commit with the cursor).
pub fn run_consumer(
    log: Arc<dyn EventLog>,
    consumer: Arc<dyn Consumer>,
    opts: ConsumerOptions,
) -> tokio::task::JoinHandle<()> {
    let span = info_span!("consumer", consumer = consumer.name().to_owned());
    tokio::spawn(
        async move {
            let mut backoff = opts.backoff;
            let mut skipped = None;
            loop {
                match step(&*log, &*consumer, opts.batch, &mut skipped).await {
                    Ok(n) => {
                        backoff = opts.backoff;
                        if n == 0 {
                            tokio::time::sleep(opts.poll).await;
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "event consumer failed");
                        skipped = None;
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(60));
                    }
                }
            }
        }
        .instrument(span),
    )
}

/// Follow the log from its current end, calling `on_events` with every new batch, in order,
/// until the task is aborted. Nothing is stored: a restarted process starts at the end again
/// (what it follows for, like cache invalidation, starts empty too).
pub async fn tail(
    log: Arc<dyn EventLog>,
    poll: Duration,
    on_events: impl Fn(&[EventRecord]) + Send + Sync + 'static,
) -> Result<tokio::task::JoinHandle<()>, berth_meta::MetaError> {
    let mut cursor = log.last_event_seq().await?;
    Ok(tokio::spawn(async move {
        loop {
            match log.events_after(cursor, 1000).await {
                Ok(events) if !events.is_empty() => {
                    on_events(&events);
                    cursor = events.last().map_or(cursor, |e| e.seq);
                    continue;
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "failed to follow the event log"),
            }
            tokio::time::sleep(poll).await;
        }
    }))
}
