//! The simulated network's data plane: one flow per connection and direction, holding the
//! blocks a host has agreed to send (requests it served), and a step function that shares
//! each host's upload and download capacity among its active flows.
//!
//! Sharing is progressive filling in three rounds: each unsatisfied flow is offered the
//! smaller of its sender's remaining upload and its receiver's remaining download, each
//! divided by the flows still competing there; what a flow cannot use (it is limited at
//! the other end, or has little queued) is offered again in the next round. This is close
//! to TCP's fair sharing of a bottleneck without modelling congestion control.

use crate::picker::BlockRef;
use std::collections::VecDeque;
use std::time::Duration;

/// The sending end of a connection (0: the dialler, 1: the acceptor).
#[derive(Debug, Clone, Copy)]
pub struct Dir(pub usize);

struct Flow {
    from: usize,
    to: usize,
    queue: VecDeque<BlockRef>,
    /// Bytes of the first queued block still to send.
    head_left: f64,
    /// Bytes queued in all (head counted by what is left).
    queued: f64,
    active: bool,
}

pub struct Flows {
    flows: Vec<Option<Flow>>,
    active: Vec<usize>,
    rem_up: Vec<f64>,
    rem_down: Vec<f64>,
    n_up: Vec<u32>,
    n_down: Vec<u32>,
}

impl Flows {
    pub fn new(hosts: usize) -> Flows {
        Flows {
            flows: Vec::new(),
            active: Vec::new(),
            rem_up: vec![0.0; hosts],
            rem_down: vec![0.0; hosts],
            n_up: vec![0; hosts],
            n_down: vec![0; hosts],
        }
    }

    fn id(c: usize, d: Dir) -> usize {
        c * 2 + d.0
    }

    /// Queues block `b` for sending from host `from` to host `to` on connection `c`.
    pub fn push(&mut self, c: usize, d: Dir, from: usize, to: usize, b: BlockRef) {
        let id = Flows::id(c, d);
        if self.flows.len() <= id {
            self.flows.resize_with(id + 1, || None);
        }
        let f = self.flows[id].get_or_insert_with(|| Flow {
            from,
            to,
            queue: VecDeque::new(),
            head_left: 0.0,
            queued: 0.0,
            active: false,
        });
        if f.queue.is_empty() {
            f.head_left = b.length as f64;
        }
        f.queued += b.length as f64;
        f.queue.push_back(b);
        if !f.active {
            f.active = true;
            self.active.push(id);
        }
    }

    /// Drops a queued block that was cancelled (not the one being sent).
    pub fn cancel(&mut self, c: usize, d: Dir, b: &BlockRef) {
        let Some(Some(f)) = self.flows.get_mut(Flows::id(c, d)) else {
            return;
        };
        if let Some(pos) = f.queue.iter().skip(1).position(|x| x == b) {
            f.queue.remove(pos + 1);
            f.queued -= b.length as f64;
        }
    }

    /// Drops every queued block but one partly sent (the sender choked the receiver).
    pub fn clear(&mut self, c: usize, d: Dir) {
        let Some(Some(f)) = self.flows.get_mut(Flows::id(c, d)) else {
            return;
        };
        let started = f.queue.front().map(|b| f.head_left < b.length as f64).unwrap_or(false);
        f.queue.truncate(started as usize);
        f.queued = if f.queue.is_empty() { 0.0 } else { f.head_left };
    }

    /// The connection closed: nothing more flows either way.
    pub fn stop(&mut self, c: usize) {
        for d in 0..2 {
            if let Some(Some(f)) = self.flows.get_mut(Flows::id(c, Dir(d))) {
                f.queue.clear();
                f.queued = 0.0;
            }
        }
    }

    /// Moves `dt` worth of data; answers the blocks that finished: (connection, sending end, block).
    pub fn transfer(
        &mut self,
        dt: Duration,
        rate: &dyn Fn(usize) -> u64,
    ) -> Vec<(usize, usize, BlockRef)> {
        let secs = dt.as_secs_f64();
        self.active.retain(|id| {
            let f = self.flows[*id].as_mut().unwrap();
            f.active = !f.queue.is_empty();
            f.active
        });
        for id in &self.active {
            let f = self.flows[*id].as_ref().unwrap();
            self.rem_up[f.from] = rate(f.from) as f64 * secs;
            self.rem_down[f.to] = rate(f.to) as f64 * secs;
        }
        let mut alloc = vec![0.0f64; self.active.len()];
        for _round in 0..3 {
            for id in &self.active {
                let f = self.flows[*id].as_ref().unwrap();
                self.n_up[f.from] = 0;
                self.n_down[f.to] = 0;
            }
            let mut any = false;
            for (j, id) in self.active.iter().enumerate() {
                let f = self.flows[*id].as_ref().unwrap();
                if f.queued - alloc[j] > 0.5
                    && self.rem_up[f.from] > 0.5
                    && self.rem_down[f.to] > 0.5
                {
                    self.n_up[f.from] += 1;
                    self.n_down[f.to] += 1;
                    any = true;
                }
            }
            if !any {
                break;
            }
            let mut give = vec![0.0f64; self.active.len()];
            for (j, id) in self.active.iter().enumerate() {
                let f = self.flows[*id].as_ref().unwrap();
                let want = f.queued - alloc[j];
                if want > 0.5 && self.rem_up[f.from] > 0.5 && self.rem_down[f.to] > 0.5 {
                    let up = self.rem_up[f.from] / self.n_up[f.from] as f64;
                    let down = self.rem_down[f.to] / self.n_down[f.to] as f64;
                    give[j] = want.min(up).min(down);
                }
            }
            for (j, id) in self.active.iter().enumerate() {
                if give[j] > 0.0 {
                    let f = self.flows[*id].as_ref().unwrap();
                    self.rem_up[f.from] -= give[j];
                    self.rem_down[f.to] -= give[j];
                    alloc[j] += give[j];
                }
            }
        }
        let mut done = Vec::new();
        for (j, id) in self.active.iter().enumerate() {
            let f = self.flows[*id].as_mut().unwrap();
            let mut bytes = alloc[j];
            f.queued -= bytes;
            while bytes > 0.0 {
                let Some(b) = f.queue.front().copied() else {
                    break;
                };
                // Within half a byte counts as sent: allocation never offers a flow less
                // than that, so a remainder that small would wait forever.
                if f.head_left <= bytes + 0.5 {
                    bytes -= f.head_left;
                    f.queue.pop_front();
                    done.push((id / 2, id % 2, b));
                    f.head_left = f.queue.front().map(|n| n.length as f64).unwrap_or(0.0);
                } else {
                    f.head_left -= bytes;
                    bytes = 0.0;
                }
            }
            if f.queue.is_empty() {
                f.queued = 0.0;
            }
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(i: u32) -> BlockRef {
        BlockRef {
            index: i,
            begin: 0,
            length: 1000,
        }
    }

    #[test]
    fn a_sender_shares_its_upload_and_a_slow_receiver_leaves_room_for_others() {
        // Host 0 (1000 B/s up) sends to host 1 (fast) and host 2 (100 B/s down).
        let rate = |h: usize| if h == 2 { 100 } else { 1000 };
        let mut f = Flows::new(3);
        for i in 0..10 {
            f.push(0, Dir(0), 0, 1, b(i));
            f.push(1, Dir(0), 0, 2, b(100 + i));
        }
        let mut to1 = 0;
        let mut to2 = 0;
        for _ in 0..100 {
            for (c, _, _) in f.transfer(Duration::from_millis(100), &rate) {
                if c == 0 {
                    to1 += 1;
                } else {
                    to2 += 1;
                }
            }
        }
        // 10 s: the slow receiver takes ~1000 B (1 block), the fast one gets the rest (~9 blocks).
        assert_eq!(to2, 1, "capped by the receiver");
        assert_eq!(to1, 9, "the sender's leftover goes to the fast receiver");
    }

    #[test]
    fn a_block_with_half_a_byte_left_arrives() {
        // 1 999 B/s for 0.5 s leaves 0.5 byte of a 1 000-byte block: a flow is never
        // offered that little, so the block must count as sent now, not wait forever.
        let rate = |_h: usize| 1999;
        let mut f = Flows::new(2);
        f.push(0, Dir(0), 0, 1, b(7));
        let mut done = Vec::new();
        for _ in 0..4 {
            done.extend(f.transfer(Duration::from_millis(500), &rate));
        }
        assert_eq!(done.iter().map(|d| d.2.index).collect::<Vec<_>>(), vec![7]);
    }

    #[test]
    fn blocks_finish_in_order_at_the_link_rate() {
        let rate = |_h: usize| 2000;
        let mut f = Flows::new(2);
        for i in 0..4 {
            f.push(0, Dir(1), 1, 0, b(i));
        }
        let done = f.transfer(Duration::from_secs(1), &rate);
        assert_eq!(
            done.iter().map(|d| d.2.index).collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert!(done.iter().all(|d| d.0 == 0 && d.1 == 1));
        f.clear(0, Dir(1));
        assert!(
            f.transfer(Duration::from_secs(1), &rate).is_empty(),
            "cleared"
        );
    }
}
