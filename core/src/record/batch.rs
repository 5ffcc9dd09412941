//! SEND_BATCH_MESSAGE body (spec §4.7, Java `MessageDecoder.encodeMessages`): per message
//! TOTALSIZE (= 22 + n + p), MAGICCODE (0), BODYCRC (0), FLAG, BODYLENGTH n, BODY,
//! PROPERTIESLENGTH p (int16), PROPERTIES.

use zerocopy::byteorder::big_endian::{I16, I32};
use zerocopy::{FromBytes, IntoBytes};

use super::error::RecordError;
use super::layout::{
    BatchEntryHead, BATCH_ENTRY_FIXED_LEN, BATCH_ENTRY_HEAD_LEN, MAX_PROPERTIES_LEN,
    PROPERTIES_LEN_LEN,
};

/// One message of a batch body, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchItem<'a> {
    pub flag: i32,
    pub body: &'a [u8],
    /// This message's own properties string.
    pub properties: &'a [u8],
}

/// Iterates the messages of a batch body. Stops after the first error, which it yields.
#[inline]
pub fn decode_batch(body: &[u8]) -> BatchIter<'_> {
    BatchIter {
        buf: body,
        pos: 0,
        index: 0,
        failed: false,
    }
}

/// Iterator of [`decode_batch`].
#[derive(Debug, Clone)]
pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
    index: usize,
    failed: bool,
}

impl<'a> BatchIter<'a> {
    fn read(&mut self) -> Result<BatchItem<'a>, RecordError> {
        let at = self.pos;
        let rest = &self.buf[at..];
        let trunc = |field, need, have| RecordError::Truncated {
            field,
            at,
            need,
            have,
        };
        let (head, _) = BatchEntryHead::ref_from_prefix(rest)
            .map_err(|_| trunc("batch entry head", BATCH_ENTRY_HEAD_LEN, rest.len()))?;
        let body_len = head.body_len.get();
        if body_len < 0 {
            return Err(RecordError::NegativeLength {
                field: "batch BODYLENGTH",
                value: i64::from(body_len),
            });
        }
        let body_len = body_len as usize;
        let after_head = &rest[BATCH_ENTRY_HEAD_LEN..];
        if after_head.len() < body_len {
            return Err(trunc(
                "batch BODY",
                BATCH_ENTRY_HEAD_LEN + body_len,
                rest.len(),
            ));
        }
        let (body, after_body) = after_head.split_at(body_len);
        let (props_len, after_len) = I16::read_from_prefix(after_body).map_err(|_| {
            trunc(
                "batch PROPERTIESLENGTH",
                BATCH_ENTRY_FIXED_LEN + body_len,
                rest.len(),
            )
        })?;
        let props_len = props_len.get();
        if props_len < 0 {
            return Err(RecordError::NegativeLength {
                field: "batch PROPERTIESLENGTH",
                value: i64::from(props_len),
            });
        }
        let props_len = props_len as usize;
        if after_len.len() < props_len {
            return Err(trunc(
                "batch PROPERTIES",
                BATCH_ENTRY_FIXED_LEN + body_len + props_len,
                rest.len(),
            ));
        }
        let computed = BATCH_ENTRY_FIXED_LEN + body_len + props_len;
        let total_size = head.total_size.get();
        if total_size < 0 || total_size as usize != computed {
            return Err(RecordError::BatchEntrySize {
                index: self.index,
                at,
                total_size,
                computed,
            });
        }
        self.pos += computed;
        self.index += 1;
        Ok(BatchItem {
            flag: head.flag.get(),
            body,
            properties: &after_len[..props_len],
        })
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<BatchItem<'a>, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let r = self.read();
        self.failed = r.is_err();
        Some(r)
    }
}

/// Encoded length of one batch entry.
#[inline]
pub fn batch_entry_len(body: &[u8], properties: &[u8]) -> usize {
    BATCH_ENTRY_FIXED_LEN + body.len() + properties.len()
}

/// Writes one batch entry at the start of `out` (client side), returning the bytes written.
pub fn encode_batch_entry(
    flag: i32,
    body: &[u8],
    properties: &[u8],
    out: &mut [u8],
) -> Result<usize, RecordError> {
    if properties.len() > MAX_PROPERTIES_LEN {
        return Err(RecordError::PropertiesTooLong {
            len: properties.len(),
            max: MAX_PROPERTIES_LEN,
        });
    }
    let len = batch_entry_len(body, properties);
    if len > i32::MAX as usize {
        return Err(RecordError::BodyTooLong {
            len: body.len(),
            max: i32::MAX as usize - BATCH_ENTRY_FIXED_LEN - properties.len(),
        });
    }
    if out.len() < len {
        return Err(RecordError::BufferTooSmall {
            need: len,
            have: out.len(),
        });
    }
    let head = BatchEntryHead {
        total_size: I32::new(len as i32),
        magic: I32::new(0),
        body_crc: I32::new(0),
        flag: I32::new(flag),
        body_len: I32::new(body.len() as i32),
    };
    let mut pos = 0;
    for part in [
        head.as_bytes(),
        body,
        I16::new(properties.len() as i16).as_bytes(),
        properties,
    ] {
        out[pos..pos + part.len()].copy_from_slice(part);
        pos += part.len();
    }
    debug_assert_eq!(pos, len);
    debug_assert_eq!(PROPERTIES_LEN_LEN, 2);
    Ok(len)
}
