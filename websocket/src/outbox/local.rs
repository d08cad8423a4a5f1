//! The embedded [`Outbox`]: a bounded mailbox per connection, in process, drained by
//! the connection's own task.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use async_trait::async_trait;
use rustc_hash::FxHashMap;
use shared::ports::ConnectionId;
use tokio::sync::Notify;

use super::{Close, Outbox, SendError};
use crate::frames::Frame;

/// One local connection's mailbox: the frames waiting for its socket and, once asked,
/// why it must close. Pushers (the notifier, replies) lock it briefly; the connection's
/// task is woken, under the same lock, when a frame finds the queue empty (a fuller
/// queue means the task is already woken and has not taken it yet), and pushers waiting
/// for room (replies, replays) through `room`. No channel, no second task: an idle
/// connection holds this and an empty queue.
struct Mailbox {
    state: Mutex<Queue>,
    room: Notify,
    capacity: usize,
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Frame>,
    /// The connection's task, as it last polled; woken, not taken, by a push.
    task: Option<Waker>,
    close: Option<Close>,
    /// The connection's task has finished: nothing will read the queue any more.
    finished: bool,
    /// A push found the queue full since the task last took from it: taking must
    /// tell the pushers waiting for room (otherwise it need not touch `room`).
    room_wanted: bool,
}

/// Why a frame could not be queued (the frame comes back with it).
enum Refused {
    Full(Frame),
    Closed,
}

impl Mailbox {
    fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(Queue::default()),
            room: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    fn push(&self, frame: Frame) -> Result<(), Refused> {
        let mut queue = self.state.lock().expect("mailbox lock");
        if queue.close.is_some() || queue.finished {
            return Err(Refused::Closed);
        }
        if queue.frames.len() >= self.capacity {
            queue.room_wanted = true;
            return Err(Refused::Full(frame));
        }
        queue.frames.push_back(frame);
        if queue.frames.len() == 1
            && let Some(task) = &queue.task
        {
            task.wake_by_ref();
        }
        Ok(())
    }

    /// Queues `frame`, waiting up to `limit` for room.
    async fn push_waiting(&self, mut frame: Frame, limit: Duration) -> Result<(), Refused> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            // Registered before trying, so room made in between is not missed.
            room.as_mut().enable();
            match self.push(frame) {
                Err(Refused::Full(back)) => frame = back,
                done => return done,
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                return Err(Refused::Full(frame));
            }
        }
    }

    /// Asks the connection to close unless it already was; returns whether this
    /// reason is the one it closes with.
    fn close(&self, why: Close) -> bool {
        let won = {
            let mut queue = self.state.lock().expect("mailbox lock");
            let won = queue.close.is_none();
            if won {
                queue.close = Some(why);
                if let Some(task) = &queue.task {
                    task.wake_by_ref();
                }
            }
            won
        };
        if won {
            self.room.notify_waiters();
        }
        won
    }
}

/// What the connection's task finds in its mailbox.
#[derive(Debug, PartialEq, Eq)]
pub enum Mail {
    /// Frames to write, moved into the task's buffer, oldest first.
    Frames,
    /// The connection must close, and why (frames still queued stay queued).
    Close(Close),
}

/// The connection task's end of its mailbox.
pub struct MailboxReceiver {
    mailbox: Arc<Mailbox>,
}

impl MailboxReceiver {
    /// Waits for mail: a close request first, else every queued frame, appended to
    /// `into`.
    pub async fn recv(&self, into: &mut VecDeque<Frame>) -> Mail {
        std::future::poll_fn(|cx| self.poll_recv(cx, into)).await
    }

    /// [`recv`](MailboxReceiver::recv) as a poll: `cx`'s waker is woken when mail
    /// arrives.
    pub fn poll_recv(&self, cx: &mut Context<'_>, into: &mut VecDeque<Frame>) -> Poll<Mail> {
        match self.take(cx, into) {
            Some(mail) => Poll::Ready(mail),
            None => Poll::Pending,
        }
    }

    fn take(&self, cx: &Context<'_>, into: &mut VecDeque<Frame>) -> Option<Mail> {
        let mut queue = self.mailbox.state.lock().expect("mailbox lock");
        if !queue
            .task
            .as_ref()
            .is_some_and(|task| task.will_wake(cx.waker()))
        {
            queue.task = Some(cx.waker().clone());
        }
        if let Some(why) = queue.close {
            return Some(Mail::Close(why));
        }
        if queue.frames.is_empty() {
            return None;
        }
        if into.is_empty() {
            // The queue itself, buffer and all, for the task's empty one: while frames
            // keep coming the two buffers take turns and no push allocates.
            std::mem::swap(&mut queue.frames, into);
        } else {
            into.extend(queue.frames.drain(..));
        }
        let room_wanted = std::mem::take(&mut queue.room_wanted);
        drop(queue);
        if room_wanted {
            self.mailbox.room.notify_waiters();
        }
        Some(Mail::Frames)
    }

    /// Frees the queue's buffer if it is empty (the connection is idle: it keeps no
    /// buffer).
    pub fn shrink(&self) {
        let mut queue = self.mailbox.state.lock().expect("mailbox lock");
        if queue.frames.is_empty() {
            queue.frames = VecDeque::new();
        }
    }

    /// The oldest queued frame, if any, whether or not a close was asked.
    pub fn try_recv(&self) -> Option<Frame> {
        let mut queue = self.mailbox.state.lock().expect("mailbox lock");
        let frame = queue.frames.pop_front();
        let room_wanted = frame.is_some() && std::mem::take(&mut queue.room_wanted);
        drop(queue);
        if room_wanted {
            self.mailbox.room.notify_waiters();
        }
        frame
    }

    /// Why the connection must close, once asked.
    pub fn close_reason(&self) -> Option<Close> {
        self.mailbox.state.lock().expect("mailbox lock").close
    }

    /// Asks the connection to close (the first reason wins); returns whether this one
    /// won.
    pub fn close(&self, why: Close) -> bool {
        self.mailbox.close(why)
    }
}

impl Drop for MailboxReceiver {
    fn drop(&mut self) {
        let mut queue = self.mailbox.state.lock().expect("mailbox lock");
        queue.finished = true;
        queue.frames = VecDeque::new();
        queue.task = None;
        drop(queue);
        self.mailbox.room.notify_waiters();
    }
}

/// The embedded [`Outbox`]: a bounded queue per connection, in process.
pub struct LocalOutbox {
    /// A fast hash, like the cursors': looked up once per subscriber of a broadcast,
    /// keyed by ids the server made.
    mailboxes: RwLock<FxHashMap<ConnectionId, Arc<Mailbox>>>,
    wait_limit: Duration,
}

impl LocalOutbox {
    /// `wait_limit` bounds [`Outbox::send_waiting`]: a connection whose queue stays full
    /// that long is closed as too slow.
    pub fn new(wait_limit: Duration) -> Self {
        Self {
            mailboxes: RwLock::new(FxHashMap::default()),
            wait_limit,
        }
    }

    /// Opens the mailbox of a new connection, holding at most `capacity` frames.
    pub fn open(&self, id: ConnectionId, capacity: usize) -> MailboxReceiver {
        let mailbox = Arc::new(Mailbox::new(capacity));
        self.mailboxes
            .write()
            .expect("outbox lock")
            .insert(id, Arc::clone(&mailbox));
        MailboxReceiver { mailbox }
    }

    /// Forgets the connection's mailbox (its task has stopped).
    pub fn remove(&self, id: &ConnectionId) {
        self.mailboxes.write().expect("outbox lock").remove(id);
    }

    /// Closes the connection: its mailbox is removed and its task told why.
    pub fn close(&self, id: &ConnectionId, why: Close) {
        let removed = self.mailboxes.write().expect("outbox lock").remove(id);
        if let Some(mailbox) = removed {
            mailbox.close(why);
        }
    }

    /// Closes every connection (server shutdown).
    pub fn close_all(&self, why: Close) {
        let all: Vec<_> = self
            .mailboxes
            .write()
            .expect("outbox lock")
            .drain()
            .collect();
        for (_, mailbox) in all {
            mailbox.close(why);
        }
    }

    /// How many connections have a mailbox.
    pub fn len(&self) -> usize {
        self.mailboxes.read().expect("outbox lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn mailbox(&self, id: &ConnectionId) -> Option<Arc<Mailbox>> {
        self.mailboxes.read().expect("outbox lock").get(id).cloned()
    }

    /// What a refused push means for the connection.
    fn refused(&self, to: &ConnectionId, refused: Refused) -> SendError {
        match refused {
            Refused::Full(_) => {
                tracing::info!(connection = %to, "closing a connection that does not keep up");
                self.close(to, Close::TOO_SLOW);
            }
            Refused::Closed => self.remove(to),
        }
        SendError::Gone
    }
}

#[async_trait]
impl Outbox for LocalOutbox {
    async fn send(&self, to: &ConnectionId, frame: Frame) -> Result<(), SendError> {
        let pushed = {
            let mailboxes = self.mailboxes.read().expect("outbox lock");
            let Some(mailbox) = mailboxes.get(to) else {
                return Err(SendError::Gone);
            };
            mailbox.push(frame)
        };
        pushed.map_err(|refused| self.refused(to, refused))
    }

    async fn send_waiting(&self, to: &ConnectionId, frame: Frame) -> Result<(), SendError> {
        let mailbox = self.mailbox(to).ok_or(SendError::Gone)?;
        mailbox
            .push_waiting(frame, self.wait_limit)
            .await
            .map_err(|refused| self.refused(to, refused))
    }

    async fn send_to_each(
        &self,
        deliveries: &[(ConnectionId, Frame)],
    ) -> Vec<Result<(), SendError>> {
        // One read of the map for the whole broadcast; closing the connections that
        // do not keep up needs the write lock, so it waits until the read is over.
        let (results, refused) = {
            let mailboxes = self.mailboxes.read().expect("outbox lock");
            let mut refused = Vec::new();
            let results = deliveries
                .iter()
                .map(|(to, frame)| match mailboxes.get(to) {
                    None => Err(SendError::Gone),
                    Some(mailbox) => match mailbox.push(frame.clone()) {
                        Ok(()) => Ok(()),
                        Err(why) => {
                            refused.push((to.clone(), why));
                            Err(SendError::Gone)
                        }
                    },
                })
                .collect::<Vec<_>>();
            (results, refused)
        };
        for (to, why) in refused {
            self.refused(&to, why);
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames;

    #[tokio::test]
    async fn a_full_queue_closes_the_connection_as_too_slow() {
        let outbox = LocalOutbox::new(Duration::from_millis(10));
        let id = ConnectionId("c1".into());
        let mailbox = outbox.open(id.clone(), 2);
        outbox.send(&id, frames::pong()).await.unwrap();
        outbox.send(&id, frames::pong()).await.unwrap();
        assert_eq!(outbox.send(&id, frames::pong()).await, Err(SendError::Gone));
        assert_eq!(mailbox.close_reason(), Some(Close::TOO_SLOW));
        assert!(outbox.is_empty());
        // What was queued before is still there to write before the close.
        assert_eq!(mailbox.try_recv(), Some(frames::pong()));
    }

    #[tokio::test]
    async fn unknown_and_finished_connections_are_gone() {
        let outbox = LocalOutbox::new(Duration::from_millis(10));
        let id = ConnectionId("c1".into());
        assert_eq!(outbox.send(&id, frames::pong()).await, Err(SendError::Gone));
        let mailbox = outbox.open(id.clone(), 2);
        drop(mailbox);
        assert_eq!(outbox.send(&id, frames::pong()).await, Err(SendError::Gone));
        assert!(outbox.is_empty());
    }

    #[tokio::test]
    async fn waiting_sends_give_up_after_the_limit() {
        let outbox = LocalOutbox::new(Duration::from_millis(20));
        let id = ConnectionId("c1".into());
        let mailbox = outbox.open(id.clone(), 1);
        outbox.send_waiting(&id, frames::pong()).await.unwrap();
        assert_eq!(
            outbox.send_waiting(&id, frames::pong()).await,
            Err(SendError::Gone)
        );
        assert_eq!(mailbox.close_reason(), Some(Close::TOO_SLOW));
    }

    #[tokio::test]
    async fn a_waiting_send_goes_in_as_soon_as_the_task_takes_the_queue() {
        let outbox = Arc::new(LocalOutbox::new(Duration::from_secs(10)));
        let id = ConnectionId("c1".into());
        let mailbox = outbox.open(id.clone(), 1);
        outbox.send(&id, frames::pong()).await.unwrap();
        let waiting = tokio::spawn({
            let (outbox, id) = (outbox.clone(), id.clone());
            async move {
                outbox
                    .send_waiting(
                        &id,
                        frames::subscribed(&shared::domain::DocumentId::generate(), 1),
                    )
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "the queue is full: the send waits");
        let mut taken = VecDeque::new();
        assert_eq!(mailbox.recv(&mut taken).await, Mail::Frames);
        assert_eq!(taken, [frames::pong()]);
        waiting.await.unwrap().unwrap();
        taken.clear();
        assert_eq!(mailbox.recv(&mut taken).await, Mail::Frames);
        assert_eq!(taken.len(), 1);
    }

    #[tokio::test]
    async fn the_task_is_woken_by_a_frame_and_a_close_wins_over_queued_frames() {
        let outbox = Arc::new(LocalOutbox::new(Duration::from_millis(10)));
        let id = ConnectionId("c1".into());
        let mailbox = outbox.open(id.clone(), 8);
        let pusher = tokio::spawn({
            let (outbox, id) = (outbox.clone(), id.clone());
            async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                outbox
                    .send_to_each(&[
                        (id.clone(), frames::pong()),
                        (ConnectionId("gone".into()), frames::pong()),
                    ])
                    .await
            }
        });
        let mut taken = VecDeque::new();
        assert_eq!(mailbox.recv(&mut taken).await, Mail::Frames);
        assert_eq!(taken, [frames::pong()]);
        assert_eq!(pusher.await.unwrap(), [Ok(()), Err(SendError::Gone)]);
        outbox.send(&id, frames::pong()).await.unwrap();
        assert!(mailbox.close(Close::IDLE));
        assert!(!mailbox.close(Close::SHUTDOWN), "the first reason wins");
        assert_eq!(mailbox.recv(&mut taken).await, Mail::Close(Close::IDLE));
        assert_eq!(mailbox.try_recv(), Some(frames::pong()));
        assert_eq!(outbox.send(&id, frames::pong()).await, Err(SendError::Gone));
    }

    #[tokio::test]
    async fn the_task_is_woken_once_per_batch_it_has_not_taken_yet() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        #[derive(Default)]
        struct Counter(AtomicUsize);
        impl std::task::Wake for Counter {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let outbox = LocalOutbox::new(Duration::from_millis(10));
        let id = ConnectionId("c1".into());
        let mailbox = outbox.open(id.clone(), 8);
        let woken = Arc::new(Counter::default());
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        let count = || woken.0.load(Ordering::SeqCst);
        let mut taken = VecDeque::new();
        // Pushed before the task first looked: found at its first poll.
        outbox.send(&id, frames::pong()).await.unwrap();
        assert_eq!(
            mailbox.poll_recv(&mut cx, &mut taken),
            Poll::Ready(Mail::Frames)
        );
        assert_eq!(mailbox.poll_recv(&mut cx, &mut taken), Poll::Pending);
        outbox.send(&id, frames::pong()).await.unwrap();
        outbox.send(&id, frames::pong()).await.unwrap();
        assert_eq!(count(), 1, "the second frame finds the task woken already");
        taken.clear();
        assert_eq!(
            mailbox.poll_recv(&mut cx, &mut taken),
            Poll::Ready(Mail::Frames)
        );
        assert_eq!(taken.len(), 2);
        outbox.send(&id, frames::pong()).await.unwrap();
        assert_eq!(count(), 2, "taken: the next frame wakes again");
        mailbox.close(Close::IDLE);
        assert_eq!(count(), 3, "a close always wakes");
    }
}
