//! A waker that remembers it fired. A task waiting on several sources at once polls
//! each only when its gate is open, because polling a source with nothing for it is
//! not free: a WebSocket read that is not ready still clears a 4 KiB buffer and
//! registers wakers. With one gate per source, a frame to write wakes the connection's
//! task without touching its socket's read side.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Wake, Waker};

use futures_util::task::AtomicWaker;

pub(super) struct Gate {
    open: AtomicBool,
    task: AtomicWaker,
}

impl Gate {
    /// A gate, open: its source is polled once so it can register the gate's waker.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            open: AtomicBool::new(true),
            task: AtomicWaker::new(),
        })
    }

    /// The waker to give the gated source.
    pub fn waker(self: &Arc<Self>) -> Waker {
        Waker::from(Arc::clone(self))
    }

    /// Passes `cx`'s waker on to the task waiting behind the gate, and closes the gate
    /// if it was open: returns whether the source must be polled now.
    pub fn pass(&self, cx: &Context<'_>) -> bool {
        self.task.register(cx.waker());
        self.open.swap(false, Ordering::AcqRel)
    }

    /// Opens the gate without a wake: the source has more to give (a read that
    /// returned a message may have more buffered) or needs polling again (a timer that
    /// was reset).
    pub fn reopen(&self) {
        self.open.store(true, Ordering::Release);
    }
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.open.store(true, Ordering::Release);
        self.task.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_opens_when_its_waker_fires_and_wakes_the_task() {
        let gate = Gate::new();
        let woken = Arc::new(Counter::default());
        let task = Waker::from(woken.clone());
        let cx = Context::from_waker(&task);
        assert!(gate.pass(&cx), "open at first");
        assert!(!gate.pass(&cx), "closed until woken");
        gate.waker().wake_by_ref();
        assert_eq!(woken.count(), 1);
        assert!(gate.pass(&cx));
        gate.reopen();
        assert!(gate.pass(&cx));
        assert!(!gate.pass(&cx));
    }

    #[derive(Default)]
    struct Counter(std::sync::atomic::AtomicUsize);

    impl Counter {
        fn count(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}
