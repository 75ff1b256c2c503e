//! Connection limits: at most `limits.max_connections` open at once (a new one beyond gets
//! `503` with `Retry-After` and is closed, rather than accepted and left hanging), and the
//! process's soft open-files limit raised to its hard limit at start. On plain HTTP, blob
//! bytes go out with `sendfile(2)` (see [`Counted`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

/// Counts connections; see the module doc.
#[derive(Clone)]
pub struct LimitAcceptor {
    open: Arc<Semaphore>,
    max: usize,
    /// Answer refused connections with an HTTP `503` (plain HTTP only: on TLS the bytes
    /// would be garbage to the client, so the connection is just closed).
    plain: bool,
}

impl LimitAcceptor {
    /// At most `max` connections; `plain` for plain HTTP.
    pub fn new(max: usize, plain: bool) -> Self {
        LimitAcceptor { open: Arc::new(Semaphore::new(max)), max, plain }
    }
}

const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n\
Connection: close\r\nContent-Length: 97\r\n\r\n\
{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"the registry has too many open connections; retry\"}]}";

impl<S: Send + 'static> Accept<TcpStream, S> for LimitAcceptor {
    type Stream = Counted;
    type Service = S;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Counted, S)>> + Send>>;

    fn accept(&self, mut stream: TcpStream, service: S) -> Self::Future {
        let permit = self.open.clone().try_acquire_owned();
        let (max, plain) = (self.max, self.plain);
        Box::pin(async move {
            match permit {
                // Under TLS the socket only ever sees ciphertext: nothing to send from files.
                Ok(permit) => Ok((Counted { inner: stream, _permit: permit, sendfile: plain }, service)),
                Err(_) => {
                    warn!(max, "connection refused: limits.max_connections reached");
                    if plain {
                        // Let the request arrive first (clients treat an answer before their
                        // request as a broken connection), for at most a second.
                        let second = std::time::Duration::from_secs(1);
                        let mut head = [0u8; 8192];
                        let _ = tokio::time::timeout(second, stream.read(&mut head)).await;
                        let _ = tokio::time::timeout(second, stream.write_all(BUSY)).await;
                        let _ = stream.shutdown().await;
                    }
                    Err(io::Error::other("too many connections"))
                }
            }
        })
    }
}

/// A connection holding its slot until dropped. On plain TCP, bytes that lie in a blob's
/// memory map (`berth_blob::file_range`) go out with `sendfile(2)`: from the page cache to the
/// socket without passing through this process (see `berth_blob::mapped`).
pub struct Counted {
    inner: TcpStream,
    _permit: OwnedSemaphorePermit,
    sendfile: bool,
}

impl Counted {
    /// Send `len` bytes of `file` from `offset`, when the socket can take some.
    fn poll_sendfile(
        &self,
        cx: &mut Context<'_>,
        file: &std::fs::File,
        offset: u64,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.inner.poll_write_ready(cx))?;
            let mut off = offset;
            let sent = self.inner.try_io(Interest::WRITABLE, || {
                rustix::fs::sendfile(&self.inner, file, Some(&mut off), len).map_err(io::Error::from)
            });
            match sent {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.sendfile
            && let Some((file, offset, len)) = berth_blob::file_range(buf)
        {
            return self.poll_sendfile(cx, &file, offset, len);
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.sendfile {
            // The first non-empty buffer decides: mapped bytes go out alone by sendfile;
            // otherwise the buffers up to the next mapped one go out in one writev.
            let mapped = |b: &io::IoSlice<'_>| berth_blob::file_range(b);
            if let Some(first) = bufs.iter().position(|b| !b.is_empty()) {
                if let Some((file, offset, len)) = mapped(&bufs[first]) {
                    return self.poll_sendfile(cx, &file, offset, len);
                }
                let end = bufs[first..].iter().position(|b| mapped(b).is_some()).map_or(bufs.len(), |i| first + i);
                return Pin::new(&mut self.inner).poll_write_vectored(cx, &bufs[..end]);
            }
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Raise the soft open-files limit to the hard one (each connection is a file), and log both.
pub fn raise_nofile_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    let before = lim.current;
    if lim.current < lim.maximum {
        lim.current = lim.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, lim) {
            warn!(error = %e, "could not raise the open-files limit");
        }
    }
    let now = getrlimit(Resource::Nofile);
    let show = |v: Option<u64>| v.map_or("unlimited".to_owned(), |n| n.to_string());
    info!(
        before = %show(before),
        now = %show(now.current),
        hard = %show(now.maximum),
        "open-files limit (RLIMIT_NOFILE)"
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_busy_response_is_well_formed() {
        let text = std::str::from_utf8(super::BUSY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())), "{head}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["errors"][0]["code"], "UNAVAILABLE");
    }
}
