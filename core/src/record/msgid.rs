//! Offset message id (spec §4.8, Java `MessageDecoder.createMessageId` / `decodeMessageId`):
//! uppercase hex of store host address (4 or 16 bytes), int32 port, int64 physical offset.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use super::error::RecordError;

/// Hex length of an IPv4 offset message id (16 bytes).
pub const MSG_ID_V4_LEN: usize = 32;
/// Hex length of an IPv6 offset message id (28 bytes).
pub const MSG_ID_V6_LEN: usize = 56;

/// An offset message id held on the stack (no allocation); `as_str` gives the text.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct OffsetMsgId {
    buf: [u8; MSG_ID_V6_LEN],
    len: u8,
}

impl OffsetMsgId {
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written into buf.
        core::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("")
    }
}

impl fmt::Display for OffsetMsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for OffsetMsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OffsetMsgId({})", self.as_str())
    }
}

impl AsRef<str> for OffsetMsgId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// The offset message id of the record at `phys_offset` stored by `store_host`.
pub fn offset_msg_id(store_host: SocketAddr, phys_offset: i64) -> OffsetMsgId {
    let mut raw = [0u8; 28];
    let n = match store_host {
        SocketAddr::V4(a) => {
            raw[..4].copy_from_slice(&a.ip().octets());
            4
        }
        SocketAddr::V6(a) => {
            raw[..16].copy_from_slice(&a.ip().octets());
            16
        }
    };
    raw[n..n + 4].copy_from_slice(&i32::from(store_host.port()).to_be_bytes());
    raw[n + 4..n + 12].copy_from_slice(&phys_offset.to_be_bytes());
    let mut out = OffsetMsgId {
        buf: [0u8; MSG_ID_V6_LEN],
        len: ((n + 12) * 2) as u8,
    };
    for (i, b) in raw[..n + 12].iter().enumerate() {
        out.buf[2 * i] = HEX_UPPER[usize::from(b >> 4)];
        out.buf[2 * i + 1] = HEX_UPPER[usize::from(b & 0xF)];
    }
    out
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes an offset message id (32 or 56 hex chars, either case) into (store host, offset).
pub fn decode_offset_msg_id(id: &str) -> Result<(SocketAddr, i64), RecordError> {
    let bad = |reason| RecordError::BadMessageId {
        id: id.chars().take(64).collect(),
        reason,
    };
    let hex = id.as_bytes();
    let addr_len = match hex.len() {
        MSG_ID_V4_LEN => 4,
        MSG_ID_V6_LEN => 16,
        _ => return Err(bad("length must be 32 (IPv4) or 56 (IPv6) hex characters")),
    };
    let mut raw = [0u8; 28];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        let (Some(h), Some(l)) = (hex_val(pair[0]), hex_val(pair[1])) else {
            return Err(bad("not a hexadecimal string"));
        };
        raw[i] = (h << 4) | l;
    }
    let mut port = [0u8; 4];
    port.copy_from_slice(&raw[addr_len..addr_len + 4]);
    let port = i32::from_be_bytes(port);
    let port = u16::try_from(port).map_err(|_| bad("port out of range 0..=65535"))?;
    let mut off = [0u8; 8];
    off.copy_from_slice(&raw[addr_len + 4..addr_len + 12]);
    let offset = i64::from_be_bytes(off);
    let addr = if addr_len == 4 {
        let mut a = [0u8; 4];
        a.copy_from_slice(&raw[..4]);
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(a), port))
    } else {
        let mut a = [0u8; 16];
        a.copy_from_slice(&raw[..16]);
        SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(a), port, 0, 0))
    };
    Ok((addr, offset))
}
