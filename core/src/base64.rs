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

/// Decodes Base64 text in either alphabet (`+/` or `-_`), padded or not.
pub fn decode(input: &str) -> Result<Vec<u8>, &'static str> {
    let text = input.trim_end_matches('=');
    if input.len() - text.len() > 2 || text.len() % 4 == 1 {
        return Err("not Base64");
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return Err("not Base64"),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
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

    #[test]
    fn both_alphabets_decode() {
        assert_eq!(decode("TWFu").unwrap(), b"Man");
        assert_eq!(decode("TWE=").unwrap(), b"Ma");
        assert_eq!(decode("TQ").unwrap(), b"M");
        assert_eq!(decode("+/8=").unwrap(), [0xfb, 0xff]);
        assert_eq!(decode("-_8").unwrap(), [0xfb, 0xff]);
        assert!(decode("T").is_err());
        assert!(decode("T*==").is_err());
        assert!(decode("TQ===").is_err());
    }
}
