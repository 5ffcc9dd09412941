//! Base64 encoding of one 3-byte group, shared by the ACL signature (standard alphabet) and
//! recall handles (URL-safe alphabet). Both pad with `=`, as Java's encoders do.

/// The standard alphabet (RFC 4648 §4).
pub const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
/// The URL- and filename-safe alphabet (RFC 4648 §5).
pub const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Up to three bytes as four characters of `alphabet`; `=` stands for each missing byte.
pub fn encode_group(alphabet: &[u8; 64], chunk: &[u8]) -> [u8; 4] {
    debug_assert!((1..=3).contains(&chunk.len()));
    let b = [
        chunk[0],
        chunk.get(1).copied().unwrap_or(0),
        chunk.get(2).copied().unwrap_or(0),
    ];
    let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
    let mut out = [b'='; 4];
    for (i, c) in out.iter_mut().enumerate().take(chunk.len() + 1) {
        *c = alphabet[((n >> (18 - 6 * i)) & 63) as usize];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_encode_with_padding() {
        assert_eq!(&encode_group(STANDARD, b"Man"), b"TWFu");
        assert_eq!(&encode_group(STANDARD, b"Ma"), b"TWE=");
        assert_eq!(&encode_group(STANDARD, b"M"), b"TQ==");
        assert_eq!(&encode_group(STANDARD, &[0xfb, 0xff]), b"+/8=");
        assert_eq!(&encode_group(URL_SAFE, &[0xfb, 0xff]), b"-_8=");
    }
}
