//! How many WebSocket connections one user, and everyone together, may hold open on
//! this server. A slot is taken once the token is checked and given back when the
//! connection ends (its guard is dropped), however it ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use shared::domain::UserId;

/// Why a connection got no slot.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Full {
    User(usize),
    Server(usize),
}

#[derive(Default)]
pub(crate) struct Slots {
    held: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_user: HashMap<UserId, usize>,
}

/// One held slot; dropping it gives the slot back.
pub(crate) struct Slot {
    slots: Arc<Slots>,
    user: UserId,
}

impl Slots {
    pub(crate) fn take(
        self: &Arc<Self>,
        user: &UserId,
        per_user: usize,
        total: usize,
    ) -> Result<Slot, Full> {
        let mut held = self.held.lock().expect("not poisoned");
        if held.total >= total {
            return Err(Full::Server(total));
        }
        let mine = held.by_user.get(user).copied().unwrap_or(0);
        if mine >= per_user {
            return Err(Full::User(per_user));
        }
        held.total += 1;
        held.by_user.insert(user.clone(), mine + 1);
        Ok(Slot {
            slots: self.clone(),
            user: user.clone(),
        })
    }

    #[cfg(test)]
    fn held(&self, user: &UserId) -> (usize, usize) {
        let held = self.held.lock().expect("not poisoned");
        (held.total, held.by_user.get(user).copied().unwrap_or(0))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().expect("not poisoned");
        held.total = held.total.saturating_sub(1);
        if let Some(mine) = held.by_user.get_mut(&self.user) {
            *mine -= 1;
            if *mine == 0 {
                held.by_user.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserId {
        UserId::parse(name).unwrap()
    }

    #[test]
    fn a_user_and_the_server_are_each_capped_and_slots_come_back() {
        let slots = Arc::new(Slots::default());
        let (ann, bob) = (user("ann"), user("bob"));
        let a1 = slots.take(&ann, 2, 3).unwrap();
        let _a2 = slots.take(&ann, 2, 3).unwrap();
        assert_eq!(slots.take(&ann, 2, 3).err(), Some(Full::User(2)));
        let _b1 = slots.take(&bob, 2, 3).unwrap();
        assert_eq!(slots.take(&bob, 2, 3).err(), Some(Full::Server(3)));
        drop(a1);
        assert_eq!(slots.held(&ann), (2, 1));
        let _b2 = slots.take(&bob, 2, 3).unwrap();
        assert_eq!(slots.held(&bob), (3, 2));
    }

    #[test]
    fn the_last_slot_of_a_user_forgets_them() {
        let slots = Arc::new(Slots::default());
        let ann = user("ann");
        drop(slots.take(&ann, 1, 10).unwrap());
        assert!(slots.held.lock().unwrap().by_user.is_empty());
        assert_eq!(slots.held(&ann), (0, 0));
    }
}
