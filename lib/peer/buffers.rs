//! Block buffers, reused: a connection's reader fills one per received block and the disk
//! thread that hashed the block gives it back.
//!
//! Without reuse every block was a fresh 16 KiB allocation, and the allocator handed out
//! pages the kernel had to fault in and zero (`clear_page` under the readers' copies in the
//! 32-host profile; on a VM a host fault too). The pool holds at most [`KEPT`] buffers (the
//! unwritten budget's worth); a buffer not given back (a dropped duplicate, say) is simply
//! freed.

use crossbeam::queue::ArrayQueue;
use std::sync::OnceLock;

/// Buffers kept for reuse: 32 MiB of 16 KiB blocks.
const KEPT: usize = 2048;
/// The capacity of a pooled buffer: a standard block.
const SIZE: usize = super::wire::BLOCK as usize;

fn pool() -> &'static ArrayQueue<Vec<u8>> {
    static POOL: OnceLock<ArrayQueue<Vec<u8>>> = OnceLock::new();
    POOL.get_or_init(|| ArrayQueue::new(KEPT))
}

/// A buffer holding a copy of `data`: a pooled one when `data` fits.
pub fn copy_of(data: &[u8]) -> Vec<u8> {
    if data.len() <= SIZE {
        let mut v = pool().pop().unwrap_or_else(|| Vec::with_capacity(SIZE));
        v.clear();
        v.extend_from_slice(data);
        return v;
    }
    data.to_vec()
}

/// A block-sized buffer to be read into: a pooled one (its old bytes are still there, to
/// be overwritten), or a zeroed new one.
pub fn whole() -> Vec<u8> {
    pool().pop().map_or_else(|| vec![0; SIZE], |mut v| {
        v.resize(SIZE, 0);
        v
    })
}

/// Gives a buffer back for reuse (buffers of another size are freed). Pooled buffers keep
/// their length (their bytes stay initialized), so [`whole`] need not clear them.
pub fn give_back(v: Vec<u8>) {
    if v.capacity() == SIZE {
        let _ = pool().push(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_given_back_is_reused_with_the_new_bytes_only() {
        let a = copy_of(&[7u8; 100]);
        let p = a.as_ptr();
        give_back(a);
        // Other tests share the pool: look for ours among what comes back.
        let mut got = Vec::new();
        let mut found = false;
        for _ in 0..KEPT {
            let b = copy_of(b"abc");
            assert_eq!(b, b"abc");
            found |= b.as_ptr() == p;
            got.push(b);
            if found {
                break;
            }
        }
        assert!(found, "the buffer given back was not reused");
        // A large block is copied as it is, and not kept.
        let big = copy_of(&vec![1u8; SIZE * 2]);
        assert_eq!(big.len(), SIZE * 2);
        give_back(big);
    }
}
