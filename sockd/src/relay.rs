//! Moving bytes between the client and the destination once a request is granted: both
//! directions at once, each until its reader reports end of stream, which is passed on as
//! `shutdown(SHUT_WR)` (half-close) so the other direction keeps flowing — except for the
//! direction that ends last, whose FIN the closing of both sockets sends. Ends when both
//! directions are done, when either side fails, after the idle timeout, or when the direction
//! left open after a half-close stays silent for the half-close timeout.
//!
//! A direction holds a buffer only while data is moving: it waits for readability first, then
//! borrows a buffer from a shared pool, reads and writes until the socket has nothing more, and
//! gives the buffer back. An idle session holds no buffer at all.
//!
//! Each chunk moved is added to the session's count and to sockd's total for `--metrics`
//! (`metrics::tcp_bytes`): two relaxed atomic adds per chunk, nothing per byte.
//!
//! Not here: any SOCKS bytes. Nothing but the peers' own data is ever written.

use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::Poll;
use std::time::Duration;

use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWriteExt, Interest, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::metrics::{self, Direction};
use crate::sys;

/// Size of a relay buffer.
const BUFFER_SIZE: usize = 64 * 1024;
/// Buffers kept for reuse; more are freed when returned.
const POOL_KEEP: usize = 128;

/// Buffers not in use, shared by all sessions.
static POOL: Mutex<Vec<Box<[u8]>>> = Mutex::new(Vec::new());

fn take_buffer() -> Box<[u8]> {
    let reused = POOL.lock().ok().and_then(|mut pool| pool.pop());
    reused.unwrap_or_else(|| vec![0u8; BUFFER_SIZE].into_boxed_slice())
}

fn give_buffer(buffer: Box<[u8]>) {
    if let Ok(mut pool) = POOL.lock() {
        if pool.len() < POOL_KEEP {
            pool.push(buffer);
        }
    }
}

/// How a relay ended.
#[derive(Debug)]
pub enum RelayEnd {
    /// Both sides finished sending.
    Finished,
    /// Neither side sent anything for the idle timeout.
    Idle,
    /// One side had closed and the other stayed silent for the half-close timeout.
    HalfClosedIdle,
    /// sockd is stopping and the grace period is over.
    Shutdown,
    /// A read or write failed (reset, broken pipe…).
    Failed(std::io::Error),
}

/// What a relay did.
#[derive(Debug)]
pub struct RelayStats {
    /// Bytes from the client to the destination.
    pub sent: u64,
    /// Bytes from the destination to the client.
    pub received: u64,
    /// Why it stopped.
    pub end: RelayEnd,
}

/// Relays until both directions are finished; `idle` bounds the silence in both directions,
/// `half_close` the silence of the remaining direction once the other has finished.
pub async fn relay(
    client: TcpStream,
    remote: TcpStream,
    idle: Option<Duration>,
    half_close: Duration,
    stop: &Notify,
) -> RelayStats {
    let start = Instant::now();
    let last_activity_ms = AtomicU64::new(0);
    let sent = AtomicU64::new(0);
    let received = AtomicU64::new(0);
    // Set by the first direction to reach end of stream (see `pass_end_of_stream`).
    let one_ended = AtomicBool::new(false);
    let (client_read, client_write) = client.into_split();
    let (remote_read, remote_write) = remote.into_split();
    let (up, down) = (metrics::tcp_bytes(Direction::Sent), metrics::tcp_bytes(Direction::Received));
    // The far side's socket is sockd's alone (its own connect, or BIND's accept); the client's
    // is too, but under inetd (see `client_socket_shared`).
    let upload_end = (&last_activity_ms, &one_ended, true);
    let download_end = (&last_activity_ms, &one_ended, !CLIENT_SHARED.load(Ordering::Relaxed));
    let upload = copy_until_eof(client_read, remote_write, (&sent, up), upload_end, start);
    let download =
        copy_until_eof(remote_read, client_write, (&received, down), download_end, start);
    tokio::pin!(upload, download);
    let (mut upload_done, mut download_done) = (false, false);
    let end = loop {
        if upload_done && download_done {
            break RelayEnd::Finished;
        }
        let half_closed = upload_done || download_done;
        let limit =
            if half_closed { Some(idle.map_or(half_close, |i| i.min(half_close))) } else { idle };
        tokio::select! {
            result = &mut upload, if !upload_done => match result {
                Ok(()) => upload_done = true,
                Err(e) => break RelayEnd::Failed(e),
            },
            result = &mut download, if !download_done => match result {
                Ok(()) => download_done = true,
                Err(e) => break RelayEnd::Failed(e),
            },
            () = idle_expired(limit, &last_activity_ms, start) => {
                break if half_closed { RelayEnd::HalfClosedIdle } else { RelayEnd::Idle };
            }
            () = stop.notified() => break RelayEnd::Shutdown,
        }
    };
    RelayStats {
        sent: sent.load(Ordering::Relaxed),
        received: received.load(Ordering::Relaxed),
        end,
    }
}

/// Whether directions move bytes with splice(2) through a pipe (`--relay splice`) rather than
/// through a user-space buffer (`--relay copy`).
static SPLICE: AtomicBool = AtomicBool::new(true);

/// Chooses how directions move bytes, for the rest of the process.
pub fn use_splice(splice: bool) {
    SPLICE.store(splice, Ordering::Relaxed);
}

/// Whether a client's socket may be open in another descriptor or process too, where closing
/// sockd's descriptor sends no FIN (see `pass_end_of_stream`).
static CLIENT_SHARED: AtomicBool = AtomicBool::new(false);

/// Says, for the rest of the process, that the client's socket may be open elsewhere too: under
/// inetd it is standard input, which inetd may also have passed as standard output and error,
/// and whose starter may keep a copy. Its end of stream is then always passed on with
/// shutdown(2).
pub fn client_socket_shared() {
    CLIENT_SHARED.store(true, Ordering::Relaxed);
}

/// Copies one direction, then passes its end of stream on (`pass_end_of_stream`).
async fn copy_until_eof(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    (counter, total): (&AtomicU64, &IntCounter),
    (last_activity_ms, one_ended, sole_owner): (&AtomicU64, &AtomicBool, bool),
    start: Instant,
) -> std::io::Result<()> {
    let mut copied: u64 = 0;
    loop {
        // `drain` ends when a read returns Pending, which tokio also does when the task has
        // used up its cooperative budget, with the socket still readable: `readable()` would
        // then answer at once, and this loop would spin inside one poll of the task (seen: a
        // full-duplex transfer stalled, a thread at 100%). Spending one unit of the budget here
        // yields to the scheduler once the budget is gone, and it is renewed.
        tokio::task::consume_budget().await;
        from.readable().await?;
        // A direction starts by copying (short exchanges cost no pipe) and moves to splice once
        // it has carried a bulk transfer's worth; if no descriptors are left for a pipe, it
        // keeps copying.
        if SPLICE.load(Ordering::Relaxed) && copied >= SPLICE_AFTER {
            if let Ok(pipe) = sys::pipe() {
                let activity = Activity { counter, total, last_activity_ms, start };
                // Boxed: the splice loop's state is allocated only once it runs, so it does not
                // enlarge every idle session's task.
                Box::pin(splice_until_eof(&from, &mut to, &pipe, &activity)).await?;
                return pass_end_of_stream(to, one_ended, sole_owner).await;
            }
        }
        let mut buffer = take_buffer();
        let activity = Activity { counter, total, last_activity_ms, start };
        let before = counter.load(Ordering::Relaxed);
        let drained = drain(&mut from, &mut to, &mut buffer, &activity).await;
        copied += counter.load(Ordering::Relaxed) - before;
        give_buffer(buffer);
        if drained? {
            return pass_end_of_stream(to, one_ended, sole_owner).await;
        }
    }
}

/// Passes one direction's end of stream on to its writer. The first direction to end
/// half-closes (`shutdown(SHUT_WR)`, a FIN) and leaves the other running. When the other has
/// ended already, the relay is about to close both sockets, and close(2) sends this FIN
/// itself: nothing is left unread on the writer's socket (its own reader saw end of stream,
/// and unread data would turn close into a reset), so the write half is dropped without the
/// shutdown, one system call fewer per connection (issue 17). Only where sockd's descriptor is
/// the socket's only one (`sole_owner`): closing one of several sends nothing.
async fn pass_end_of_stream(
    mut to: OwnedWriteHalf,
    one_ended: &AtomicBool,
    sole_owner: bool,
) -> std::io::Result<()> {
    if one_ended.swap(true, Ordering::Relaxed) && sole_owner {
        to.forget();
        Ok(())
    } else {
        to.shutdown().await
    }
}

/// Moves one direction with splice(2): socket to pipe, pipe to socket, no copy through user
/// space, until end of stream.
async fn splice_until_eof(
    from: &OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    pipe: &sys::Pipe,
    activity: &Activity<'_>,
) -> std::io::Result<()> {
    let source: &TcpStream = from.as_ref();
    let (from_fd, pipe_in, pipe_out) =
        (source.as_raw_fd(), pipe.write.as_raw_fd(), pipe.read.as_raw_fd());
    loop {
        let moved = loop {
            source.readable().await?;
            match source.try_io(Interest::READABLE, || sys::splice(from_fd, pipe_in, SPLICE_CHUNK))
            {
                Ok(n) => break n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if moved == 0 {
            return Ok(());
        }
        let sink: &TcpStream = (*to).as_ref();
        let to_fd = sink.as_raw_fd();
        let mut left = moved;
        while left > 0 {
            sink.writable().await?;
            match sink.try_io(Interest::WRITABLE, || sys::splice(pipe_out, to_fd, left)) {
                Ok(n) => left -= n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        activity.counter.fetch_add(moved as u64, Ordering::Relaxed);
        activity.total.inc_by(moved as u64);
        let now = activity.start.elapsed().as_millis() as u64;
        activity.last_activity_ms.store(now, Ordering::Relaxed);
    }
}

/// Bytes a direction copies before it switches to splice.
const SPLICE_AFTER: u64 = 256 * 1024;

/// Most bytes one splice call moves from a socket into the pipe.
const SPLICE_CHUNK: usize = 256 * 1024;

/// Where a direction records what it moved.
struct Activity<'a> {
    counter: &'a AtomicU64,
    /// sockd's total for this direction (`--metrics`).
    total: &'a IntCounter,
    last_activity_ms: &'a AtomicU64,
    start: Instant,
}

/// Moves whatever `from` has now; `Ok(true)` at end of stream, `Ok(false)` once it would block.
///
/// Reads through tokio's `poll_read`, not `try_read`: a read that fills less than the buffer
/// has emptied the socket's receive queue, and `poll_read` then clears the socket's readiness
/// itself (epoll is edge-triggered: data arriving later raises a new edge, and an end of stream
/// seen meanwhile stays recorded). So a short exchange returns to waiting after one read,
/// where `try_read` would need a second one that fails with EAGAIN to learn the same thing.
async fn drain(
    from: &mut OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    buffer: &mut [u8],
    activity: &Activity<'_>,
) -> std::io::Result<bool> {
    loop {
        match read_now(from, buffer).await {
            Some(Ok(0)) => return Ok(true),
            Some(Ok(n)) => {
                to.write_all(&buffer[..n]).await?;
                activity.counter.fetch_add(n as u64, Ordering::Relaxed);
                activity.total.inc_by(n as u64);
                let now = activity.start.elapsed().as_millis() as u64;
                activity.last_activity_ms.store(now, Ordering::Relaxed);
            }
            None => return Ok(false),
            Some(Err(e)) if e.kind() == ErrorKind::Interrupted => {}
            Some(Err(e)) => return Err(e),
        }
    }
}

/// One read of what `from` holds now: `None` when it has nothing (the task is then registered
/// for its next readiness, as after `readable()`), else what `poll_read` gave.
async fn read_now(from: &mut OwnedReadHalf, buffer: &mut [u8]) -> Option<std::io::Result<usize>> {
    std::future::poll_fn(|cx| {
        let mut filled = ReadBuf::new(buffer);
        match Pin::new(&mut *from).poll_read(cx, &mut filled) {
            Poll::Pending => Poll::Ready(None),
            Poll::Ready(result) => Poll::Ready(Some(result.map(|()| filled.filled().len()))),
        }
    })
    .await
}

/// Completes once nothing moved for `idle`; never, when `idle` is `None`.
async fn idle_expired(idle: Option<Duration>, last_activity_ms: &AtomicU64, start: Instant) {
    let Some(idle) = idle else {
        return std::future::pending().await;
    };
    loop {
        let last = start + Duration::from_millis(last_activity_ms.load(Ordering::Relaxed));
        let due = last + idle;
        if Instant::now() >= due {
            return;
        }
        tokio::time::sleep_until(due).await;
    }
}
