//! One local connection: a reader task that feeds the service and watches the timeouts,
//! and a writer task that drains the connection's mailbox onto the socket and pings.
//! Either side ends the connection through the mailbox's close signal; the first reason
//! given is the one the client reads in the close frame.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use shared::ports::{Connection, ConnectionId};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior, interval, interval_at, timeout};
use tracing::Instrument;

use super::LocalWebSocket;
use super::rate_limit::{FloodGuard, Verdict};
use crate::frames::{self, ErrorCode, Frame};
use crate::metrics::bump;
use crate::outbox::{Close, Closer, MailboxReceiver, Outbox};
use crate::service::FrameOutcome;

/// The shortest tick accepted from the configuration (a zero interval would spin).
const MIN_TICK: Duration = Duration::from_millis(1);

/// The client closed the connection itself (or its socket failed).
const CLIENT_GONE: Close = Close {
    code: 1000,
    reason: "closed",
};

pub(super) async fn run(
    ws: LocalWebSocket,
    connection: Connection,
    mailbox: MailboxReceiver,
    socket: WebSocket,
) {
    let span =
        tracing::info_span!("ws.connection", connection = %connection.id, user = %connection.user);
    async move {
        tracing::info!("websocket open");
        let (sink, stream) = socket.split();
        let closer = mailbox.closer();
        let close_signal = mailbox.close.clone();
        // Not inside the connection's span: the writer is polled for every frame, and
        // entering a span each time was a measurable share of a broadcast's CPU. Its
        // few log lines name the connection themselves.
        let writer = tokio::spawn(write_loop(
            ws.clone(),
            connection.id.clone(),
            sink,
            mailbox.frames,
            mailbox.close,
            closer.clone(),
        ));
        let why = read_loop(&ws, &connection, stream, close_signal).await;
        closer.close(why);
        ws.outbox.remove(&connection.id);
        ws.service.disconnect(&connection.id).await;
        let _ = writer.await;
    }
    .instrument(span)
    .await
}

async fn read_loop(
    ws: &LocalWebSocket,
    connection: &Connection,
    mut stream: SplitStream<WebSocket>,
    mut close: watch::Receiver<Option<Close>>,
) -> Close {
    let config = &ws.config;
    let id = &connection.id;
    let mut expires_at = connection.expires_at;
    let start = Instant::now();
    let mut heard_at = start;
    let mut spoke_at = start;
    let mut guard = FloodGuard::new(config.rate_limit, start);
    let mut check = interval(config.check_interval.max(MIN_TICK));
    check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = close.changed() => {
                return match changed {
                    Ok(()) => close.borrow().unwrap_or(Close::SERVER_ERROR),
                    Err(_) => Close::SERVER_ERROR,
                };
            }
            _ = check.tick() => {
                let now = Instant::now();
                if ws.service.now() >= expires_at {
                    tracing::info!("token expired");
                    return Close::TOKEN_EXPIRED;
                }
                if now.duration_since(spoke_at) >= config.idle_timeout {
                    tracing::info!("idle");
                    return Close::IDLE;
                }
                if now.duration_since(heard_at) >= config.pong_timeout {
                    tracing::info!("unresponsive");
                    return Close::UNRESPONSIVE;
                }
            }
            message = stream.next() => {
                let message = match message {
                    Some(Ok(message)) => message,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "read failed");
                        return if is_too_big(&e) { Close::TOO_BIG } else { CLIENT_GONE };
                    }
                    None => return CLIENT_GONE,
                };
                let now = Instant::now();
                heard_at = now;
                let text = match message {
                    Message::Text(text) => Some(text),
                    Message::Binary(_) => None,
                    Message::Ping(_) | Message::Pong(_) => continue,
                    Message::Close(_) => return CLIENT_GONE,
                };
                spoke_at = now;
                match guard.check(now) {
                    Verdict::Accept => {}
                    Verdict::Refuse => {
                        bump(&ws.service.metrics().frames_received);
                        bump(&ws.service.metrics().frames_refused);
                        let refusal = frames::error(ErrorCode::RateLimited, "too many frames: slow down", None);
                        if ws.outbox.send(id, refusal).await.is_err() {
                            return Close::TOO_SLOW;
                        }
                        continue;
                    }
                    Verdict::Close => {
                        tracing::info!("closing a flooding connection");
                        return Close::RATE_LIMITED;
                    }
                }
                let Some(text) = text else {
                    bump(&ws.service.metrics().frames_received);
                    bump(&ws.service.metrics().frames_refused);
                    let refusal = frames::error(ErrorCode::MalformedFrame, "binary frames are not supported: send JSON text", None);
                    let _ = ws.outbox.send_waiting(id, refusal).await;
                    continue;
                };
                match ws.service.handle_frame(id, text.as_str()).await {
                    FrameOutcome::Continue => {}
                    FrameOutcome::Refreshed(at) => expires_at = at,
                    FrameOutcome::Close(why) => return why,
                }
            }
        }
    }
}

fn is_too_big(e: &axum::Error) -> bool {
    let text = e.to_string();
    text.contains("Space limit exceeded")
        || text.contains("too long")
        || text.contains("Message too big")
}

async fn write_loop(
    ws: LocalWebSocket,
    connection: ConnectionId,
    mut sink: SplitSink<WebSocket, Message>,
    mut frames: mpsc::Receiver<Frame>,
    mut close: watch::Receiver<Option<Close>>,
    closer: Closer,
) {
    let config = &ws.config;
    let ping_every = config.ping_interval.max(MIN_TICK);
    let mut ping = interval_at(Instant::now() + ping_every, ping_every);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let message = tokio::select! {
            biased;
            _ = close.changed() => break,
            frame = frames.recv() => match frame {
                Some(frame) => match Utf8Bytes::try_from(frame.bytes()) {
                    Ok(text) => Message::Text(text),
                    Err(_) => continue,
                },
                None => break,
            },
            _ = ping.tick() => Message::Ping(Default::default()),
        };
        let written = tokio::select! {
            written = timeout(config.write_timeout, sink.send(message)) => written,
            _ = close.changed() => break,
        };
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(%connection, error = %e, "write failed");
                closer.close(CLIENT_GONE);
                break;
            }
            Err(_) => {
                tracing::info!(%connection, "closing a connection whose socket does not drain");
                closer.close(Close::TOO_SLOW);
                break;
            }
        }
    }
    let why = close.borrow().unwrap_or(CLIENT_GONE);
    if why != CLIENT_GONE && why != Close::TOO_SLOW {
        // What was queued before the close (replies, error frames) still goes out,
        // within the close timeout.
        let _ = timeout(config.close_timeout, async {
            while let Ok(frame) = frames.try_recv() {
                let Ok(text) = Utf8Bytes::try_from(frame.bytes()) else {
                    continue;
                };
                if sink.send(Message::Text(text)).await.is_err() {
                    break;
                }
            }
        })
        .await;
    }
    if why != CLIENT_GONE {
        tracing::info!(%connection, code = why.code, reason = why.reason, "closing");
        let frame = CloseFrame {
            code: why.code,
            reason: Utf8Bytes::from_static(why.reason),
        };
        let _ = timeout(config.close_timeout, sink.send(Message::Close(Some(frame)))).await;
    }
    let _ = timeout(config.close_timeout, sink.close()).await;
}
