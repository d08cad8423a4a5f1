//! A waker that remembers it fired. A task waiting on several sources at once polls
//! each only when its gate is open, because polling a source with nothing for it is
//! not free: a WebSocket read that is not ready still clears a 4 KiB buffer and
//! registers wakers. With one gate per source, a frame to write wakes the connection's
//! task without touching its socket's read side.
//!
//! Passing a closed gate costs one atomic load: the task's waker is handed over only
//! when it changes (a spawned task keeps the same one), not at every poll.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};

pub(super) struct Gate {
    open: AtomicBool,
    /// The task waiting behind the gate; woken (not taken) at every wake.
    task: Mutex<Option<Waker>>,
}

impl Gate {
    /// A gate, open: its source is polled once so it can register the gate's waker.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            open: AtomicBool::new(true),
            task: Mutex::new(None),
        })
    }

    /// The waker to give the gated source.
    pub fn waker(self: &Arc<Self>) -> Waker {
        Waker::from(Arc::clone(self))
    }

    /// Hands the gate the waker of the task waiting behind it (call it again only when
    /// that waker changes: see [`waker_changed`]).
    pub fn watch(&self, task: &Waker) {
        *self.task.lock().expect("gate lock") = Some(task.clone());
    }

    /// Closes the gate if it was open: returns whether the source must be polled now.
    pub fn pass(&self) -> bool {
        self.open.load(Ordering::Acquire) && self.open.swap(false, Ordering::AcqRel)
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
        if let Some(task) = &*self.task.lock().expect("gate lock") {
            task.wake_by_ref();
        }
    }
}

/// Whether `cx`'s waker differs from `last`, the one the task remembers from its last
/// poll (and keeps it there if so): the task then hands it to its gates.
pub(super) fn waker_changed(cx: &Context<'_>, last: &mut Option<Waker>) -> bool {
    match last {
        Some(waker) if waker.will_wake(cx.waker()) => false,
        _ => {
            *last = Some(cx.waker().clone());
            true
        }
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
        gate.watch(&task);
        assert!(gate.pass(), "open at first");
        assert!(!gate.pass(), "closed until woken");
        gate.waker().wake_by_ref();
        assert_eq!(woken.count(), 1);
        assert!(gate.pass());
        gate.reopen();
        assert!(gate.pass());
        assert!(!gate.pass());
        // Every wake reaches the task, not only the first after a pass.
        gate.waker().wake_by_ref();
        gate.waker().wake_by_ref();
        assert_eq!(woken.count(), 3);
    }

    #[test]
    fn a_task_hands_over_its_waker_only_when_it_changes() {
        let gate = Gate::new();
        let (first, second) = (Arc::new(Counter::default()), Arc::new(Counter::default()));
        let (first_waker, second_waker) = (Waker::from(first.clone()), Waker::from(second.clone()));
        let mut last = None;
        let cx = Context::from_waker(&first_waker);
        assert!(waker_changed(&cx, &mut last));
        gate.watch(cx.waker());
        assert!(!waker_changed(&cx, &mut last));
        let cx = Context::from_waker(&second_waker);
        assert!(waker_changed(&cx, &mut last));
        gate.watch(cx.waker());
        gate.waker().wake_by_ref();
        assert_eq!((first.count(), second.count()), (0, 1));
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
