//! A small, fast, non-cryptographic hasher for the store's internal maps (topic and queue-id
//! keys looked up on every append). The multiply-rotate scheme of rustc's FxHasher: a few
//! cycles per word instead of SipHash's rounds. Keys come from producers, but a map keyed by
//! topic is bounded by the topics the broker admits, so flooding one bucket is not a concern
//! here the way it is for maps keyed by arbitrary request data.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Multiplier of FxHasher (from rustc): odd, with well-spread bits.
const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// See the module docs.
#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
        // Zero padding of the last word would make "a" and "a\0" equal otherwise.
        self.add(bytes.len() as u64);
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_i32(&mut self, i: i32) {
        self.add(u64::from(i as u32));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// A `HashMap` with [`FxHasher`].
pub type FxHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, BuildHasherDefault};

    #[test]
    fn equal_keys_hash_equal_and_near_keys_differ() {
        let b = BuildHasherDefault::<FxHasher>::default();
        assert_eq!(b.hash_one("TopicA"), b.hash_one("TopicA"));
        assert_ne!(b.hash_one("TopicA"), b.hash_one("TopicB"));
        assert_ne!(b.hash_one("TopicA"), b.hash_one("TopicA\0"));
        let ids: std::collections::HashSet<u64> = (0..1000i32).map(|i| b.hash_one(i)).collect();
        assert_eq!(ids.len(), 1000);
        let mut m: FxHashMap<Box<str>, i32> = FxHashMap::default();
        for i in 0..100 {
            m.insert(format!("topic-{i}").into(), i);
        }
        assert_eq!(m.len(), 100);
        assert_eq!(m.get("topic-42"), Some(&42));
        assert_eq!(m.get("topic-100"), None);
    }
}
