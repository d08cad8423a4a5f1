//! One local connection: a single task owns the socket, unsplit. It writes what its
//! mailbox holds (every queued frame, flushed once), reads the client's frames and hands
//! them to the service, and keeps one timer for pings, idleness and token expiry. A
//! frame being handled does not stop the writes: the task drains its mailbox meanwhile,
//! so a reply or a replay longer than the queue never waits on itself.
//!
//! Anyone may end the connection through its mailbox's close request; the first reason
//! given is the one the client reads in the close frame.

use std::collections::VecDeque;
use std::future::Future;
use std::task::{Context, Poll};
use std::time::Duration;

use shared::ports::{Connection, ConnectionId};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as SocketError, Message};
use tracing::Instrument;

use super::LocalWebSocket;
use super::gate::{Gate, waker_changed};
use super::rate_limit::{FloodGuard, Verdict};
use super::slots::Slot;
use super::socket::Socket;
use crate::frames::{self, ErrorCode, Frame};
use crate::outbox::{Close, Mail, MailboxReceiver, Outbox};
use crate::service::FrameOutcome;

/// The client closed the connection itself (or its socket failed).
const CLIENT_GONE: Close = Close {
    code: 1000,
    reason: "closed",
};

/// What a connection's task holds besides its socket. It travels boxed: the upgrade's
/// future and the task's each carry one pointer to it instead of a copy.
pub(super) struct Session {
    pub ws: LocalWebSocket,
    pub connection: Connection,
    pub mailbox: MailboxReceiver,
    /// Given back when the task ends, however it ends.
    pub _slot: Slot,
}

/// The connection's task.
///
/// Not an `async fn`: one would keep its arguments twice in its future (as passed and
/// as bound), and this future is most of an idle connection's memory. The block uses
/// what it captured in place.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would hold its arguments twice"
)]
pub(super) fn run(session: Box<Session>, mut socket: Socket) -> impl Future<Output = ()> + Send {
    async move {
        let Session {
            ws,
            connection,
            mailbox,
            ..
        } = &*session;
        let id = &connection.id;
        tracing::info!(connection = %id, user = %connection.user, "websocket open");
        let mut out = VecDeque::new();
        let why = drive(ws, connection, mailbox, &mut socket, &mut out).await;
        // A reason asked for elsewhere first (a full queue, a shutdown) is the one given.
        mailbox.close(why);
        let why = mailbox.close_reason().unwrap_or(why);
        ws.outbox.remove(id);
        // Boxed, like the frame handling: run once, they need not size every task.
        Box::pin(ws.service.disconnect(id)).await;
        Box::pin(finish(ws, id, mailbox, socket, out, why)).await;
    }
}

/// What woke the connection's task. A client's message is boxed: it is rare beside the
/// mail, and unboxed it would size the task for the whole of every write.
enum Wake {
    Mail(Mail),
    Message(Box<Option<Result<Message, SocketError>>>),
    Tick,
}

/// Runs the connection until it must close; returns why.
///
/// This future is the bulk of every idle connection's memory, so only the frequent
/// path (writing mail) is awaited in place; what is rare (a client frame, a ping, a
/// refusal) is boxed and costs its memory only while it runs. (Not an `async fn`, for
/// the reason given at [`run`].)
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would hold its arguments twice"
)]
fn drive<'a>(
    ws: &'a LocalWebSocket,
    connection: &'a Connection,
    mailbox: &'a MailboxReceiver,
    socket: &'a mut Socket,
    out: &'a mut VecDeque<Frame>,
) -> impl Future<Output = Close> + Send + 'a {
    async move {
        let config = &ws.config;
        let id = &connection.id;
        let mut expires_at = connection.expires_at;
        let start = Instant::now();
        let mut heard_at = start;
        let mut spoke_at = start;
        let mut guard = FloodGuard::new(config.rate_limit, start);
        let mut next_check = start + config.check_every();
        let mut next_ping = start + config.ping_every();
        // One timer for everything periodic; a frame written or read never touches it.
        let tick = sleep_until(next_check.min(next_ping));
        tokio::pin!(tick);
        // The socket's read side and the timer are polled only when their wakers fired.
        let (read_gate, tick_gate) = (Gate::new(), Gate::new());
        let (read_waker, tick_waker) = (read_gate.waker(), tick_gate.waker());
        let mut reads_first = false;
        let mut task_waker = None;
        // Whether mail was written since the last periodic check (the replies written
        // while a client's frame is handled do not count: at worst a buffer is freed early).
        let mut wrote = false;
        loop {
            let wake = std::future::poll_fn(|cx| {
                if waker_changed(cx, &mut task_waker) {
                    tick_gate.watch(cx.waker());
                    read_gate.watch(cx.waker());
                }
                // The timer first (its gate makes that free until it fires), then mail and
                // the client's frames in turn, so neither a stream of broadcasts nor a
                // chatty client keeps the other waiting.
                if tick_gate.pass()
                    && tick
                        .as_mut()
                        .poll(&mut Context::from_waker(&tick_waker))
                        .is_ready()
                {
                    return Poll::Ready(Wake::Tick);
                }
                for read in [reads_first, !reads_first] {
                    if read {
                        if read_gate.pass()
                            && let Poll::Ready(message) =
                                socket.poll_next(&mut Context::from_waker(&read_waker))
                        {
                            // More may be buffered already: no wake would say so.
                            read_gate.reopen();
                            return Poll::Ready(Wake::Message(Box::new(message)));
                        }
                    } else if let Poll::Ready(mail) = mailbox.poll_recv(cx, out) {
                        return Poll::Ready(Wake::Mail(mail));
                    }
                }
                Poll::Pending
            })
            .await;
            reads_first = matches!(wake, Wake::Mail(_));
            match wake {
                Wake::Mail(Mail::Close(why)) => return why,
                Wake::Mail(Mail::Frames) => {
                    wrote = true;
                    if let Err(why) = write(socket, out, config.write_timeout, id).await {
                        return why;
                    }
                }
                Wake::Tick => {
                    let now = Instant::now();
                    if now >= next_check {
                        next_check = now + config.check_every();
                        // Nothing written since the last check: idle, it keeps no buffer.
                        if !std::mem::take(&mut wrote) {
                            *out = VecDeque::new();
                            mailbox.shrink();
                        }
                        if ws.service.now() >= expires_at {
                            tracing::info!(connection = %id, "token expired");
                            return Close::TOKEN_EXPIRED;
                        }
                        if now.duration_since(spoke_at) >= config.idle_timeout {
                            tracing::info!(connection = %id, "idle");
                            return Close::IDLE;
                        }
                        if now.duration_since(heard_at) >= config.pong_timeout {
                            tracing::info!(connection = %id, "unresponsive");
                            return Close::UNRESPONSIVE;
                        }
                    }
                    if now >= next_ping {
                        next_ping = now + config.ping_every();
                        if let Err(why) = Box::pin(send(
                            socket,
                            Message::Ping(Default::default()),
                            config.write_timeout,
                            id,
                        ))
                        .await
                        {
                            return why;
                        }
                    }
                    tick.as_mut().reset(next_check.min(next_ping));
                    tick_gate.reopen();
                }
                Wake::Message(message) => {
                    let message = match *message {
                        Some(Ok(message)) => message,
                        Some(Err(e)) => {
                            tracing::debug!(connection = %id, error = %e, "read failed");
                            return if is_too_big(&e) {
                                Close::TOO_BIG
                            } else {
                                CLIENT_GONE
                            };
                        }
                        None => return CLIENT_GONE,
                    };
                    let now = Instant::now();
                    heard_at = now;
                    let text = match message {
                        Message::Text(text) => Some(text),
                        Message::Binary(_) => None,
                        Message::Ping(_) => {
                            // The library queued the pong: out with it now.
                            if let Err(why) = verdict(
                                Box::pin(timeout(config.write_timeout, socket.flush())).await,
                                id,
                            ) {
                                return why;
                            }
                            continue;
                        }
                        Message::Pong(_) | Message::Frame(_) => continue,
                        Message::Close(_) => return CLIENT_GONE,
                    };
                    spoke_at = now;
                    match guard.check(now) {
                        Verdict::Accept => {}
                        Verdict::Refuse => {
                            ws.service.metrics().frames_received.inc();
                            ws.service.metrics().frames_refused.inc();
                            let refusal = frames::error(
                                ErrorCode::RateLimited,
                                "too many frames: slow down",
                                None,
                            );
                            if Box::pin(ws.outbox.send(id, refusal)).await.is_err() {
                                return Close::TOO_SLOW;
                            }
                            continue;
                        }
                        Verdict::Close => {
                            tracing::info!(connection = %id, "closing a flooding connection");
                            return Close::RATE_LIMITED;
                        }
                    }
                    let Some(text) = text else {
                        ws.service.metrics().frames_received.inc();
                        ws.service.metrics().frames_refused.inc();
                        let refusal = frames::error(
                            ErrorCode::MalformedFrame,
                            "binary frames are not supported: send JSON text",
                            None,
                        );
                        if Box::pin(ws.outbox.send(id, refusal)).await.is_err() {
                            return Close::TOO_SLOW;
                        }
                        continue;
                    };
                    match Box::pin(handle(ws, connection, mailbox, socket, out, text.as_str()))
                        .await
                    {
                        Ok(FrameOutcome::Continue) => {}
                        Ok(FrameOutcome::Refreshed(at)) => expires_at = at,
                        Ok(FrameOutcome::Close(why)) | Err(why) => return why,
                    }
                }
            }
        }
    }
}

/// Hands one client frame to the service, writing what the mailbox receives meanwhile
/// (the replies and a replay the frame asks for).
async fn handle(
    ws: &LocalWebSocket,
    connection: &Connection,
    mailbox: &MailboxReceiver,
    socket: &mut Socket,
    out: &mut VecDeque<Frame>,
    text: &str,
) -> Result<FrameOutcome, Close> {
    let id = &connection.id;
    let span = tracing::info_span!("ws.frame", connection = %id, user = %connection.user);
    // Boxed: the service's flows (a subscribe and its replay) make a large future,
    // and inline it would sit in every connection's task, idle or not.
    let mut handling = Box::pin(ws.service.handle_frame(id, text).instrument(span));
    loop {
        tokio::select! {
            biased;
            outcome = &mut handling => return Ok(outcome),
            mail = mailbox.recv(out) => match mail {
                Mail::Close(why) => return Err(why),
                Mail::Frames => write(socket, out, ws.config.write_timeout, id).await?,
            },
        }
    }
}

/// Writes the frames in `out` within `limit`, then empties it (keeping its buffer).
///
/// Polled by hand rather than as an `async fn`: this future sits in every connection's
/// task. Most writes finish at their first poll, so the timer is set only for one that
/// has to wait.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would hold its arguments twice"
)]
fn write<'a>(
    socket: &'a mut Socket,
    out: &'a mut VecDeque<Frame>,
    limit: Duration,
    id: &'a ConnectionId,
) -> impl Future<Output = Result<(), Close>> + Send + 'a {
    async move {
        let mut at = (0, 0);
        let mut flush = |cx: &mut Context<'_>| socket.poll_write_frames(cx, out, &mut at);
        let written = match std::future::poll_fn(|cx| Poll::Ready(flush(cx))).await {
            Poll::Ready(done) => Ok(done),
            Poll::Pending => timeout(limit, std::future::poll_fn(&mut flush)).await,
        };
        // Kept for the next frames; an idle connection frees it at its next check.
        out.clear();
        verdict(written, id)
    }
}

/// Writes one message within `limit`.
async fn send(
    socket: &mut Socket,
    message: Message,
    limit: Duration,
    id: &ConnectionId,
) -> Result<(), Close> {
    verdict(timeout(limit, socket.send(message)).await, id)
}

fn verdict<E: std::fmt::Display>(
    written: Result<Result<(), E>, tokio::time::error::Elapsed>,
    id: &ConnectionId,
) -> Result<(), Close> {
    match written {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::debug!(connection = %id, error = %e, "write failed");
            Err(CLIENT_GONE)
        }
        Err(_) => {
            tracing::info!(connection = %id, "closing a connection whose socket does not drain");
            Err(Close::TOO_SLOW)
        }
    }
}

fn is_too_big(e: &SocketError) -> bool {
    matches!(e, SocketError::Capacity(_))
}

/// Ends the connection: what was queued before the close (replies, error frames)
/// still goes out within the close timeout, unless the client is gone or too slow;
/// then the close frame with its reason.
async fn finish(
    ws: &LocalWebSocket,
    id: &ConnectionId,
    mailbox: &MailboxReceiver,
    mut socket: Socket,
    mut out: VecDeque<Frame>,
    why: Close,
) {
    let config = &ws.config;
    if why != CLIENT_GONE && why != Close::TOO_SLOW {
        while let Some(frame) = mailbox.try_recv() {
            out.push_back(frame);
        }
        let _ = write(&mut socket, &mut out, config.close_timeout, id).await;
    }
    if why != CLIENT_GONE {
        tracing::info!(connection = %id, code = why.code, reason = why.reason, "closing");
        let frame = CloseFrame {
            code: CloseCode::from(why.code),
            reason: why.reason.into(),
        };
        let _ = timeout(
            config.close_timeout,
            socket.send(Message::Close(Some(frame))),
        )
        .await;
    }
    let _ = timeout(config.close_timeout, socket.close()).await;
}
