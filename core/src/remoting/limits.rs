//! Codec limits. Each is a named default and a field of [`CodecLimits`] so config can set it.

/// Largest frame, the 4-byte length prefix included (Java `com.rocketmq.remoting.frameMaxLength`).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// Largest request body a broker accepts (RocketMQ `maxMessageSize`, 4 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Most messages in one SEND_BATCH_MESSAGE body. RocketMQ bounds a batch by bytes only; a
/// count bound keeps per-batch bookkeeping (offsets, msg ids in the response) bounded too:
/// 10,000 ids of 32 hex chars make a 330 KB response header, well inside the frame limit.
pub const DEFAULT_MAX_BATCH_COUNT: usize = 10_000;
/// The header length field has 24 bits.
pub const MAX_HEADER_BYTES: usize = (1 << 24) - 1;
/// Frame length prefix width.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// Limits applied while decoding frames. Clients receiving pull/query results should use
/// [`CodecLimits::client`], whose body limit is the frame limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecLimits {
    /// Frame size limit, prefix included. Larger frames are fatal for the connection.
    pub max_frame_bytes: usize,
    /// Body size limit. A larger body in a well-formed frame is a recoverable error.
    pub max_body_bytes: usize,
    /// Batch count limit (enforced by the batch decoder's caller, carried here for config).
    pub max_batch_count: usize,
}

impl Default for CodecLimits {
    fn default() -> Self {
        CodecLimits {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_batch_count: DEFAULT_MAX_BATCH_COUNT,
        }
    }
}

impl CodecLimits {
    /// Limits for the receiving side of a client: bodies (pull results) bounded by the frame only.
    pub fn client() -> Self {
        CodecLimits {
            max_body_bytes: DEFAULT_MAX_FRAME_BYTES,
            ..Self::default()
        }
    }
}
