//! The accept loop every listener runs: connection caps, handshake and idle
//! timeouts, and a back-off when out of file descriptors.
use std::{
    collections::HashMap,
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, ready},
    time::Duration,
};

use futures::Stream;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    runtime::{Handle, RuntimeMetrics},
    time::{Instant, Sleep},
};
use tracing::warn;

use crate::{config::Connections, logs::Throttle};

/// Bytes a client must send within the handshake timeout: the length of
/// the HTTP/2 preface (a TLS hello is longer).
const HANDSHAKE_BYTES: usize = 24;

/// Back-off of the accept loop when out of descriptors: first and longest.
const BACKOFF_FIRST: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// At most one log line per reason and interval.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Connections open on one listener, in all and per peer IP address.
#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_peer: HashMap<IpAddr, usize>,
}

/// The accepted connections of one listener, as a stream for tonic's
/// `serve_with_incoming_shutdown` or [`super::http::serve`]. Never yields an
/// error: accept errors are handled here.
pub struct Incoming {
    inner: Pin<Box<dyn Stream<Item = io::Result<Conn>> + Send>>,
}

struct Loop {
    listener: TcpListener,
    limits: Connections,
    open: Arc<Mutex<Open>>,
    backoff: Duration,
    out_of_files: Throttle,
    over_total: Throttle,
    over_peer: Throttle,
}

impl Incoming {
    /// Accepts on `listener` with `limits` (`max_connections` as given: see
    /// [`super::connection_cap`]).
    pub fn new(listener: TcpListener, limits: Connections) -> Self {
        let state = Loop {
            listener,
            limits,
            open: Arc::default(),
            backoff: BACKOFF_FIRST,
            out_of_files: Throttle::new(LOG_EVERY),
            over_total: Throttle::new(LOG_EVERY),
            over_peer: Throttle::new(LOG_EVERY),
        };
        let inner = futures::stream::unfold(state, |mut state| async move {
            let conn = state.next().await;
            Some((Ok(conn), state))
        });
        Incoming {
            inner: Box::pin(inner),
        }
    }
}

impl Stream for Incoming {
    type Item = io::Result<Conn>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl Loop {
    /// The next connection within the caps.
    async fn next(&mut self) -> Conn {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) if out_of_resources(&e) => {
                    if let Some(times) = self.out_of_files.ready() {
                        warn!(error = %e, times, "cannot accept connections: out of file descriptors or memory; waiting (raise the open-files limit or lower --max-connections)");
                    }
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
                // Errors of one connection (reset before accept): the next.
                Err(_) => continue,
            };
            self.backoff = BACKOFF_FIRST;
            let _ = stream.set_nodelay(true);
            let ip = peer.ip();
            {
                let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
                if open.total >= self.limits.max_connections {
                    drop(open);
                    if let Some(times) = self.over_total.ready() {
                        warn!(
                            limit = self.limits.max_connections,
                            times, "refused connections: --max-connections reached"
                        );
                    }
                    continue;
                }
                let of_peer = open.per_peer.entry(ip).or_default();
                if *of_peer >= self.limits.max_connections_per_peer {
                    drop(open);
                    if let Some(times) = self.over_peer.ready() {
                        warn!(%peer, limit = self.limits.max_connections_per_peer, times, "refused connections: --max-connections-per-peer reached");
                    }
                    continue;
                }
                *of_peer += 1;
                open.total += 1;
            }
            return Conn::new(stream, ip, self.open.clone(), &self.limits);
        }
    }
}

/// Accept errors that say the process (or system) is out of descriptors or
/// memory: retrying at once would spin.
fn out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc_errno::EMFILE | libc_errno::ENFILE | libc_errno::ENOBUFS | libc_errno::ENOMEM)
    )
}

mod libc_errno {
    pub const ENOMEM: i32 = rustix::io::Errno::NOMEM.raw_os_error();
    pub const ENFILE: i32 = rustix::io::Errno::NFILE.raw_os_error();
    pub const EMFILE: i32 = rustix::io::Errno::MFILE.raw_os_error();
    pub const ENOBUFS: i32 = rustix::io::Errno::NOBUFS.raw_os_error();
}

/// A connection that wrote less than this long ago is in a burst: while
/// tasks woken from outside the runtime wait to run, its next write waits
/// for the frames they are about to send (see `Conn::poll_coalesce`). Under
/// load, responses are woken together (a store commit answers many calls
/// at once), and one write then carries them all. At 256 submitters: 2.75
/// -> 1.92 `writev` calls per task and 4-9 % less server CPU per durable
/// task (bench/ANALYSIS.md, item 14). At light load nothing waits, and the
/// write goes at once (item 16).
const BURST_WITHIN: Duration = Duration::from_micros(500);

/// One accepted connection: counted until dropped, and failing with
/// `TimedOut` (which closes it) when its peer is silent too long.
pub struct Conn {
    io: TcpStream,
    ip: IpAddr,
    open: Arc<Mutex<Open>>,
    /// Bytes read so far, up to [`HANDSHAKE_BYTES`].
    seen: usize,
    last_read: Instant,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    /// Set once a write has yielded to the tasks ready on this worker (see
    /// [`Conn::poll_coalesce`]); cleared by the write that follows.
    write_yielded: bool,
    /// When the last write went out (`None`: never).
    last_write: Option<Instant>,
    /// The runtime's queue of tasks woken from outside it (the store's
    /// writer thread wakes answers there): work that may be about to write.
    runtime: Option<RuntimeMetrics>,
}

impl Conn {
    fn new(io: TcpStream, ip: IpAddr, open: Arc<Mutex<Open>>, limits: &Connections) -> Self {
        let now = Instant::now();
        Conn {
            io,
            ip,
            open,
            seen: 0,
            last_read: now,
            idle: limits.idle_timeout,
            deadline: Box::pin(tokio::time::sleep_until(now + limits.handshake_timeout)),
            write_yielded: false,
            last_write: None,
            runtime: Handle::try_current().ok().map(|h| h.metrics()),
        }
    }

    /// The accepted TCP stream (for the transport's connection info).
    pub fn stream(&self) -> &TcpStream {
        &self.io
    }

    /// The peer's address.
    pub fn peer(&self) -> io::Result<SocketAddr> {
        self.io.peer_addr()
    }

    /// In a burst of writes (the last less than [`BURST_WITHIN`] ago) while
    /// woken tasks wait to run, yields once before a write to the tasks
    /// ready on this worker, so that the frames they are about to send share
    /// this write (one `writev` for many) instead of one each. The task wakes
    /// itself and goes to the back of the worker's run queue. A write after
    /// a quiet spell, or with nothing waiting, goes at once.
    fn poll_coalesce(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let now = Instant::now();
        let burst = (self.last_write).is_some_and(|last| now.duration_since(last) < BURST_WITHIN);
        if !self.write_yielded && burst && self.woken_work_waits() {
            self.write_yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.write_yielded = false;
        self.last_write = Some(now);
        Poll::Ready(())
    }

    /// Whether tasks woken from outside the runtime wait to run. A store
    /// commit wakes the calls it answers from the writer thread, so they
    /// queue there; at light load the queue is empty and a write goes at
    /// once.
    fn woken_work_waits(&self) -> bool {
        (self.runtime.as_ref()).is_some_and(|m| m.global_queue_depth() > 0)
    }

    /// `Pending`, or `TimedOut` once the deadline (handshake, then idle) has
    /// passed with nothing read.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            ready!(self.deadline.as_mut().poll(cx));
            // Reads move the deadline lazily: here, when the timer fires.
            let due = self.last_read + self.idle;
            if self.seen >= HANDSHAKE_BYTES && due > Instant::now() {
                self.deadline.as_mut().reset(due);
                continue;
            }
            let what = if self.seen < HANDSHAKE_BYTES {
                "no handshake within --handshake-timeout-ms"
            } else {
                "nothing received within --idle-timeout-ms"
            };
            return Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, what));
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total -= 1;
        if let Some(n) = open.per_peer.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.per_peer.remove(&self.ip);
            }
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                if n > 0 {
                    let this = &mut *self;
                    if this.seen < HANDSHAKE_BYTES {
                        this.seen = (this.seen + n).min(HANDSHAKE_BYTES);
                        if this.seen == HANDSHAKE_BYTES {
                            let due = Instant::now() + this.idle;
                            this.deadline.as_mut().reset(due);
                        }
                    }
                    this.last_read = Instant::now();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match self.poll_deadline(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_coalesce(cx));
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_coalesce(cx));
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    /// `false`, though the socket could: h2 then copies a DATA payload under
    /// 1 KiB into its write buffer instead of chaining it (and holding later
    /// frames back until the chained one is written). A unary answer's
    /// headers, message and trailers, and under load many answers, go out in
    /// one `send`: 2.0 -> 1.0 socket writes per submit at an open-loop 1,000/s
    /// and 2.1 -> 1.45 per task at 256 submitters (`perf stat`,
    /// bench/ANALYSIS.md item 16). A payload of 1 KiB or more costs a second
    /// `send` instead of one `writev`.
    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn limits(total: usize, per_peer: usize) -> Connections {
        Connections {
            max_connections: total,
            max_connections_per_peer: per_peer,
            handshake_timeout: Duration::from_secs(3600),
            idle_timeout: Duration::from_secs(3600),
            ..Connections::default()
        }
    }

    async fn listen(limits: Connections) -> (SocketAddr, Incoming) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        (l.local_addr().unwrap(), Incoming::new(l, limits))
    }

    /// Reads until the server closes the connection (EOF or reset).
    async fn closed(mut s: TcpStream) {
        let mut buf = [0u8; 64];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    #[tokio::test]
    async fn connections_past_the_per_peer_cap_are_closed_and_a_freed_slot_is_reused() {
        let (addr, mut incoming) = listen(limits(100, 2)).await;
        let a = TcpStream::connect(addr).await.unwrap();
        let first = incoming.next().await.unwrap().unwrap();
        let _b = TcpStream::connect(addr).await.unwrap();
        let _second = incoming.next().await.unwrap().unwrap();
        let c = TcpStream::connect(addr).await.unwrap();
        // The third is accepted and dropped inside the loop; the loop then
        // waits for the next, which comes after a slot frees.
        let next = tokio::spawn(async move { incoming.next().await.unwrap().unwrap() });
        errand_testkit::within("the third connection closed", closed(c)).await;
        drop(first);
        drop(a);
        let d = TcpStream::connect(addr).await.unwrap();
        let fourth = errand_testkit::within("the fourth accepted", next)
            .await
            .unwrap();
        assert_eq!(fourth.peer().unwrap(), d.local_addr().unwrap());
    }

    #[tokio::test]
    async fn the_listener_cap_counts_every_peer() {
        let (addr, mut incoming) = listen(limits(1, 10)).await;
        let _a = TcpStream::connect(addr).await.unwrap();
        let _first = incoming.next().await.unwrap().unwrap();
        let b = TcpStream::connect(addr).await.unwrap();
        let _wait = tokio::spawn(async move { incoming.next().await });
        errand_testkit::within("the second connection closed", closed(b)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_times_out_and_a_talking_one_does_not() {
        let mut l = limits(10, 10);
        l.handshake_timeout = Duration::from_secs(10);
        l.idle_timeout = Duration::from_secs(60);
        let (addr, mut incoming) = listen(l).await;
        let _silent = TcpStream::connect(addr).await.unwrap();
        let mut conn = incoming.next().await.unwrap().unwrap();
        let started = Instant::now();
        let err = conn.read(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("handshake"), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(10));

        let mut talker = TcpStream::connect(addr).await.unwrap();
        let mut conn = incoming.next().await.unwrap().unwrap();
        talker.write_all(&[0u8; HANDSHAKE_BYTES]).await.unwrap();
        let mut buf = [0u8; HANDSHAKE_BYTES];
        conn.read_exact(&mut buf).await.unwrap();
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(50)).await;
        talker.write_all(b"ping").await.unwrap();
        assert_eq!(conn.read(&mut buf).await.unwrap(), 4);
        let err = conn.read(&mut buf).await.unwrap_err();
        assert!(err.to_string().contains("idle"), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(110));
    }

    /// Counts the wake-ups of the task it wakes.
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl futures::task::ArcWake for Wakes {
        fn wake_by_ref(arc: &Arc<Self>) {
            arc.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// One `poll_write` of `bytes` on `conn`: the bytes written, or `None`
    /// if it yielded.
    fn write_once(conn: &mut Conn, cx: &mut Context<'_>, bytes: &[u8]) -> Option<usize> {
        match Pin::new(conn).poll_write(cx, bytes) {
            Poll::Ready(n) => Some(n.unwrap()),
            Poll::Pending => None,
        }
    }

    /// Leaves a task in the runtime's queue of tasks woken from outside it,
    /// as the store's writer thread leaves the answers it wakes.
    fn wake_from_outside() {
        let handle = tokio::runtime::Handle::current();
        std::thread::spawn(move || drop(handle.spawn(async {})))
            .join()
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_in_a_burst_yields_once_to_woken_work_and_goes_at_once_otherwise() {
        let (addr, mut incoming) = listen(limits(10, 10)).await;
        let mut peer = TcpStream::connect(addr).await.unwrap();
        let mut conn = incoming.next().await.unwrap().unwrap();
        let wakes = Arc::new(Wakes(Default::default()));
        let waker = futures::task::waker(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let woken = || wakes.0.load(std::sync::atomic::Ordering::SeqCst);

        // The first write goes at once.
        assert_eq!(write_once(&mut conn, &mut cx, b"a"), Some(1));
        // The next, with no time between but nothing woken that could
        // write with it: at once too (light load pays nothing).
        assert_eq!(write_once(&mut conn, &mut cx, b"b"), Some(1));
        assert_eq!(woken(), 0);
        // In a burst with woken work waiting: it yields once, waking its
        // own task, then goes.
        wake_from_outside();
        assert_eq!(write_once(&mut conn, &mut cx, b"c"), None);
        assert_eq!(woken(), 1);
        assert_eq!(write_once(&mut conn, &mut cx, b"c"), Some(1));
        // After a quiet spell, at once again, whatever waits.
        tokio::time::advance(BURST_WITHIN).await;
        wake_from_outside();
        assert_eq!(write_once(&mut conn, &mut cx, b"d"), Some(1));
        assert_eq!(woken(), 1);

        let mut got = [0u8; 4];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"abcd");
    }
}
