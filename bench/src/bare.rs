//! The floor for live delivery: a bare tokio + tokio-tungstenite broadcast server, with
//! no docfan code in it. Each accepted connection gets a task that forwards every
//! broadcast message to its socket and answers two text frames: `subscribe` (with
//! `subscribed`, so a client knows it is registered) and `broadcast` (which broadcasts
//! the server's payload to everyone, for the held-connections floor).
//!
//! The sockets use the same 4 KiB initial read and write buffers and `TCP_NODELAY` as
//! docfan's `/ws`, so the floors compare like with like.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

pub const SUBSCRIBE: &str = "subscribe";
pub const SUBSCRIBED: &str = "subscribed";
pub const BROADCAST: &str = "broadcast";

/// Messages that may wait for a slow connection before it starts missing them.
const QUEUE: usize = 1024;
const SOCKET_BUFFER_BYTES: usize = 4 * 1024;

/// A running bare server in this process.
pub struct BareServer {
    pub addr: SocketAddr,
    sender: broadcast::Sender<Message>,
    stop: Option<oneshot::Sender<()>>,
}

impl BareServer {
    /// Listens on a loopback port; `payload` is what a client's `broadcast` sends.
    pub async fn start(payload: Message) -> anyhow::Result<Self> {
        let listener = listen("127.0.0.1:0".parse()?)?;
        let addr = listener.local_addr()?;
        let (sender, _) = broadcast::channel(QUEUE);
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(serve(listener, sender.clone(), payload, async {
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            sender,
            stop: Some(stop),
        })
    }

    /// Sends `message` to every connection; returns how many there are.
    pub fn broadcast(&self, message: Message) -> usize {
        self.sender.send(message).unwrap_or(0)
    }

    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }
}

impl Drop for BareServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A listener with room for many connections arriving at once.
pub fn listen(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket.listen(4096)?)
}

/// Accepts connections until `shutdown` resolves; each connection lasts until its
/// client leaves.
pub async fn serve(
    listener: TcpListener,
    sender: broadcast::Sender<Message>,
    payload: Message,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(connection(stream, sender.clone(), payload.clone()));
                }
            }
            () = &mut shutdown => return,
        }
    }
}

async fn connection(stream: TcpStream, sender: broadcast::Sender<Message>, payload: Message) {
    let config = WebSocketConfig::default()
        .read_buffer_size(SOCKET_BUFFER_BYTES)
        .write_buffer_size(SOCKET_BUFFER_BYTES);
    let Ok(socket) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    let mut outgoing = sender.subscribe();
    let (mut sink, mut incoming) = socket.split();
    loop {
        tokio::select! {
            message = outgoing.recv() => match message {
                Ok(message) => {
                    if sink.send(message).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            },
            frame = incoming.next() => match frame {
                Some(Ok(Message::Text(text))) if text.as_str() == SUBSCRIBE => {
                    let answered = sink.send(Message::text(SUBSCRIBED)).await;
                    if answered.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Text(text))) if text.as_str() == BROADCAST => {
                    let _ = sender.send(payload.clone());
                }
                Some(Ok(_)) => {}
                _ => return,
            },
        }
    }
}

/// `bare-server --listen ADDR --payload-bytes N`: the server in a process of its own,
/// until killed.
pub async fn run_child(listen_on: SocketAddr, payload_bytes: usize) -> anyhow::Result<()> {
    let listener = listen(listen_on)?;
    let (sender, _) = broadcast::channel(QUEUE);
    serve(
        listener,
        sender,
        Message::text(padded_update(1, payload_bytes)),
        std::future::pending(),
    )
    .await;
    Ok(())
}

/// A `document.updated`-shaped JSON text of `bytes` bytes (at least its fields).
pub fn padded_update(version: u64, bytes: usize) -> String {
    let head = format!("{{\"type\":\"document.updated\",\"version\":{version},\"pad\":\"");
    let tail = "\"}";
    let pad = bytes.saturating_sub(head.len() + tail.len());
    format!("{head}{}{tail}", "x".repeat(pad))
}
