//! Tag hash code (spec §4.9): Java `String.hashCode()` of the `TAGS` value, sign-extended to i64.

#[inline]
fn fold_units(h: i32, s: &str) -> i32 {
    if s.is_ascii() {
        return fold_ascii(h, s.as_bytes());
    }
    s.encode_utf16()
        .fold(h, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// `h = 31*h + c` over ASCII bytes (one UTF-16 unit each), four at a time:
/// `h' = 31^4*h + 31^3*c0 + 31^2*c1 + 31*c2 + c3` (mod 2^32), which breaks the one-multiply-
/// per-character dependency chain. Every message's UNIQ_KEY and KEYS go through this for the
/// IndexFile, so it is on the append path.
#[inline]
fn fold_ascii(mut h: i32, bytes: &[u8]) -> i32 {
    const P2: i32 = 31 * 31;
    const P3: i32 = 31 * 31 * 31;
    const P4: i32 = 31 * 31 * 31 * 31;
    let mut quads = bytes.chunks_exact(4);
    for q in &mut quads {
        let tail = i32::from(q[0])
            .wrapping_mul(P3)
            .wrapping_add(i32::from(q[1]).wrapping_mul(P2))
            .wrapping_add(i32::from(q[2]).wrapping_mul(31))
            .wrapping_add(i32::from(q[3]));
        h = h.wrapping_mul(P4).wrapping_add(tail);
    }
    for &b in quads.remainder() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(b));
    }
    h
}

/// Java `String.hashCode`: `h = 31*h + c` over UTF-16 code units, wrapping at 32 bits.
#[inline]
pub fn java_string_hash(s: &str) -> i32 {
    fold_units(0, s)
}

/// The ConsumeQueue tags code of a tag: Java `String.hashCode` sign-extended to i64.
#[inline]
pub fn tag_hash(tag: &str) -> i64 {
    i64::from(java_string_hash(tag))
}

/// Continues a Java `String.hashCode` computation `h` over the text of `bytes` (UTF-8), as if the
/// strings were concatenated: `java_hash_continue(java_string_hash(a), b) == hash(a + b)`.
/// Invalid UTF-8 is hashed as Java would after decoding the bytes: each maximal invalid sequence
/// becomes U+FFFD. No allocation.
pub fn java_hash_continue(mut h: i32, bytes: &[u8]) -> i32 {
    if bytes.is_ascii() {
        return fold_ascii(h, bytes);
    }
    for chunk in bytes.utf8_chunks() {
        h = fold_units(h, chunk.valid());
        if !chunk.invalid().is_empty() {
            h = h.wrapping_mul(31).wrapping_add(0xFFFD);
        }
    }
    h
}

/// Tag hash of a raw `TAGS` property value (see [`java_hash_continue`] for invalid UTF-8).
pub fn tag_hash_bytes(tag: &[u8]) -> i64 {
    i64::from(java_hash_continue(0, tag))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition, one UTF-16 unit at a time.
    fn reference(h: i32, s: &str) -> i32 {
        s.encode_utf16()
            .fold(h, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
    }

    #[test]
    fn known_java_values() {
        // "hello".hashCode() == 99162322, "TagA".hashCode() == 2598919 in Java.
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash("TagA"), 2_598_919);
        assert_eq!(java_string_hash(""), 0);
        // 32 hex chars, the shape of every UNIQ_KEY.
        let id = "7F0000010C2818B4AAC2135D8CEB0000";
        assert_eq!(java_string_hash(id), reference(0, id));
    }

    proptest! {
        #[test]
        fn ascii_fast_path_equals_the_definition(s in "[ -~]{0,80}", h in any::<i32>()) {
            prop_assert_eq!(java_hash_continue(h, s.as_bytes()), reference(h, &s));
            prop_assert_eq!(fold_units(h, &s), reference(h, &s));
        }

        #[test]
        fn any_text_equals_the_definition(s in any::<String>(), h in any::<i32>()) {
            prop_assert_eq!(java_hash_continue(h, s.as_bytes()), reference(h, &s));
        }
    }
}
