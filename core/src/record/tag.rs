//! Tag hash code (spec §4.9): Java `String.hashCode()` of the `TAGS` value, sign-extended to i64.

#[inline]
fn fold_units(h: i32, s: &str) -> i32 {
    s.encode_utf16()
        .fold(h, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
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
