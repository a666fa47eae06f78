//! Connections: the simulator's own listener, which bounds what clients can
//! hold open, and a kill switch that lets a handler cut a connection without
//! answering.
//!
//! # Limits
//!
//! Each accepted socket is a [`ConnIo`] that knows what its connection is
//! doing: waiting for a request, receiving one (from its first byte until
//! the handler starts), or answering. [`ConnLimits`] bound each phase and
//! the total:
//!
//! - a connection that has waited for a request for `idle_timeout` without
//!   a byte arriving is closed (a half-open connection, or keep-alive left
//!   open);
//! - a request must arrive whole (head and body) within `header_timeout` of
//!   its first byte (a client trickling a header byte by byte);
//! - at most `max_connections` are open: at the cap, a new connection closes
//!   the one that has waited longest without a request in progress, so
//!   half-open connections cannot keep a real client out; when every one is
//!   answering, the new one waits for the first to finish.
//!
//! Answering has no timeout: the handlers' own delays (the `slow` fault,
//! transitions) bound it.
//!
//! # The kill switch
//!
//! The drop faults must look, from the client, exactly like a connection lost
//! in the middle of a call: the request was sent, no response byte ever
//! arrives, the socket closes. HTTP servers do not offer that, so each
//! [`ConnIo`] shares a kill switch with the request handlers of that
//! connection ([`Conn`], handed to them as axum `ConnectInfo`). A handler
//! that wants to drop flips the switch and returns; hyper's first write of the
//! response then fails, hyper closes the connection, and not one byte of the
//! answer leaves the process.

use std::collections::HashMap;
use std::future::Future as _;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Bounds on the connections a simulator holds (`runbook sim
/// --max-connections`, `--header-timeout`, `--idle-timeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// Most connections open at once (at least 1).
    pub max_connections: usize,
    /// How long a request may take to arrive whole, from its first byte.
    pub header_timeout: Duration,
    /// How long a connection may wait for a request with nothing arriving.
    pub idle_timeout: Duration,
}

impl Default for ConnLimits {
    /// 512 connections, a 10 s header timeout, a 60 s idle timeout.
    fn default() -> ConnLimits {
        ConnLimits {
            max_connections: 512,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// What a connection is doing.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// Waiting for a request, since then.
    Idle(Instant),
    /// Receiving a request whose first byte arrived then.
    Receiving(Instant),
    /// A handler is answering a request.
    Answering,
}

/// The state of one connection, shared by its socket and its handlers.
#[derive(Debug)]
struct ConnState {
    phase: Mutex<Phase>,
    /// Set by a drop fault: reads and writes fail from now on.
    killed: AtomicBool,
    /// Cancelled to make room for a new connection.
    evicted: CancellationToken,
}

impl ConnState {
    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes arrived: a request starts, unless one is already under way.
    fn received(&self, now: Instant) {
        let mut phase = self.phase();
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Receiving(now);
        }
    }

    /// When the connection is closed if nothing more arrives.
    fn deadline(&self, limits: &ConnLimits) -> Option<Instant> {
        match *self.phase() {
            // A timeout too long to add is no timeout.
            Phase::Idle(since) => since.checked_add(limits.idle_timeout),
            Phase::Receiving(since) => since.checked_add(limits.header_timeout),
            Phase::Answering => None,
        }
    }
}

/// The open connections of one simulator.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    open: Mutex<HashMap<u64, Arc<ConnState>>>,
    next: AtomicU64,
}

impl Registry {
    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many connections are open.
    pub(crate) fn len(&self) -> usize {
        self.open().len()
    }

    fn add(&self, now: Instant) -> (u64, Arc<ConnState>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState {
            phase: Mutex::new(Phase::Idle(now)),
            killed: AtomicBool::new(false),
            evicted: CancellationToken::new(),
        });
        self.open().insert(id, Arc::clone(&state));
        (id, state)
    }

    /// Closes the connection that has waited longest with no request being
    /// answered, if there is one.
    fn evict_one(&self) {
        let open = self.open();
        let oldest = open
            .values()
            .filter(|c| !c.evicted.is_cancelled())
            .filter_map(|c| match *c.phase() {
                Phase::Idle(since) | Phase::Receiving(since) => Some((since, c)),
                Phase::Answering => None,
            })
            .min_by_key(|(since, _)| *since);
        if let Some((_, c)) = oldest {
            c.evicted.cancel();
        }
    }
}

/// A TCP listener whose connections are bounded by [`ConnLimits`] and can be
/// cut by their handlers.
pub(crate) struct SimListener {
    inner: TcpListener,
    limits: ConnLimits,
    slots: Arc<Semaphore>,
    registry: Arc<Registry>,
}

impl SimListener {
    pub(crate) fn new(
        inner: TcpListener,
        limits: ConnLimits,
        registry: Arc<Registry>,
    ) -> SimListener {
        SimListener {
            inner,
            limits,
            slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            registry,
        }
    }

    /// A slot for a new connection: a free one, else one freed by closing
    /// the connection idle the longest, else the first one freed.
    async fn slot(&self) -> OwnedSemaphorePermit {
        if let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() {
            return slot;
        }
        self.registry.evict_one();
        Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .unwrap_or_else(|_| unreachable!("the semaphore is never closed"))
    }
}

impl axum::serve::Listener for SimListener {
    type Io = ConnIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (ConnIo, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let slot = self.slot().await;
                    // Small request/response exchanges: do not wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    let (id, state) = self.registry.add(Instant::now());
                    let evicted = Box::pin(state.evicted.clone().cancelled_owned());
                    return (
                        ConnIo {
                            stream,
                            id,
                            state,
                            registry: Arc::clone(&self.registry),
                            limits: self.limits,
                            deadline: Box::pin(tokio::time::sleep_until(Instant::now())),
                            evicted,
                            _slot: slot,
                        },
                        addr,
                    );
                }
                // A client that gave up before we accepted: not our problem.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::ConnectionRefused
                    ) => {}
                // Out of file descriptors and the like: back off, then retry.
                Err(e) => {
                    tracing::error!("simulator: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// One accepted connection: reads fail once it times out or is evicted,
/// reads and writes once it is killed; its slot is freed when it is dropped.
pub(crate) struct ConnIo {
    stream: TcpStream,
    id: u64,
    state: Arc<ConnState>,
    registry: Arc<Registry>,
    limits: ConnLimits,
    /// The read deadline of the current phase.
    deadline: Pin<Box<Sleep>>,
    /// Resolves when the connection is evicted.
    evicted: Pin<Box<WaitForCancellationFutureOwned>>,
    _slot: OwnedSemaphorePermit,
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        self.registry.open().remove(&self.id);
    }
}

fn killed() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection dropped by fault injection",
    )
}

impl AsyncRead for ConnIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.state.killed.load(Ordering::Acquire) {
            return Poll::Ready(Err(killed()));
        }
        if self.evicted.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed to make room for a new connection",
            )));
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.state.received(Instant::now());
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let Some(deadline) = self.state.deadline(&self.limits) else {
                    return Poll::Pending;
                };
                if self.deadline.deadline() != deadline {
                    self.deadline.as_mut().reset(deadline);
                }
                match self.deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no complete request in time",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.state.killed.load(Ordering::Acquire) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.state.killed.load(Ordering::Acquire) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.state.killed.load(Ordering::Acquire) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The connection a request came in on, as its handler sees it.
#[derive(Clone)]
pub(crate) struct Conn {
    state: Arc<ConnState>,
}

impl Conn {
    /// Makes the connection fail its next read or write, so it closes
    /// without sending anything more.
    pub(crate) fn kill(&self) {
        self.state.killed.store(true, Ordering::Release);
    }

    /// Marks the connection as answering (no read timeout) until the guard
    /// is dropped; then it waits for its next request.
    pub(crate) fn answering(&self) -> Answering {
        *self.state.phase() = Phase::Answering;
        Answering {
            state: Arc::clone(&self.state),
        }
    }
}

/// While alive, the connection is answering a request.
pub(crate) struct Answering {
    state: Arc<ConnState>,
}

impl Drop for Answering {
    fn drop(&mut self) {
        *self.state.phase() = Phase::Idle(Instant::now());
    }
}

impl Connected<IncomingStream<'_, SimListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Conn {
        Conn {
            state: Arc::clone(&stream.io().state),
        }
    }
}
