//! Shared helpers of the storage integration tests: writing CommitLog segments by hand with the
//! record codec, so recovery can be tested on exact bytes.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

use ramjet_core::record::{encode_record_with, write_blank, MessageToStore, BLANK_RECORD_LEN};
use ramjet_storage::recovery::segment_file_name;

/// One record as the tests laid it down.
#[derive(Clone, Debug)]
pub struct Laid {
    pub offset: u64,
    pub bytes: Vec<u8>,
    pub topic: String,
    pub queue_id: i32,
    pub queue_offset: i64,
}

/// Deterministic body of message `n` (length varies with n).
pub fn body_for(n: u64, len: usize) -> Vec<u8> {
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn host(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), port))
}

/// Encodes one record for `topic`/`queue_id` with the given body at `offset`, as the store
/// writes it by default (with the `__CRC32#` whole-record CRC property, `append_prop_crc`).
/// Every other queue offset carries a KEYS property (exercises the properties part).
pub fn encode(topic: &str, queue_id: i32, queue_offset: i64, body: &[u8], offset: u64) -> Vec<u8> {
    encode_with(topic, queue_id, queue_offset, body, offset, true)
}

/// [`encode`], with or without the `__CRC32#` property (without: as older code wrote records).
pub fn encode_with(
    topic: &str,
    queue_id: i32,
    queue_offset: i64,
    body: &[u8],
    offset: u64,
    prop_crc: bool,
) -> Vec<u8> {
    let props = if queue_offset % 2 == 1 {
        format!("KEYS\u{1}k{queue_offset}\u{2}")
    } else {
        String::new()
    };
    let msg = MessageToStore {
        topic,
        queue_id,
        flag: 0,
        body,
        properties: props.as_bytes(),
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        born_host: host(40000),
        store_host: host(10911),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        tags_code: 0,
    };
    let mut out = vec![0u8; msg.encoded_len_with(prop_crc)];
    let n = encode_record_with(
        &msg,
        queue_offset,
        offset as i64,
        1_700_000_000_000 + queue_offset,
        prop_crc,
        &mut out,
    )
    .expect("encode");
    out.truncate(n);
    out
}

/// Writes a CommitLog by hand: records back to back, blank marker + new segment when a record
/// (plus 8 bytes) does not fit. Files are `preallocate` bytes long (zero-filled) when `Some`.
pub struct LogWriter {
    pub dir: PathBuf,
    pub segment_size: u64,
    pub preallocate: bool,
    pub end: u64,
    pub laid: Vec<Laid>,
    /// Write records with the `__CRC32#` property (true, as the store does by default).
    pub prop_crc: bool,
    next_queue_offset: i64,
}

impl LogWriter {
    pub fn new(dir: &Path, segment_size: u64, preallocate: bool) -> Self {
        std::fs::create_dir_all(dir).expect("mkdir");
        LogWriter {
            dir: dir.to_path_buf(),
            segment_size,
            preallocate,
            end: 0,
            laid: Vec::new(),
            prop_crc: true,
            next_queue_offset: 0,
        }
    }

    pub fn segment_path(&self, base: u64) -> PathBuf {
        self.dir.join(segment_file_name(base))
    }

    fn write_at(&self, offset: u64, bytes: &[u8]) {
        use std::os::unix::fs::FileExt;
        let base = offset - offset % self.segment_size;
        let path = self.segment_path(base);
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .expect("open segment");
        if self.preallocate && f.metadata().expect("meta").len() < self.segment_size {
            f.set_len(self.segment_size).expect("set_len");
        }
        f.write_all_at(bytes, offset - base).expect("write");
    }

    /// Appends a record with a body of `len` bytes derived from its sequence number.
    pub fn append(&mut self, body_len: usize) -> Laid {
        let n = self.laid.len() as u64;
        let body = body_for(n, body_len);
        let queue_id = (n % 3) as i32;
        let qo = self.next_queue_offset;
        self.next_queue_offset += 1;
        let probe = encode_with("TopicR", queue_id, qo, &body, 0, self.prop_crc);
        let pos = self.end % self.segment_size;
        let left = self.segment_size - pos;
        if probe.len() as u64 + BLANK_RECORD_LEN as u64 > left {
            let mut blank = [0u8; BLANK_RECORD_LEN];
            write_blank(left as u32, &mut blank).expect("blank");
            self.write_at(self.end, &blank);
            self.end += left;
        }
        let bytes = encode_with("TopicR", queue_id, qo, &body, self.end, self.prop_crc);
        self.write_at(self.end, &bytes);
        let laid = Laid {
            offset: self.end,
            bytes,
            topic: "TopicR".to_string(),
            queue_id,
            queue_offset: qo,
        };
        self.end += laid.bytes.len() as u64;
        self.laid.push(laid.clone());
        laid
    }

    /// Makes sure the segment holding `end` exists (as the writer would, even when empty).
    pub fn touch_active(&self) {
        let base = self.end - self.end % self.segment_size;
        self.write_at(base, &[]);
    }
}

/// Reads `len` bytes of a segment file at `pos`.
pub fn read_at(path: &Path, pos: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).expect("open");
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        let n = f
            .read_at(&mut buf[done..], pos + done as u64)
            .expect("read");
        if n == 0 {
            break;
        }
        done += n;
    }
    buf.truncate(done);
    buf
}

/// XORs `mask` into the byte at `pos` of `path`.
pub fn flip(path: &Path, pos: u64, mask: u8) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, pos).expect("read");
    b[0] ^= mask;
    f.write_all_at(&b, pos).expect("write");
}
