//! fastjson maps keyed by MessageQueue, such as ResetOffsetBody's
//! `{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:12}}`: fastjson writes the key
//! object itself where JSON wants a string, so no JSON parser reads them. [`write_queue_key`]
//! writes one key; [`parse_offset_table`] reads one such map of integers out of a body (the
//! key may also come as a JSON string holding the object, as some non-Java writers send it).

use std::fmt::Write as _;

use super::MessageQueue;
use crate::remoting::error::BodyError;

/// A JSON string literal.
fn quoted(s: &str) -> String {
    // A &str always serializes.
    serde_json::to_string(s).unwrap_or_default()
}

/// Appends a MessageQueue as fastjson writes it (fields in alphabetical order).
pub fn write_queue_key(out: &mut String, topic: &str, broker_name: &str, queue_id: i32) {
    let _ = write!(
        out,
        "{{\"brokerName\":{},\"queueId\":{queue_id},\"topic\":{}}}",
        quoted(broker_name),
        quoted(topic)
    );
}

/// `{"<field>":{<queue>:<offset>,...}}`, the queues in the order given.
pub fn offset_table_json<'a>(
    field: &str,
    entries: impl IntoIterator<Item = (&'a str, &'a str, i32, i64)>,
) -> String {
    let mut out = format!("{{{}:{{", quoted(field));
    for (i, (topic, broker, queue_id, offset)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_queue_key(&mut out, topic, broker, queue_id);
        let _ = write!(out, ":{offset}");
    }
    out.push_str("}}");
    out
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
    what: &'static str,
}

impl<'a> Scan<'a> {
    fn err(&self, why: &str) -> BodyError {
        let start = self.i.min(self.b.len());
        let end = (start + 16).min(self.b.len());
        let near = String::from_utf8_lossy(&self.b[start..end]).into_owned();
        BodyError::Json {
            what: self.what,
            source: serde::de::Error::custom(format!("{why} at byte {} (near {near:?})", self.i)),
        }
    }

    fn ws(&mut self) {
        while self.i < self.b.len() && self.b[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Result<(), BodyError> {
        if self.peek() != Some(c) {
            return Err(self.err(&format!("expected {:?}", c as char)));
        }
        self.i += 1;
        Ok(())
    }

    /// The bytes of one JSON value (string, number, literal, object or array), skipped.
    fn value(&mut self) -> Result<&'a [u8], BodyError> {
        self.ws();
        let start = self.i;
        let mut depth = 0usize;
        let mut in_string = false;
        let mut escaped = false;
        while self.i < self.b.len() {
            let c = self.b[self.i];
            self.i += 1;
            if in_string {
                if escaped {
                    escaped = false;
                } else if c == b'\\' {
                    escaped = true;
                } else if c == b'"' {
                    in_string = false;
                    if depth == 0 {
                        return Ok(&self.b[start..self.i]);
                    }
                }
                continue;
            }
            match c {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    if depth == 0 {
                        return Err(self.err("unbalanced bracket"));
                    }
                    depth -= 1;
                    if depth == 0 {
                        return Ok(&self.b[start..self.i]);
                    }
                }
                b',' | b':' if depth == 0 => {
                    self.i -= 1;
                    return Ok(&self.b[start..self.i]);
                }
                _ => {}
            }
            if depth == 0 && matches!(self.b.get(self.i), Some(b'}' | b']') | None) {
                return Ok(&self.b[start..self.i]);
            }
        }
        Err(self.err("truncated value"))
    }
}

fn json<'de, T: serde::Deserialize<'de>>(s: &Scan<'_>, bytes: &'de [u8]) -> Result<T, BodyError> {
    serde_json::from_slice(bytes).map_err(|source| BodyError::Json {
        what: s.what,
        source,
    })
}

/// Reads the MessageQueue-keyed integer map under the top-level `field` of `body`, in the
/// order written. A missing field is an empty table.
pub fn parse_offset_table(
    body: &[u8],
    field: &str,
    what: &'static str,
) -> Result<Vec<(MessageQueue, i64)>, BodyError> {
    let mut s = Scan {
        b: body,
        i: 0,
        what,
    };
    let mut out = Vec::new();
    s.eat(b'{')?;
    if s.peek() == Some(b'}') {
        return Ok(out);
    }
    loop {
        let key: String = {
            let k = s.value()?;
            json(&s, k)?
        };
        s.eat(b':')?;
        if key == field && s.peek() == Some(b'{') {
            s.eat(b'{')?;
            if s.peek() == Some(b'}') {
                s.i += 1;
            } else {
                loop {
                    let k = s.value()?;
                    let mq: MessageQueue = if k.first() == Some(&b'"') {
                        let inner: String = json(&s, k)?;
                        serde_json::from_str(&inner)
                            .map_err(|source| BodyError::Json { what, source })?
                    } else {
                        json(&s, k)?
                    };
                    s.eat(b':')?;
                    let v = s.value()?;
                    let offset: i64 = json(&s, v)?;
                    out.push((mq, offset));
                    match s.peek() {
                        Some(b',') => s.i += 1,
                        Some(b'}') => {
                            s.i += 1;
                            break;
                        }
                        _ => return Err(s.err("expected ',' or '}' in the table")),
                    }
                }
            }
        } else {
            s.value()?;
        }
        match s.peek() {
            Some(b',') => s.i += 1,
            Some(b'}') => return Ok(out),
            _ => return Err(s.err("expected ',' or '}'")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mq(t: &str, b: &str, q: i32) -> MessageQueue {
        MessageQueue {
            topic: t.into(),
            broker_name: b.into(),
            queue_id: q,
        }
    }

    #[test]
    fn a_written_table_reads_back_in_order() {
        let body = offset_table_json(
            "offsetTable",
            [
                ("T", "ramjet-0", 1, 12),
                ("T", "ramjet-0", 0, -1),
                ("T\"x", "b", 7, 1 << 40),
            ],
        );
        assert_eq!(
            body,
            r#"{"offsetTable":{{"brokerName":"ramjet-0","queueId":1,"topic":"T"}:12,{"brokerName":"ramjet-0","queueId":0,"topic":"T"}:-1,{"brokerName":"b","queueId":7,"topic":"T\"x"}:1099511627776}}"#
        );
        let t = parse_offset_table(body.as_bytes(), "offsetTable", "ResetOffsetBody").unwrap();
        assert_eq!(
            t,
            vec![
                (mq("T", "ramjet-0", 1), 12),
                (mq("T", "ramjet-0", 0), -1),
                (mq("T\"x", "b", 7), 1 << 40)
            ]
        );
    }

    #[test]
    fn other_fields_string_keys_and_spacing_are_read() {
        let body = br#" { "x" : [1, {"a":"}"}], "offsetTable" : { "{\"topic\":\"T\",\"brokerName\":\"b\",\"queueId\":3}" : 5 } , "y":null } "#;
        let t = parse_offset_table(body, "offsetTable", "ResetOffsetBody").unwrap();
        assert_eq!(t, vec![(mq("T", "b", 3), 5)]);
        assert!(parse_offset_table(b"{}", "offsetTable", "x")
            .unwrap()
            .is_empty());
        assert!(
            parse_offset_table(br#"{"offsetTable":{}}"#, "offsetTable", "x")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn malformed_tables_are_errors_not_panics() {
        for bad in [
            &b""[..],
            b"{",
            b"[]",
            br#"{"offsetTable":{{"topic":"T"}:1}}"#,
            br#"{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:"x"}}"#,
            br#"{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:1"#,
            br#"{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}}}"#,
            b"{\"a\"}",
        ] {
            assert!(
                parse_offset_table(bad, "offsetTable", "x").is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
