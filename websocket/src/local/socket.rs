//! One upgraded connection's socket. tungstenite reads the client's frames and writes
//! the control frames (ping, pong, close); the server's text frames are written to the
//! socket as they were built ([`Frame::wire`]), several in one `writev`, with no copy
//! and no encoding per connection.
//!
//! The two writers never interleave: the connection's task writes frames only between
//! reads, and first flushes whatever tungstenite queued while reading (a pong).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error, Message};

use crate::frames::Frame;

/// Frames given to one `writev`.
const SLICES: usize = 64;

pub(super) struct Socket<S = TokioIo<Upgraded>> {
    stream: WebSocketStream<S>,
    /// tungstenite may hold bytes it has not written (a pong queued by a read).
    dirty: bool,
}

impl Socket {
    pub async fn new(upgraded: Upgraded, config: WebSocketConfig) -> Self {
        Self::over(TokioIo::new(upgraded), config).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Socket<S> {
    /// A server's socket over `io`.
    pub async fn over(io: S, config: WebSocketConfig) -> Self {
        let stream = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
        Self {
            stream,
            dirty: false,
        }
    }

    /// The client's next message (`None` once the connection is over).
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        let message = ready!(self.stream.poll_next_unpin(cx));
        self.dirty = true;
        Poll::Ready(message)
    }

    /// Sends a control frame (or any message) through tungstenite, flushed.
    pub async fn send(&mut self, message: Message) -> Result<(), Error> {
        self.stream.send(message).await?;
        self.dirty = false;
        Ok(())
    }

    /// Writes what tungstenite holds (a pong it queued).
    pub async fn flush(&mut self) -> Result<(), Error> {
        self.stream.flush().await?;
        self.dirty = false;
        Ok(())
    }

    /// Ends the connection from this side (tungstenite's close handshake).
    pub async fn close(&mut self) -> Result<(), Error> {
        self.stream.close(None).await
    }

    /// Writes `frames[at.0..]` (the first from byte `at.1`), advancing `at` past what was
    /// written; ready once every frame is out.
    pub fn poll_write_frames(
        &mut self,
        cx: &mut Context<'_>,
        frames: &VecDeque<Frame>,
        at: &mut (usize, usize),
    ) -> Poll<io::Result<()>> {
        if self.dirty {
            ready!(self.stream.poll_flush_unpin(cx)).map_err(io::Error::other)?;
            self.dirty = false;
        }
        let io = self.stream.get_mut();
        while at.0 < frames.len() {
            let mut slices = [IoSlice::new(&[]); SLICES];
            let mut used = 0;
            for (i, frame) in frames.iter().enumerate().skip(at.0).take(SLICES) {
                let skip = if i == at.0 { at.1 } else { 0 };
                slices[used] = IoSlice::new(&frame.wire()[skip..]);
                used += 1;
            }
            // One frame (the common case) goes by `send`, which the kernel takes on a
            // shorter path than `writev`.
            let mut written = if used == 1 {
                ready!(Pin::new(&mut *io).poll_write(cx, &slices[0]))?
            } else {
                ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..used]))?
            };
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            while written > 0 {
                let left = frames[at.0].wire().len() - at.1;
                if written >= left {
                    written -= left;
                    *at = (at.0 + 1, 0);
                } else {
                    at.1 += written;
                    written = 0;
                }
            }
        }
        Pin::new(io).poll_flush(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(sizes: &[usize]) -> VecDeque<Frame> {
        sizes
            .iter()
            .map(|n| {
                crate::frames::error(
                    crate::frames::ErrorCode::MalformedFrame,
                    &"y".repeat(*n),
                    None,
                )
            })
            .collect()
    }

    /// A server socket and a client over a pipe of `capacity` bytes, so that writes
    /// stop part-way through frames.
    async fn pair(
        capacity: usize,
    ) -> (
        Socket<tokio::io::DuplexStream>,
        WebSocketStream<tokio::io::DuplexStream>,
    ) {
        let (server, client) = tokio::io::duplex(capacity);
        let server = Socket::over(server, WebSocketConfig::default()).await;
        let client = WebSocketStream::from_raw_socket(
            client,
            Role::Client,
            Some(WebSocketConfig::default()),
        )
        .await;
        (server, client)
    }

    async fn write_all(socket: &mut Socket<tokio::io::DuplexStream>, frames: &VecDeque<Frame>) {
        let mut at = (0, 0);
        std::future::poll_fn(|cx| socket.poll_write_frames(cx, frames, &mut at))
            .await
            .unwrap();
        assert_eq!(at, (frames.len(), 0));
    }

    #[tokio::test]
    async fn writes_cut_anywhere_still_deliver_every_frame_whole_and_in_order() {
        let (mut server, mut client) = pair(7).await;
        let frames = frames(&[0, 3, 150, 1, 300, 70_000, 2]);
        let expected: Vec<String> = frames.iter().map(|f| f.as_str().to_owned()).collect();
        let reader = tokio::spawn(async move {
            let mut texts = Vec::new();
            while texts.len() < expected.len() {
                match client.next().await {
                    Some(Ok(Message::Text(text))) => texts.push(text.to_string()),
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!(texts, expected);
        });
        write_all(&mut server, &frames).await;
        reader.await.unwrap();
    }

    #[tokio::test]
    async fn a_pong_queued_by_a_read_goes_out_whole_before_the_frames() {
        // Room for the ping, not for the frames after the pong.
        let (mut server, mut client) = pair(64).await;
        client
            .send(Message::Ping(b"are you there".to_vec().into()))
            .await
            .unwrap();
        let read = std::future::poll_fn(|cx| server.poll_next(cx)).await;
        assert!(matches!(read, Some(Ok(Message::Ping(_)))));
        let frames = frames(&[100, 100]);
        let expected: Vec<String> = frames.iter().map(|f| f.as_str().to_owned()).collect();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while got.len() < 3 {
                match client.next().await {
                    Some(Ok(Message::Pong(data))) => got.push(format!("pong {}", data.len())),
                    Some(Ok(Message::Text(text))) => got.push(text.to_string()),
                    other => panic!("unexpected {other:?}"),
                }
            }
            got
        });
        write_all(&mut server, &frames).await;
        let got = reader.await.unwrap();
        assert_eq!(got[0], "pong 13");
        assert_eq!(&got[1..], &expected[..]);
    }
}
