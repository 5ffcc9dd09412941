//! Recall handles (RocketMQ 5.3): what a broker gives the producer of a timer message so that
//! it can recall the message before its time (RECALL_MESSAGE, 370).
//!
//! A handle is `v1 <topic> <broker name> <deliver time ms> <message id>`, the message id being
//! the producer's `UNIQ_KEY`, encoded with Base64's URL-safe alphabet, padded (Java's
//! `Base64.getUrlEncoder()`). Decoding also takes it unpadded.

use std::fmt;

/// Longest handle decoded (a topic, a broker name, a time and an id fit many times over).
pub const MAX_HANDLE_LEN: usize = 2048;

/// A decoded version-1 handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecallHandle {
    pub topic: String,
    pub broker_name: String,
    /// The deliver time, as the handle spells it.
    pub timestamp: String,
    pub message_id: String,
}

/// Why a handle does not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadHandle(pub &'static str);

impl fmt::Display for BadHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "recall failed, invalid recall handle: {}", self.0)
    }
}

impl std::error::Error for BadHandle {}

fn encode_url_safe(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let group = crate::base64::encode_group(crate::base64::URL_SAFE, chunk);
        out.extend(group.iter().map(|&c| c as char));
    }
    out
}

fn decode_url_safe(input: &str) -> Result<Vec<u8>, BadHandle> {
    if input.contains(['+', '/']) {
        return Err(BadHandle("not URL-safe Base64"));
    }
    crate::base64::decode(input).map_err(BadHandle)
}

impl RecallHandle {
    /// The handle text for a timer message.
    pub fn encode(topic: &str, broker_name: &str, deliver_ms: i64, message_id: &str) -> String {
        let raw = format!("v1 {topic} {broker_name} {deliver_ms} {message_id}");
        encode_url_safe(raw.as_bytes())
    }

    pub fn decode(handle: &str) -> Result<RecallHandle, BadHandle> {
        if handle.is_empty() {
            return Err(BadHandle("empty"));
        }
        if handle.len() > MAX_HANDLE_LEN {
            return Err(BadHandle("too long"));
        }
        let raw = decode_url_safe(handle)?;
        let text = String::from_utf8(raw).map_err(|_| BadHandle("not UTF-8"))?;
        let parts: Vec<&str> = text.split(' ').filter(|p| !p.is_empty()).collect();
        match parts.as_slice() {
            ["v1", topic, broker, ts, id, ..] => Ok(RecallHandle {
                topic: topic.to_string(),
                broker_name: broker.to_string(),
                timestamp: ts.to_string(),
                message_id: id.to_string(),
            }),
            ["v1", ..] => Err(BadHandle("expected v1 <topic> <broker> <time> <id>")),
            _ => Err(BadHandle("unknown version")),
        }
    }

    /// The deliver time, ms; `None` when the handle's is not a number.
    pub fn deliver_ms(&self) -> Option<i64> {
        self.timestamp.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_encode_as_java_does_and_decode_back() {
        // Java: Base64.getUrlEncoder().encodeToString("v1 T b 1700000000000 ID".getBytes())
        let h = RecallHandle::encode("T", "b", 1_700_000_000_000, "ID");
        assert_eq!(h, "djEgVCBiIDE3MDAwMDAwMDAwMDAgSUQ=");
        let d = RecallHandle::decode(&h).unwrap();
        assert_eq!(
            d,
            RecallHandle {
                topic: "T".into(),
                broker_name: "b".into(),
                timestamp: "1700000000000".into(),
                message_id: "ID".into()
            }
        );
        assert_eq!(d.deliver_ms(), Some(1_700_000_000_000));
        // Unpadded, and the URL-safe characters.
        assert_eq!(RecallHandle::decode(h.trim_end_matches('=')).unwrap(), d);
        for len in 0..7 {
            let raw: Vec<u8> = (0..len).map(|i| 250 - i as u8).collect();
            assert_eq!(
                decode_url_safe(&encode_url_safe(&raw)).unwrap(),
                raw,
                "{len}"
            );
        }
        assert!(encode_url_safe(&[0xfb, 0xff]).contains(['-', '_']));
    }

    #[test]
    fn bad_handles_are_refused() {
        for bad in [
            "",
            "!!!!",
            "a",
            "djI=",
            "djEgVA==",
            &"A".repeat(MAX_HANDLE_LEN + 4),
        ] {
            assert!(RecallHandle::decode(bad).is_err(), "{bad:?}");
        }
        // "v1 T b x ID": decodes; the time is not a number.
        let h = encode_url_safe(b"v1 T b x ID");
        assert_eq!(RecallHandle::decode(&h).unwrap().deliver_ms(), None);
    }
}
