//! RocketMQ's ACL 1.0 ("plain ACL", `aclEnable = true` in a 4.x broker), the parts that are
//! not policy:
//!
//! - the request signature: HMAC-SHA1, keyed with the account's secret key, over the values of
//!   the request's ext fields sorted by key (without `Signature` and `_UNIQUE_KEY_QUERY`)
//!   followed by the body, Base64-encoded into the `Signature` ext field ([`Signer`]);
//! - the permission bits of `plain_acl.yml` and their check ([`perm`]);
//! - the remote-address patterns of `globalWhiteRemoteAddresses` and `whiteRemoteAddress`
//!   ([`AddressPattern`]).
//!
//! The broker's policy (accounts, the file, reloads) lives in ramjet-net; clients sign with the
//! same [`Signer`], so both sides compute the same bytes by construction.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use std::net::IpAddr;

/// Ext field naming the account.
pub const ACCESS_KEY: &str = "AccessKey";
/// Ext field carrying the Base64 signature.
pub const SIGNATURE: &str = "Signature";
/// Ext field of a temporary credential's token (signed like any other field).
pub const SECURITY_TOKEN: &str = "SecurityToken";
/// Ext field the Java admin adds to a query after signing; never part of the signature.
pub const UNIQUE_MSG_QUERY_FLAG: &str = "_UNIQUE_KEY_QUERY";
/// Most ext fields a signed request may carry (a send v2 has 14, a pull 13): the fields are
/// sorted in a fixed array on the stack, so signing allocates nothing.
pub const MAX_SIGNED_FIELDS: usize = 64;
/// Length of a Base64 HMAC-SHA1 signature (20 bytes, padded).
pub const SIGNATURE_LEN: usize = 28;

/// Why a request could not be signed or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("a signed request carries at most {MAX_SIGNED_FIELDS} ext fields; this one has more")]
    TooManyFields,
}

/// HMAC-SHA1 keyed with one secret key, ready to sign any number of requests (each signature
/// clones the keyed state: no allocation, no re-keying).
#[derive(Clone)]
pub struct Signer {
    mac: Hmac<Sha1>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

impl Signer {
    pub fn new(secret_key: &str) -> Signer {
        // HMAC takes keys of any length (long ones are hashed), so this cannot fail.
        let mac = <Hmac<Sha1> as Mac>::new_from_slice(secret_key.as_bytes())
            .expect("HMAC accepts keys of any length");
        Signer { mac }
    }

    /// The signature of a request with these ext fields (any order; for a repeated key the
    /// last value counts, as in the Java broker's map) and this body.
    pub fn sign<'a, I>(&self, fields: I, body: &[u8]) -> Result<Signature, SignError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        Ok(self.sign_fields(&SortedFields::collect(fields)?, body))
    }

    /// The signature of a request whose ext fields were collected (and sorted) already.
    pub fn sign_fields(&self, fields: &SortedFields<'_>, body: &[u8]) -> Signature {
        let mut mac = self.mac.clone();
        // The values go to the hash in a few large updates rather than one per field.
        let mut buf = [0u8; 512];
        let mut len = 0;
        for (k, v) in fields.iter() {
            if k == SIGNATURE || k == UNIQUE_MSG_QUERY_FLAG {
                continue;
            }
            let v = v.as_bytes();
            if len + v.len() > buf.len() {
                mac.update(&buf[..len]);
                len = 0;
            }
            if v.len() > buf.len() {
                mac.update(v);
            } else {
                buf[len..len + v.len()].copy_from_slice(v);
                len += v.len();
            }
        }
        mac.update(&buf[..len]);
        mac.update(body);
        let digest = mac.finalize().into_bytes();
        let mut out = [0u8; SIGNATURE_LEN];
        base64_20(digest.as_slice(), &mut out);
        Signature { text: out }
    }
}

/// A request's ext fields sorted by key in Java's order, each key once (its last value), on
/// the stack: collected in one pass, then signed and looked up by binary search.
pub struct SortedFields<'a> {
    items: [(&'a str, &'a str); MAX_SIGNED_FIELDS],
    n: usize,
    /// Every key is ASCII (always, for RocketMQ's headers): keys compare as bytes.
    ascii: bool,
}

impl<'a> SortedFields<'a> {
    pub fn collect<I>(fields: I) -> Result<SortedFields<'a>, SignError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut out = SortedFields::new();
        out.fill(fields)?;
        Ok(out)
    }

    /// Empty; [`SortedFields::fill`] it where it lies (the array is 2 KiB: moving a filled one
    /// costs more than sorting it).
    pub fn new() -> SortedFields<'a> {
        SortedFields {
            items: [("", ""); MAX_SIGNED_FIELDS],
            n: 0,
            ascii: true,
        }
    }

    /// Replaces the contents with `fields`, sorted, each key once (its last value).
    pub fn fill<I>(&mut self, fields: I) -> Result<(), SignError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        self.n = 0;
        self.ascii = true;
        for kv in fields {
            if self.n == MAX_SIGNED_FIELDS {
                return Err(SignError::TooManyFields);
            }
            self.ascii &= kv.0.is_ascii();
            self.items[self.n] = kv;
            self.n += 1;
        }
        // Insertion sort: stable (a repeated key keeps its wire order) and allocation-free;
        // a request has a dozen or two fields.
        for i in 1..self.n {
            let cur = self.items[i];
            let mut j = i;
            while j > 0 && self.lt(cur.0, self.items[j - 1].0) {
                self.items[j] = self.items[j - 1];
                j -= 1;
            }
            self.items[j] = cur;
        }
        // Of equal keys the last one counts.
        let mut w = 0;
        for r in 0..self.n {
            if r + 1 < self.n && self.items[r + 1].0 == self.items[r].0 {
                continue;
            }
            self.items[w] = self.items[r];
            w += 1;
        }
        self.n = w;
        Ok(())
    }

    #[inline]
    fn lt(&self, a: &str, b: &str) -> bool {
        if self.ascii {
            bytes_lt(a.as_bytes(), b.as_bytes())
        } else {
            java_str_lt(a, b)
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        let items = &self.items[..self.n];
        let i = items.partition_point(|(k, _)| self.lt(k, key));
        items.get(i).filter(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        self.items[..self.n].iter().copied()
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}

impl Default for SortedFields<'_> {
    fn default() -> Self {
        SortedFields::new()
    }
}

/// Byte order, inline: header keys are a few bytes (`a`..`n` in a send), where a call to
/// `memcmp` costs more than the comparison.
#[inline]
fn bytes_lt(a: &[u8], b: &[u8]) -> bool {
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x < y;
        }
    }
    a.len() < b.len()
}

/// Java's `String.compareTo` order (UTF-16 code units). For the ASCII keys every RocketMQ
/// header uses this is byte order; for others, UTF-8 byte order equals code-point order, which
/// differs from UTF-16 order only between U+E000..U+FFFF and supplementary characters.
fn java_str_lt(a: &str, b: &str) -> bool {
    a.encode_utf16().lt(b.encode_utf16())
}

/// A Base64 HMAC-SHA1 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    text: [u8; SIGNATURE_LEN],
}

impl Signature {
    pub fn as_str(&self) -> &str {
        // The encoder writes only Base64 alphabet bytes and '='.
        std::str::from_utf8(&self.text).expect("base64 is ASCII")
    }

    /// Whether `given` (a request's `Signature` field) is this signature; the comparison
    /// takes the same time wherever the first difference is.
    pub fn matches(&self, given: &str) -> bool {
        let given = given.as_bytes();
        if given.len() != SIGNATURE_LEN {
            return false;
        }
        let mut diff = 0u8;
        for (a, b) in self.text.iter().zip(given) {
            diff |= a ^ b;
        }
        diff == 0
    }
}

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signature({})", self.as_str())
    }
}

/// Standard Base64 with padding of a 20-byte digest into 28 bytes.
fn base64_20(input: &[u8], out: &mut [u8; SIGNATURE_LEN]) {
    debug_assert_eq!(input.len(), 20);
    for (i, chunk) in input.chunks(3).enumerate() {
        out[i * 4..i * 4 + 4]
            .copy_from_slice(&crate::base64::encode_group(crate::base64::STANDARD, chunk));
    }
}

/// Permission bits of `plain_acl.yml` (RocketMQ's `Permission`).
pub mod perm {
    use crate::remoting::RequestCode;

    pub const DENY: u8 = 1;
    /// Needed: either PUB or SUB will do.
    pub const ANY: u8 = 1 << 1;
    pub const PUB: u8 = 1 << 2;
    pub const SUB: u8 = 1 << 3;

    /// `PUB`, `SUB`, `PUB|SUB` (or `SUB|PUB`), `DENY`; anything else is an error (the Java
    /// broker reads an unknown word as DENY without a word; a typo should not do that
    /// silently).
    pub fn parse(text: &str) -> Result<u8, String> {
        match text.trim() {
            "PUB" => Ok(PUB),
            "SUB" => Ok(SUB),
            "PUB|SUB" | "SUB|PUB" => Ok(PUB | SUB),
            "DENY" => Ok(DENY),
            other => Err(format!(
                "unknown permission {other:?} (expected PUB, SUB, PUB|SUB or DENY)"
            )),
        }
    }

    /// Whether `owned` grants `needed`: DENY grants nothing, ANY needs PUB or SUB.
    pub fn check(needed: u8, owned: u8) -> bool {
        if owned & DENY != 0 {
            return false;
        }
        if needed & ANY != 0 {
            return owned & (PUB | SUB) != 0;
        }
        needed & owned != 0
    }

    /// Requests only an `admin: true` account may make: RocketMQ's list, plus the ACL admin
    /// requests themselves (which a 4.x broker lets any account with a valid signature make)
    /// and the 5.x list form of group creation.
    pub fn needs_admin(code: i32) -> bool {
        matches!(
            code,
            RequestCode::UPDATE_AND_CREATE_TOPIC
                // The list form (5.x) creates topics as the single form does.
                | RequestCode::UPDATE_AND_CREATE_TOPIC_LIST
                | RequestCode::UPDATE_BROKER_CONFIG
                | RequestCode::DELETE_TOPIC_IN_BROKER
                | RequestCode::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP
                // The list form (5.x) creates groups as the single form does.
                | RequestCode::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP_LIST
                | RequestCode::DELETE_SUBSCRIPTIONGROUP
                | RequestCode::UPDATE_AND_CREATE_ACL_CONFIG
                | RequestCode::DELETE_ACL_CONFIG
                | RequestCode::GET_BROKER_CLUSTER_ACL_INFO
                | RequestCode::UPDATE_GLOBAL_WHITE_ADDRS_CONFIG
                | RequestCode::GET_BROKER_CLUSTER_ACL_CONFIG
                // ramjet's addition: a group's PULL/POP mode changes how every member reads.
                | RequestCode::SET_MESSAGE_REQUEST_MODE
        )
    }

    /// The word for a permission, for messages.
    pub fn name(p: u8) -> &'static str {
        match p {
            PUB => "PUB",
            SUB => "SUB",
            x if x == PUB | SUB => "PUB|SUB",
            ANY => "PUB or SUB",
            _ => "DENY",
        }
    }
}

/// One entry of `globalWhiteRemoteAddresses` or an account's `whiteRemoteAddress`.
///
/// IPv4 patterns have up to four dot-separated parts, each a number, `*`, a range `a-b` or a
/// set `{a,b,c}`; missing trailing parts match anything (`10.1.*` = `10.1.*.*`). `*` alone
/// matches every address, IPv6 included. A comma list (`10.0.0.1,10.0.0.2`) matches any of
/// its addresses. An IPv6 address matches itself. An empty pattern matches nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressPattern {
    Nothing,
    Everything,
    V4([Part; 4]),
    Exact(IpAddr),
    AnyOf(Vec<AddressPattern>),
}

/// One part of an IPv4 pattern: the inclusive range of octets it accepts, or a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Range(u8, u8),
    Set(Vec<u8>),
}

impl Part {
    fn matches(&self, octet: u8) -> bool {
        match self {
            Part::Range(lo, hi) => (*lo..=*hi).contains(&octet),
            Part::Set(v) => v.contains(&octet),
        }
    }
}

impl AddressPattern {
    pub fn parse(text: &str) -> Result<AddressPattern, String> {
        let t = text.trim();
        if t.is_empty() {
            return Ok(AddressPattern::Nothing);
        }
        if t == "*" || t == "*.*.*.*" {
            return Ok(AddressPattern::Everything);
        }
        // `a.b.c.{1,2}` is one pattern with a set; `x,y` outside braces is a list.
        if t.contains(',') && !t.contains('{') {
            let list = t
                .split(',')
                .map(AddressPattern::parse)
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(AddressPattern::AnyOf(list));
        }
        if let Ok(ip) = t.parse::<IpAddr>() {
            return Ok(AddressPattern::Exact(ip));
        }
        let bad = |why: &str| format!("bad address pattern {t:?}: {why}");
        let parts: Vec<&str> = t.split('.').collect();
        if parts.len() > 4 {
            return Err(bad("more than four parts"));
        }
        let mut out: [Part; 4] = std::array::from_fn(|_| Part::Range(0, 255));
        for (i, p) in parts.iter().enumerate() {
            let p = p.trim();
            out[i] = if p == "*" {
                Part::Range(0, 255)
            } else if let Some(inner) = p.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                let set = inner
                    .split(',')
                    .map(|x| x.trim().parse::<u8>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| bad("a set holds numbers 0-255"))?;
                Part::Set(set)
            } else if let Some((lo, hi)) = p.split_once('-') {
                let lo: u8 = lo
                    .trim()
                    .parse()
                    .map_err(|_| bad("range bounds are 0-255"))?;
                let hi: u8 = hi
                    .trim()
                    .parse()
                    .map_err(|_| bad("range bounds are 0-255"))?;
                if lo > hi {
                    return Err(bad("range upside down"));
                }
                Part::Range(lo, hi)
            } else {
                let n: u8 = p
                    .parse()
                    .map_err(|_| bad("each part is a number, *, a-b or {a,b}"))?;
                Part::Range(n, n)
            };
        }
        Ok(AddressPattern::V4(out))
    }

    pub fn matches(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match self {
            AddressPattern::Nothing => false,
            AddressPattern::Everything => true,
            AddressPattern::Exact(e) => *e == ip,
            AddressPattern::AnyOf(v) => v.iter().any(|p| p.matches(ip)),
            AddressPattern::V4(parts) => match ip {
                IpAddr::V4(v4) => parts.iter().zip(v4.octets()).all(|(p, o)| p.matches(o)),
                IpAddr::V6(_) => false,
            },
        }
    }
}

/// The retry topic that stands for a consumer group in permissions (`%RETRY%<group>`).
pub fn group_resource(group: &str) -> String {
    format!("{}{group}", crate::remoting::RETRY_GROUP_TOPIC_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha1_of_sorted_values_then_body() {
        // Reference computed independently:
        // python3 -c 'import hmac,hashlib,base64;print(base64.b64encode(hmac.new(b"12345678",
        //   b"RocketMQ"+b"g1"+b"TopicA"+b"hello",hashlib.sha1).digest()).decode())'
        let s = Signer::new("12345678");
        let sig = s
            .sign(
                [
                    ("topic", "TopicA"),
                    ("AccessKey", "RocketMQ"),
                    ("group", "g1"),
                    ("Signature", "ignored"),
                    ("_UNIQUE_KEY_QUERY", "ignored"),
                ],
                b"hello",
            )
            .unwrap();
        assert_eq!(sig.as_str(), "aGBt7jn0pzciP0dot/fOs5DvbW0=");
        assert!(sig.matches("aGBt7jn0pzciP0dot/fOs5DvbW0="));
        assert!(!sig.matches("aGBt7jn0pzciP0dot/fOs5DvbW1="));
        assert!(!sig.matches("short"));
        // Order of the input does not matter; a repeated key counts once, its last value.
        let again = s
            .sign(
                [
                    ("group", "zz"),
                    ("AccessKey", "RocketMQ"),
                    ("group", "g1"),
                    ("topic", "TopicA"),
                ],
                b"hello",
            )
            .unwrap();
        assert_eq!(again, sig);
        // A different body or secret changes it.
        assert_ne!(
            s.sign([("AccessKey", "RocketMQ")], b"x").unwrap(),
            s.sign([("AccessKey", "RocketMQ")], b"y").unwrap()
        );
        assert_ne!(
            Signer::new("other-secret")
                .sign([("AccessKey", "RocketMQ")], b"x")
                .unwrap(),
            s.sign([("AccessKey", "RocketMQ")], b"x").unwrap()
        );
    }

    #[test]
    fn uppercase_keys_sort_before_lowercase_as_in_java() {
        let s = Signer::new("12345678");
        // "AccessKey" < "OnsChannel" < "a" < "b": values in that order.
        let a = s
            .sign(
                [
                    ("b", "2"),
                    ("a", "1"),
                    ("OnsChannel", "ALIYUN"),
                    ("AccessKey", "k"),
                ],
                b"",
            )
            .unwrap();
        let b = s.sign([("x", "kALIYUN12")], b"").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn sorted_fields_look_up_and_keep_the_last_repeat() {
        let f = SortedFields::collect([("b", "1"), ("a", "2"), ("b", "3"), ("C", "4")]).unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!(
            f.iter().collect::<Vec<_>>(),
            [("C", "4"), ("a", "2"), ("b", "3")]
        );
        assert_eq!(f.get("b"), Some("3"));
        assert_eq!(f.get("a"), Some("2"));
        assert_eq!(f.get("x"), None);
        // Non-ASCII keys sort in Java's UTF-16 order: U+FF01 (one unit 0xFF01) after
        // U+1F600 (surrogates 0xD83D 0xDE00), unlike UTF-8 byte order.
        let g = SortedFields::collect([("\u{FF01}", "x"), ("\u{1F600}", "y")]).unwrap();
        assert_eq!(g.iter().map(|(_, v)| v).collect::<String>(), "yx");
        assert_eq!(g.get("\u{FF01}"), Some("x"));
        // A large value (past the 512-byte staging buffer) signs like its pieces.
        let big = "v".repeat(700);
        let s = Signer::new("12345678");
        let one = s.sign([("a", big.as_str()), ("b", "tail")], b"!").unwrap();
        let joined = format!("{big}tail!");
        let two = s.sign([("z", joined.as_str())], b"").unwrap();
        assert_eq!(one, two);
    }

    #[test]
    fn too_many_fields_is_an_error() {
        let keys: Vec<String> = (0..=MAX_SIGNED_FIELDS)
            .map(|i| format!("k{i:03}"))
            .collect();
        let s = Signer::new("12345678");
        let r = s.sign(keys.iter().map(|k| (k.as_str(), "v")), b"");
        assert_eq!(r, Err(SignError::TooManyFields));
        let ok = s.sign(
            keys[..MAX_SIGNED_FIELDS].iter().map(|k| (k.as_str(), "v")),
            b"",
        );
        assert!(ok.is_ok());
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        let mut out = [0u8; SIGNATURE_LEN];
        base64_20(&[0xff; 20], &mut out);
        assert_eq!(&out, b"//////////////////////////8=");
        base64_20(&[0u8; 20], &mut out);
        assert_eq!(&out, b"AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    }

    #[test]
    fn permissions_follow_rocketmq() {
        use perm::*;
        assert_eq!(parse("PUB|SUB").unwrap(), PUB | SUB);
        assert_eq!(parse(" SUB|PUB ").unwrap(), PUB | SUB);
        assert_eq!(parse("DENY").unwrap(), DENY);
        assert!(parse("PUB,SUB").is_err());
        assert!(check(PUB, PUB | SUB));
        assert!(check(SUB, SUB));
        assert!(!check(PUB, SUB));
        assert!(!check(SUB, DENY));
        assert!(check(ANY, SUB));
        assert!(!check(ANY, DENY));
        assert!(needs_admin(17));
        assert!(needs_admin(215));
        assert!(!needs_admin(10));
    }

    #[test]
    fn address_patterns() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let p = |s: &str| AddressPattern::parse(s).unwrap();
        assert!(!p("").matches(ip("127.0.0.1")));
        assert!(p("*").matches(ip("::1")));
        assert!(p("*.*.*.*").matches(ip("10.2.3.4")));
        assert!(p("192.168.0.*").matches(ip("192.168.0.77")));
        assert!(!p("192.168.0.*").matches(ip("192.168.1.77")));
        assert!(p("192.168.1-10.*").matches(ip("192.168.10.1")));
        assert!(!p("192.168.1-10.*").matches(ip("192.168.11.1")));
        assert!(p("10.1.*").matches(ip("10.1.200.3")));
        assert!(p("192.168.0.{1,2}").matches(ip("192.168.0.2")));
        assert!(!p("192.168.0.{1,2}").matches(ip("192.168.0.3")));
        assert!(p("10.0.0.1,10.0.0.2").matches(ip("10.0.0.2")));
        assert!(p("127.0.0.1").matches(ip("::ffff:127.0.0.1")));
        assert!(p("::1").matches(ip("::1")));
        assert!(!p("127.0.0.1").matches(ip("127.0.0.2")));
        assert!(AddressPattern::parse("300.1.1.1").is_err());
        assert!(AddressPattern::parse("1.2.3.4.5").is_err());
        assert!(AddressPattern::parse("1.2.9-3.*").is_err());
        assert!(AddressPattern::parse("a.b.c.d").is_err());
    }
}
