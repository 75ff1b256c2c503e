//! Where log lines go: a shared buffer that a thread writes to stderr every few milliseconds.
//!
//! Every request logs a line. Written with one `write(2)` each they cost a system call per
//! request; handed to a writer thread through a channel (tracing-appender) they cost the
//! thread's wake-ups and its spinning wait for the next line — 9–11 % of the server's samples
//! under 30,000 HEAD requests a second on two cores. Here a line is appended to a buffer
//! under a lock, and the thread wakes every [`TICK`] to write out what gathered in one call.
//! A line waits at most that long; a buffer past [`LIMIT`] is written out at once by the
//! logger that filled it, so a stalled stderr makes loggers wait instead of growing memory.
//! Nothing is dropped: lines still buffered are written when the [`LogGuard`] drops. What
//! the process writes to stderr itself (the generated admin password) calls [`flush`] first,
//! so it comes after the log lines before it.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

/// How often the thread writes out what gathered.
pub const TICK: Duration = Duration::from_millis(20);
/// Most bytes buffered before the logger that adds more writes them out itself.
pub const LIMIT: usize = 256 * 1024;

struct Shared {
    /// Lines not yet written, and whether the sink is closing.
    buf: Mutex<(Vec<u8>, bool)>,
    /// Wakes the thread early when closing.
    closing: Condvar,
    /// Where the lines go; held while writing, so lines leave in order.
    out: Mutex<Box<dyn Write + Send>>,
}

impl Shared {
    /// Take what is buffered and write it out (taken while `out` is held: order is kept).
    fn drain(&self) {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let lines = std::mem::take(&mut self.buf.lock().unwrap_or_else(PoisonError::into_inner).0);
        if !lines.is_empty() {
            // Nowhere to report a failing stderr; the lines are lost, as with eprintln.
            let _ = out.write_all(&lines).and_then(|_| out.flush());
        }
    }
}

/// The process's log sink (the first started), for [`flush`].
static PROCESS: OnceLock<Weak<Shared>> = OnceLock::new();

/// Write out the process's buffered log lines now (before writing to stderr directly).
pub fn flush() {
    if let Some(shared) = PROCESS.get().and_then(Weak::upgrade) {
        shared.drain();
    }
}

/// A handle that tracing formats lines into (one `write` per line).
#[derive(Clone)]
pub struct LogSink(Arc<Shared>);

/// Writes out what is still buffered, and stops the thread, when dropped.
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LogSink {
    /// A sink writing to `out` from a thread named `berth-log`.
    pub fn start(out: impl Write + Send + 'static) -> (LogSink, LogGuard) {
        let shared = Arc::new(Shared {
            buf: Mutex::new((Vec::new(), false)),
            closing: Condvar::new(),
            out: Mutex::new(Box::new(out)),
        });
        let _ = PROCESS.set(Arc::downgrade(&shared));
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("berth-log".into())
            .spawn(move || {
                loop {
                    let closing = {
                        let buf = s.buf.lock().unwrap_or_else(PoisonError::into_inner);
                        let (buf, _) =
                            s.closing.wait_timeout_while(buf, TICK, |b| !b.1).unwrap_or_else(PoisonError::into_inner);
                        buf.1
                    };
                    s.drain();
                    if closing {
                        return;
                    }
                }
            })
            .ok();
        (LogSink(shared.clone()), LogGuard { shared, thread })
    }
}

impl Write for LogSink {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let full = {
            let mut buf = self.0.buf.lock().unwrap_or_else(PoisonError::into_inner);
            buf.0.extend_from_slice(line);
            buf.0.len() >= LIMIT
        };
        if full {
            self.0.drain();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.buf.lock().unwrap_or_else(PoisonError::into_inner).1 = true;
        self.shared.closing.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Also when the thread could not start, or lines came after it stopped.
        self.shared.drain();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer recording each write it gets.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Recorder {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().push(b.to_vec());
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn joined(r: &Recorder) -> Vec<u8> {
        r.0.lock().unwrap().concat()
    }

    #[test]
    fn lines_leave_in_order_in_few_writes_soon_and_all_by_the_guards_drop() {
        let rec = Recorder::default();
        let (sink, guard) = LogSink::start(rec.clone());
        let mut expected = Vec::new();
        std::thread::scope(|s| {
            for t in 0..4 {
                let mut sink = sink.clone();
                s.spawn(move || {
                    for i in 0..1000 {
                        sink.write_all(format!("thread {t} line {i}\n").as_bytes()).unwrap();
                    }
                });
            }
        });
        for t in 0..4 {
            for i in 0..1000 {
                expected.push(format!("thread {t} line {i}"));
            }
        }
        // Written within a few ticks, without the guard dropping.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while joined(&rec).iter().filter(|&&b| b == b'\n').count() < 4000 {
            assert!(std::time::Instant::now() < deadline, "lines were not written out within 5 s");
            std::thread::sleep(TICK);
        }
        let writes = rec.0.lock().unwrap().len();
        assert!(writes < 4000 / 10, "{writes} writes for 4,000 lines: they were not gathered");
        // Each thread's lines in its order; every line whole.
        let text = String::from_utf8(joined(&rec)).unwrap();
        let mut got: Vec<&str> = text.lines().collect();
        for t in 0..4 {
            let mine: Vec<&str> = got.iter().copied().filter(|l| l.starts_with(&format!("thread {t} "))).collect();
            let want: Vec<String> = (0..1000).map(|i| format!("thread {t} line {i}")).collect();
            assert_eq!(mine, want, "thread {t}'s lines out of order or broken");
        }
        got.sort_unstable();
        expected.sort_unstable();
        assert_eq!(got, expected.iter().map(String::as_str).collect::<Vec<_>>());
        // A last line is written when the guard drops, though no tick came.
        sink.clone().write_all(b"last\n").unwrap();
        drop(guard);
        assert!(String::from_utf8(joined(&rec)).unwrap().ends_with("last\n"));
    }

    #[test]
    fn a_full_buffer_is_written_out_by_the_logger_that_filled_it() {
        // A stderr that takes nothing for a while: the buffer stays bounded.
        let rec = Recorder::default();
        let (mut sink, guard) = LogSink::start(rec.clone());
        let line = vec![b'x'; 1000];
        for _ in 0..(LIMIT / 1000) * 3 {
            sink.write_all(&line).unwrap();
            assert!(sink.0.buf.lock().unwrap().0.len() < LIMIT, "the buffer grew past its limit");
        }
        drop(guard);
        assert_eq!(joined(&rec).len(), (LIMIT / 1000) * 3 * 1000);
    }
}
