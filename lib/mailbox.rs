//! An unbounded many-to-one queue whose receiver sleeps at once when it is empty.
//!
//! Used where one thread drains commands that arrive in bursts: a connection's writer, a
//! disk thread. crossbeam's channels spin and then call `sched_yield` several times before
//! a receiver sleeps; with a few hundred such threads on two cores (32 hosts on the
//! testbed) that was 21 000 yields a second, three per 16 KiB block moved, each a pass
//! through the scheduler (`perf record -e syscalls:sys_enter_sched_yield`: 90 % from peer
//! writers). Here an empty queue means one futex wait, and a send wakes the receiver only
//! when it sleeps.
//!
//! The API is the part of crossbeam's that those threads use, with its error types, so
//! callers read the same.

use crossbeam::channel::{RecvTimeoutError, SendError};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

struct State<T> {
    items: VecDeque<T>,
    senders: usize,
    receiver: bool,
    /// The receiver sleeps on `ready` (a send must wake it).
    sleeping: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding the lock leaves the queue itself consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sending half; clone it for more senders.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving half.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

/// A new empty mailbox.
pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State { items: VecDeque::new(), senders: 1, receiver: true, sleeping: false }),
        ready: Condvar::new(),
    });
    (Sender { shared: shared.clone() }, Receiver { shared })
}

impl<T> Sender<T> {
    /// Queues `t`; gives it back when the receiver is gone.
    pub fn send(&self, t: T) -> Result<(), SendError<T>> {
        let mut s = self.shared.lock();
        if !s.receiver {
            return Err(SendError(t));
        }
        s.items.push_back(t);
        let wake = std::mem::take(&mut s.sleeping);
        drop(s);
        if wake {
            self.shared.ready.notify_one();
        }
        Ok(())
    }

    /// Queues `t` without waking a sleeping receiver: it is taken with whatever wakes the
    /// receiver next (a [`Sender::send`], a [`Sender::nudge`], its own timeout). For what
    /// may wait, such as a `have` to a peer we choke.
    pub fn send_lazy(&self, t: T) -> Result<(), SendError<T>> {
        let mut s = self.shared.lock();
        if !s.receiver {
            return Err(SendError(t));
        }
        s.items.push_back(t);
        Ok(())
    }

    /// Wakes the receiver if it sleeps with items queued (by [`Sender::send_lazy`]).
    pub fn nudge(&self) {
        let mut s = self.shared.lock();
        let wake = !s.items.is_empty() && std::mem::take(&mut s.sleeping);
        drop(s);
        if wake {
            self.shared.ready.notify_one();
        }
    }

    /// Items queued now.
    pub fn len(&self) -> usize {
        self.shared.lock().items.len()
    }

    /// Whether nothing is queued now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Sender { shared: self.shared.clone() }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        s.senders -= 1;
        let wake = s.senders == 0 && std::mem::take(&mut s.sleeping);
        drop(s);
        if wake {
            self.shared.ready.notify_one();
        }
    }
}

impl<T> Receiver<T> {
    /// The next item, waiting at most `timeout`; `Disconnected` once the queue is empty
    /// and every sender is gone.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_until(Instant::now().checked_add(timeout))
    }

    /// The next item, waiting as long as it takes; `None` once the queue is empty and every
    /// sender is gone.
    pub fn recv(&self) -> Option<T> {
        self.recv_until(None).ok()
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        let mut s = self.shared.lock();
        loop {
            if let Some(t) = s.items.pop_front() {
                s.sleeping = false;
                return Ok(t);
            }
            if s.senders == 0 {
                return Err(RecvTimeoutError::Disconnected);
            }
            s.sleeping = true;
            s = match deadline {
                None => self.shared.ready.wait(s).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        s.sleeping = false;
                        return Err(RecvTimeoutError::Timeout);
                    }
                    self.shared.ready.wait_timeout(s, left).unwrap_or_else(|e| e.into_inner()).0
                }
            };
        }
    }

    /// Whether nothing is queued now.
    pub fn is_empty(&self) -> bool {
        self.shared.lock().items.is_empty()
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let items = {
            let mut s = self.shared.lock();
            s.receiver = false;
            std::mem::take(&mut s.items)
        };
        // Dropped outside the lock: an item may own a sender of this very mailbox.
        drop(items);
    }
}

impl<T> Iterator for Receiver<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.recv()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_arrive_in_order_and_the_end_is_seen_after_the_last() {
        let (tx, rx) = unbounded();
        let tx2 = tx.clone();
        let t = std::thread::spawn(move || {
            for i in 0..10_000u32 {
                tx2.send(i).unwrap();
            }
        });
        tx.send(u32::MAX).unwrap();
        drop(tx);
        let got: Vec<u32> = rx.collect();
        t.join().unwrap();
        assert_eq!(got.len(), 10_001);
        assert_eq!(got.iter().filter(|&&i| i == u32::MAX).count(), 1);
        let from_thread: Vec<u32> = got.into_iter().filter(|&i| i != u32::MAX).collect();
        assert_eq!(from_thread, (0..10_000).collect::<Vec<_>>());
    }

    #[test]
    fn a_sleeping_receiver_wakes_for_a_send_and_for_the_last_sender_leaving() {
        let (tx, rx) = unbounded::<u8>();
        let (seen_tx, seen) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            seen_tx.send(rx.recv()).unwrap();
            seen_tx.send(rx.recv()).unwrap();
        });
        tx.send(7).unwrap();
        assert_eq!(seen.recv().unwrap(), Some(7));
        drop(tx);
        assert_eq!(seen.recv().unwrap(), None);
        t.join().unwrap();
    }

    #[test]
    fn timeout_and_disconnection_are_told_apart() {
        let (tx, rx) = unbounded::<u8>();
        assert_eq!(rx.recv_timeout(Duration::from_millis(1)), Err(RecvTimeoutError::Timeout));
        assert!(rx.is_empty());
        tx.send(1).unwrap();
        assert!(!rx.is_empty());
        drop(tx);
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(1));
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Err(RecvTimeoutError::Disconnected));
    }

    #[test]
    fn a_lazy_send_waits_for_the_next_wake_and_keeps_its_place() {
        let (tx, rx) = unbounded::<u8>();
        let shared = tx.shared.clone();
        let t = std::thread::spawn(move || (rx.recv(), rx.recv(), rx.recv()));
        // Until the receiver sleeps (a state, not a time).
        while !shared.lock().sleeping {
            std::thread::yield_now();
        }
        tx.send_lazy(1).unwrap();
        assert!(shared.lock().sleeping, "a lazy send leaves the receiver asleep");
        tx.send(2).unwrap();
        tx.send_lazy(3).unwrap();
        tx.nudge();
        assert_eq!(t.join().unwrap(), (Some(1), Some(2), Some(3)), "in order, the last one nudged");
        drop(tx);
    }

    #[test]
    fn a_nudge_wakes_a_receiver_only_for_queued_items() {
        let (tx, rx) = unbounded::<u8>();
        let shared = tx.shared.clone();
        // A nudge that did not wake it fails here after 30 s instead of hanging the suite.
        let t = std::thread::spawn(move || rx.recv_timeout(Duration::from_secs(30)).ok());
        while !shared.lock().sleeping {
            std::thread::yield_now();
        }
        tx.nudge();
        assert!(shared.lock().sleeping, "nothing queued: no wake");
        tx.send_lazy(9).unwrap();
        tx.nudge();
        assert_eq!(t.join().unwrap(), Some(9));
    }

    #[test]
    fn a_send_to_a_dropped_receiver_gives_the_item_back() {
        let (tx, rx) = unbounded::<String>();
        drop(rx);
        assert_eq!(tx.send("x".into()).unwrap_err().into_inner(), "x");
    }
}
