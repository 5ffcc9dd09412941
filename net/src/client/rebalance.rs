//! Queue allocation strategies for clustering consumer groups: pure functions from
//! (this client, all clients, all queues) to the queues this client consumes.
//!
//! Each strategy follows the Java client's algorithm of the same name, so a group that mixes
//! ramjet and Java consumers with the same strategy divides queues without overlap or gaps:
//! - [`Strategy::Averagely`] (`AllocateMessageQueueAveragely`): contiguous blocks, the first
//!   `queues % clients` clients get one extra queue.
//! - [`Strategy::ByCircle`] (`AllocateMessageQueueAveragelyByCircle`): client i takes queues
//!   i, i + n, i + 2n, ...
//! - [`Strategy::ConsistentHash`] (`AllocateMessageQueueConsistentHash`): a ring of
//!   `virtual_nodes` MD5 points per client (key `"<clientId>-<i>"`), each queue goes to the first
//!   point at or after the MD5 of its `MessageQueue [topic=.., brokerName=.., queueId=..]` text.
//!
//! Inputs need not be sorted: every function sorts its own copies, as every client must see the
//! same order. A client id that is not in `all_clients` gets nothing.

use std::collections::BTreeMap;

use super::queue::MessageQueue;

/// Virtual nodes per client on the consistent-hash ring (Java default 10).
pub const DEFAULT_VIRTUAL_NODES: usize = 10;

/// How a clustering group divides queues among its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Averagely,
    ByCircle,
    ConsistentHash { virtual_nodes: usize },
}

impl Strategy {
    /// Queues that `client_id` should consume.
    pub fn allocate(
        &self,
        client_id: &str,
        all_clients: &[String],
        all_queues: &[MessageQueue],
    ) -> Vec<MessageQueue> {
        match *self {
            Strategy::Averagely => allocate_averagely(client_id, all_clients, all_queues),
            Strategy::ByCircle => allocate_by_circle(client_id, all_clients, all_queues),
            Strategy::ConsistentHash { virtual_nodes } => {
                allocate_consistent_hash(client_id, all_clients, all_queues, virtual_nodes)
            }
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "averagely" | "avg" => Ok(Strategy::Averagely),
            "circle" | "by-circle" => Ok(Strategy::ByCircle),
            "consistent-hash" | "hash" => Ok(Strategy::ConsistentHash {
                virtual_nodes: DEFAULT_VIRTUAL_NODES,
            }),
            other => Err(format!(
                "unknown rebalance strategy {other:?}; use averagely, by-circle or consistent-hash"
            )),
        }
    }
}

fn sorted_inputs(
    client_id: &str,
    all_clients: &[String],
    all_queues: &[MessageQueue],
) -> Option<(usize, Vec<String>, Vec<MessageQueue>)> {
    let mut clients = all_clients.to_vec();
    clients.sort();
    clients.dedup();
    let index = clients.iter().position(|c| c == client_id)?;
    let mut queues = all_queues.to_vec();
    queues.sort();
    queues.dedup();
    Some((index, clients, queues))
}

/// `AllocateMessageQueueAveragely`.
pub fn allocate_averagely(
    client_id: &str,
    all_clients: &[String],
    all_queues: &[MessageQueue],
) -> Vec<MessageQueue> {
    let Some((index, clients, queues)) = sorted_inputs(client_id, all_clients, all_queues) else {
        return Vec::new();
    };
    if queues.is_empty() {
        return Vec::new();
    }
    let (q, c) = (queues.len(), clients.len());
    let rem = q % c;
    let average = if q <= c {
        1
    } else if rem > 0 && index < rem {
        q / c + 1
    } else {
        q / c
    };
    let start = if rem > 0 && index < rem {
        index * average
    } else {
        index * average + rem
    };
    let range = average.min(q.saturating_sub(start));
    (0..range)
        .map(|i| queues[(start + i) % q].clone())
        .collect()
}

/// `AllocateMessageQueueAveragelyByCircle`.
pub fn allocate_by_circle(
    client_id: &str,
    all_clients: &[String],
    all_queues: &[MessageQueue],
) -> Vec<MessageQueue> {
    let Some((index, clients, queues)) = sorted_inputs(client_id, all_clients, all_queues) else {
        return Vec::new();
    };
    queues
        .into_iter()
        .skip(index)
        .step_by(clients.len())
        .collect()
}

/// `AllocateMessageQueueConsistentHash` with `virtual_nodes` points per client (0 means 1).
pub fn allocate_consistent_hash(
    client_id: &str,
    all_clients: &[String],
    all_queues: &[MessageQueue],
    virtual_nodes: usize,
) -> Vec<MessageQueue> {
    let Some((_, clients, queues)) = sorted_inputs(client_id, all_clients, all_queues) else {
        return Vec::new();
    };
    let mut ring: BTreeMap<i64, usize> = BTreeMap::new();
    for (ci, c) in clients.iter().enumerate() {
        for v in 0..virtual_nodes.max(1) {
            // Java's TreeMap.put overwrites on a collision: the later node wins, same here.
            ring.insert(md5_hash(&format!("{c}-{v}")), ci);
        }
    }
    queues
        .into_iter()
        .filter(|mq| {
            let h = md5_hash(&mq.to_string());
            let owner = ring
                .range(h..)
                .next()
                .or_else(|| ring.iter().next())
                .map(|(_, &ci)| ci);
            owner.is_some_and(|ci| clients[ci] == client_id)
        })
        .collect()
}

/// The Java client's `MD5Hash.hash`: the first four MD5 bytes, big-endian, as a non-negative long.
fn md5_hash(key: &str) -> i64 {
    let d = md5(key.as_bytes());
    i64::from(u32::from_be_bytes([d[0], d[1], d[2], d[3]]))
}

/// MD5 (RFC 1321). Only used to place ring points; not a security primitive.
fn md5(input: &[u8]) -> [u8; 16] {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    // K[i] = floor(abs(sin(i + 1)) * 2^32)
    let k: [u32; 64] =
        std::array::from_fn(|i| ((i as f64 + 1.0).sin().abs() * 4294967296.0) as u32);
    let (mut a0, mut b0, mut c0, mut d0) =
        (0x67452301u32, 0xefcdab89u32, 0x98badcfeu32, 0x10325476u32);
    let mut msg = input.to_vec();
    let bit_len = (input.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_le_bytes());
    for chunk in msg.chunks_exact(64) {
        let m: [u32; 16] = std::array::from_fn(|i| {
            u32::from_le_bytes([
                chunk[4 * i],
                chunk[4 * i + 1],
                chunk[4 * i + 2],
                chunk[4 * i + 3],
            ])
        });
        let (mut a, mut b, mut c, mut d) = (a0, b0, c0, d0);
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(S[i]));
        }
        a0 = a0.wrapping_add(a);
        b0 = b0.wrapping_add(b);
        c0 = c0.wrapping_add(c);
        d0 = d0.wrapping_add(d);
    }
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&a0.to_le_bytes());
    out[4..8].copy_from_slice(&b0.to_le_bytes());
    out[8..12].copy_from_slice(&c0.to_le_bytes());
    out[12..].copy_from_slice(&d0.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues(n: i32) -> Vec<MessageQueue> {
        (0..n).map(|i| MessageQueue::new("T", "b", i)).collect()
    }
    fn clients(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }
    fn ids(v: &[MessageQueue]) -> Vec<i32> {
        v.iter().map(|q| q.queue_id).collect()
    }

    #[test]
    fn md5_matches_rfc1321_vectors() {
        let hex = |d: [u8; 16]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(hex(md5(b"")), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(hex(md5(b"abc")), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            hex(md5(
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890"
            )),
            "57edf4a22be3c955ac49da2e2107b67a"
        );
    }

    #[test]
    fn averagely_gives_contiguous_blocks_extra_to_first() {
        let (q, c) = (queues(8), clients(3));
        assert_eq!(ids(&allocate_averagely("c0", &c, &q)), vec![0, 1, 2]);
        assert_eq!(ids(&allocate_averagely("c1", &c, &q)), vec![3, 4, 5]);
        assert_eq!(ids(&allocate_averagely("c2", &c, &q)), vec![6, 7]);
    }

    #[test]
    fn averagely_more_clients_than_queues() {
        let (q, c) = (queues(2), clients(4));
        assert_eq!(ids(&allocate_averagely("c0", &c, &q)), vec![0]);
        assert_eq!(ids(&allocate_averagely("c1", &c, &q)), vec![1]);
        assert!(allocate_averagely("c2", &c, &q).is_empty());
        assert!(allocate_averagely("c3", &c, &q).is_empty());
    }

    #[test]
    fn by_circle_interleaves() {
        let (q, c) = (queues(8), clients(3));
        assert_eq!(ids(&allocate_by_circle("c0", &c, &q)), vec![0, 3, 6]);
        assert_eq!(ids(&allocate_by_circle("c1", &c, &q)), vec![1, 4, 7]);
        assert_eq!(ids(&allocate_by_circle("c2", &c, &q)), vec![2, 5]);
    }

    #[test]
    fn unknown_client_gets_nothing_and_input_order_does_not_matter() {
        let q = queues(4);
        assert!(allocate_averagely("zz", &clients(2), &q).is_empty());
        let mut rev = q.clone();
        rev.reverse();
        let c = vec!["c1".to_string(), "c0".to_string()];
        assert_eq!(ids(&allocate_averagely("c0", &c, &rev)), vec![0, 1]);
    }

    fn assert_partition(strategy: Strategy, nq: i32, nc: usize) {
        let (q, c) = (queues(nq), clients(nc));
        let mut seen: Vec<i32> = Vec::new();
        for cid in &c {
            seen.extend(ids(&strategy.allocate(cid, &c, &q)));
        }
        seen.sort();
        assert_eq!(
            seen,
            (0..nq).collect::<Vec<_>>(),
            "{strategy:?} {nq} queues {nc} clients"
        );
    }

    #[test]
    fn every_strategy_partitions_queues_exactly_once() {
        for strategy in [
            Strategy::Averagely,
            Strategy::ByCircle,
            Strategy::ConsistentHash {
                virtual_nodes: DEFAULT_VIRTUAL_NODES,
            },
        ] {
            for nq in [1, 4, 7, 16, 33] {
                for nc in 1..6 {
                    assert_partition(strategy, nq, nc);
                }
            }
        }
    }

    #[test]
    fn consistent_hash_moves_few_queues_when_a_client_joins() {
        let q = queues(64);
        let before = clients(4);
        let after = clients(5);
        let s = Strategy::ConsistentHash {
            virtual_nodes: DEFAULT_VIRTUAL_NODES,
        };
        let mut moved = 0;
        for mq in &q {
            let owner = |cs: &[String]| {
                cs.iter()
                    .find(|c| s.allocate(c, cs, &q).contains(mq))
                    .cloned()
            };
            let (a, b) = (owner(&before), owner(&after));
            if a != b {
                assert_eq!(
                    b.as_deref(),
                    Some("c4"),
                    "a queue moved between old clients"
                );
                moved += 1;
            }
        }
        assert!(moved < 64, "every queue moved");
    }
}
