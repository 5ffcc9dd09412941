//! RocketMQ's SQL92 message selector: the subset of SQL92 a consumer may subscribe with
//! (`MessageSelector.bySql`), evaluated against a message's properties.
//!
//! Grammar (keywords in any case):
//! - logic: `AND`, `OR`, `NOT`, parentheses;
//! - numeric comparison: `>`, `>=`, `<`, `<=`, `=`, `<>`, `[NOT] BETWEEN x AND y`;
//! - character comparison: `=`, `<>`, `[NOT] IN ('a', 'b', ...)`;
//! - `IS NULL`, `IS NOT NULL`;
//! - RocketMQ 5.x text matching: `a [NOT] CONTAINS 'x'`, `a [NOT] STARTSWITH 'x'`,
//!   `a [NOT] ENDSWITH 'x'`. As in 5.x these are never unknown: an absent property or an
//!   empty search string makes both the plain and the `NOT` form false;
//! - constants: numbers (`123`, `-5`, `3.1415`), strings in single quotes (`'abc'`, `''` for
//!   a quote), `TRUE`, `FALSE`, `NULL`;
//! - identifiers: property names (`a`, `TAGS`, `order.type`).
//!
//! Properties are text on the wire. A property compared with a number is read as one (an
//! integer, else a float); one that is not a number, or absent, makes the comparison
//! *unknown*. Unknown propagates as in SQL (three-valued logic: `NOT unknown` is unknown,
//! `unknown AND false` is false, `unknown OR true` is true), and a message matches only when
//! the whole expression is true. So `a > 5` skips messages without `a`, as RocketMQ's broker
//! does.
//!
//! This module parses and evaluates; it does not allocate during evaluation. The broker
//! compiles a subscription once (from the pull header or the consumer's heartbeat) and
//! evaluates it per found record (`net/src/broker/pull.rs`).

use std::fmt;

/// Longest expression accepted (bytes).
pub const MAX_SELECTOR_BYTES: usize = 4096;
/// Deepest nesting of parentheses and `NOT`s accepted (the parser recurses).
const MAX_DEPTH: usize = 64;
/// Most values in one `IN` list.
const MAX_IN_VALUES: usize = 1024;

/// Why an expression does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorError {
    /// Byte position in the expression.
    pub at: usize,
    pub reason: String,
}

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad SQL92 selector at byte {}: {}", self.at, self.reason)
    }
}

impl std::error::Error for SelectorError {}

/// A constant or a property.
#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Prop(String),
    Str(String),
    Long(i64),
    Double(f64),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// The 5.x text operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextOp {
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(CmpOp, Operand, Operand),
    Between {
        negated: bool,
        value: Operand,
        low: Operand,
        high: Operand,
    },
    In {
        negated: bool,
        value: Operand,
        list: Vec<String>,
    },
    IsNull {
        negated: bool,
        value: Operand,
    },
    Text {
        op: TextOp,
        negated: bool,
        value: Operand,
        search: String,
    },
    /// A boolean operand on its own: `TRUE`, or a property holding `true` / `false`.
    Truth(Operand),
}

/// A parsed selector.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    expr: Expr,
}

impl Selector {
    /// Parses `text`; errors say where and why.
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        if text.len() > MAX_SELECTOR_BYTES {
            return Err(SelectorError {
                at: MAX_SELECTOR_BYTES,
                reason: format!("longer than {MAX_SELECTOR_BYTES} bytes"),
            });
        }
        let tokens = lex(text)?;
        let mut p = Parser {
            tokens: &tokens,
            pos: 0,
            depth: 0,
            end: text.len(),
        };
        let expr = p.or()?;
        if let Some((at, t)) = p.peek_full() {
            return Err(SelectorError {
                at,
                reason: format!("unexpected {t:?} after a complete expression"),
            });
        }
        Ok(Selector { expr })
    }

    /// Whether a message whose properties `prop` gives matches (the expression is true).
    pub fn matches<'a>(&self, prop: impl Fn(&str) -> Option<&'a str>) -> bool {
        eval(&self.expr, &prop) == Some(true)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
}

fn lex(text: &str) -> Result<Vec<(usize, Tok)>, SelectorError> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |at: usize, reason: String| Err(SelectorError { at, reason });
    while i < b.len() {
        let c = b[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'(' => {
                out.push((start, Tok::LParen));
                i += 1;
            }
            b')' => {
                out.push((start, Tok::RParen));
                i += 1;
            }
            b',' => {
                out.push((start, Tok::Comma));
                i += 1;
            }
            b'=' => {
                out.push((start, Tok::Op("=")));
                i += 1;
            }
            b'<' | b'>' => {
                let two = b.get(i + 1).copied();
                let op = match (c, two) {
                    (b'<', Some(b'>')) => "<>",
                    (b'<', Some(b'=')) => "<=",
                    (b'>', Some(b'=')) => ">=",
                    (b'<', _) => "<",
                    _ => ">",
                };
                i += op.len();
                out.push((start, Tok::Op(op)));
            }
            b'\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match text[i..].find('\'') {
                        None => return err(start, "string not closed with '".into()),
                        Some(k) => {
                            s.push_str(&text[i..i + k]);
                            i += k + 1;
                            if b.get(i) == Some(&b'\'') {
                                s.push('\'');
                                i += 1;
                            } else {
                                break;
                            }
                        }
                    }
                }
                out.push((start, Tok::Str(s)));
            }
            b'0'..=b'9' | b'-' | b'.' => {
                i += 1;
                while i < b.len()
                    && (b[i].is_ascii_digit()
                        || b[i] == b'.'
                        || b[i] == b'e'
                        || b[i] == b'E'
                        || ((b[i] == b'-' || b[i] == b'+') && matches!(b[i - 1], b'e' | b'E')))
                {
                    i += 1;
                }
                let t = &text[start..i];
                if t == "-" {
                    return err(start, "a lone '-'".into());
                }
                out.push((start, Tok::Num(t.to_string())));
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'$' => {
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'_' | b'$' | b'.'))
                {
                    i += 1;
                }
                out.push((start, Tok::Ident(text[start..i].to_string())));
            }
            _ => {
                return err(
                    start,
                    format!("unexpected character {:?}", text[start..].chars().next()),
                )
            }
        }
    }
    Ok(out)
}

struct Parser<'t> {
    tokens: &'t [(usize, Tok)],
    pos: usize,
    depth: usize,
    end: usize,
}

impl Parser<'_> {
    fn peek_full(&self) -> Option<(usize, &Tok)> {
        self.tokens.get(self.pos).map(|(a, t)| (*a, t))
    }

    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.end, |(a, _)| *a)
    }

    fn fail<T>(&self, reason: impl Into<String>) -> Result<T, SelectorError> {
        Err(SelectorError {
            at: self.at(),
            reason: reason.into(),
        })
    }

    /// Consumes the keyword `kw` (any case) if it is next.
    fn keyword(&mut self, kw: &str) -> bool {
        match self.peek() {
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case(kw) => {
                self.pos += 1;
                true
            }
            _ => false,
        }
    }

    fn expect_keyword(&mut self, kw: &str) -> Result<(), SelectorError> {
        if self.keyword(kw) {
            Ok(())
        } else {
            self.fail(format!("expected {kw}"))
        }
    }

    fn deeper(&mut self) -> Result<(), SelectorError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.fail(format!("nested deeper than {MAX_DEPTH}"));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, SelectorError> {
        let mut left = self.and()?;
        while self.keyword("OR") {
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, SelectorError> {
        let mut left = self.not()?;
        while self.keyword("AND") {
            let right = self.not()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, SelectorError> {
        if self.keyword("NOT") {
            self.deeper()?;
            let e = self.not()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e)));
        }
        self.predicate()
    }

    fn predicate(&mut self) -> Result<Expr, SelectorError> {
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            self.deeper()?;
            let e = self.or()?;
            self.depth -= 1;
            if self.peek() != Some(&Tok::RParen) {
                return self.fail("expected )");
            }
            self.pos += 1;
            return Ok(e);
        }
        let value = self.operand()?;
        if let Some(Tok::Op(op)) = self.peek() {
            let op = match *op {
                "=" => CmpOp::Eq,
                "<>" => CmpOp::Ne,
                ">" => CmpOp::Gt,
                ">=" => CmpOp::Ge,
                "<" => CmpOp::Lt,
                _ => CmpOp::Le,
            };
            self.pos += 1;
            let right = self.operand()?;
            return Ok(Expr::Cmp(op, value, right));
        }
        if self.keyword("IS") {
            let negated = self.keyword("NOT");
            self.expect_keyword("NULL")?;
            return Ok(Expr::IsNull { negated, value });
        }
        let negated = self.keyword("NOT");
        if self.keyword("BETWEEN") {
            let low = self.operand()?;
            self.expect_keyword("AND")?;
            let high = self.operand()?;
            return Ok(Expr::Between {
                negated,
                value,
                low,
                high,
            });
        }
        if self.keyword("IN") {
            if self.peek() != Some(&Tok::LParen) {
                return self.fail("expected ( after IN");
            }
            self.pos += 1;
            let mut list = Vec::new();
            loop {
                match self.peek() {
                    Some(Tok::Str(s)) => {
                        if list.len() == MAX_IN_VALUES {
                            return self.fail(format!("more than {MAX_IN_VALUES} IN values"));
                        }
                        list.push(s.clone());
                        self.pos += 1;
                    }
                    _ => return self.fail("IN takes string constants"),
                }
                match self.peek() {
                    Some(Tok::Comma) => self.pos += 1,
                    Some(Tok::RParen) => {
                        self.pos += 1;
                        break;
                    }
                    _ => return self.fail("expected , or ) in the IN list"),
                }
            }
            return Ok(Expr::In {
                negated,
                value,
                list,
            });
        }
        for (kw, op) in [
            ("CONTAINS", TextOp::Contains),
            ("STARTSWITH", TextOp::StartsWith),
            ("ENDSWITH", TextOp::EndsWith),
        ] {
            if self.keyword(kw) {
                let Some(Tok::Str(search)) = self.peek().cloned() else {
                    return self.fail(format!("{kw} takes a string constant"));
                };
                self.pos += 1;
                return Ok(Expr::Text {
                    op,
                    negated,
                    value,
                    search,
                });
            }
        }
        if negated {
            return self.fail("expected BETWEEN, IN, CONTAINS, STARTSWITH or ENDSWITH after NOT");
        }
        match value {
            Operand::Bool(_) | Operand::Prop(_) => Ok(Expr::Truth(value)),
            _ => self.fail("expected a comparison, BETWEEN, IN or IS"),
        }
    }

    fn operand(&mut self) -> Result<Operand, SelectorError> {
        let Some(t) = self.peek().cloned() else {
            return self.fail("expression ends early");
        };
        let o = match t {
            Tok::Str(s) => Operand::Str(s),
            Tok::Num(n) => {
                if let Ok(v) = n.parse::<i64>() {
                    Operand::Long(v)
                } else if let Ok(v) = n.parse::<f64>() {
                    Operand::Double(v)
                } else {
                    return self.fail(format!("{n:?} is not a number"));
                }
            }
            Tok::Ident(s) => {
                if s.eq_ignore_ascii_case("TRUE") {
                    Operand::Bool(true)
                } else if s.eq_ignore_ascii_case("FALSE") {
                    Operand::Bool(false)
                } else if s.eq_ignore_ascii_case("NULL") {
                    Operand::Null
                } else if [
                    "AND",
                    "OR",
                    "NOT",
                    "BETWEEN",
                    "IN",
                    "IS",
                    "CONTAINS",
                    "STARTSWITH",
                    "ENDSWITH",
                ]
                .iter()
                .any(|k| s.eq_ignore_ascii_case(k))
                {
                    return self.fail(format!("keyword {s} where a value belongs"));
                } else {
                    Operand::Prop(s)
                }
            }
            other => return self.fail(format!("unexpected {other:?} where a value belongs")),
        };
        self.pos += 1;
        Ok(o)
    }
}

/// An operand's value for one message.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Val<'a> {
    Null,
    Text(&'a str),
    Long(i64),
    Double(f64),
    Bool(bool),
}

fn value<'s, 'p: 's>(o: &'s Operand, prop: &impl Fn(&str) -> Option<&'p str>) -> Val<'s> {
    match o {
        Operand::Prop(name) => prop(name).map_or(Val::Null, Val::Text),
        Operand::Str(s) => Val::Text(s),
        Operand::Long(v) => Val::Long(*v),
        Operand::Double(v) => Val::Double(*v),
        Operand::Bool(v) => Val::Bool(*v),
        Operand::Null => Val::Null,
    }
}

/// A number, as a comparison with a number reads it (text is parsed).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
enum Num {
    Long(i64),
    Double(f64),
}

fn as_num(v: Val<'_>) -> Option<Num> {
    match v {
        Val::Long(l) => Some(Num::Long(l)),
        Val::Double(d) => Some(Num::Double(d)),
        Val::Text(t) => {
            let t = t.trim();
            t.parse::<i64>()
                .map(Num::Long)
                .ok()
                .or_else(|| t.parse::<f64>().ok().map(Num::Double))
        }
        _ => None,
    }
}

fn num_cmp(a: Num, b: Num) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Num::Long(x), Num::Long(y)) => Some(x.cmp(&y)),
        (Num::Long(x), Num::Double(y)) => (x as f64).partial_cmp(&y),
        (Num::Double(x), Num::Long(y)) => x.partial_cmp(&(y as f64)),
        (Num::Double(x), Num::Double(y)) => x.partial_cmp(&y),
    }
}

fn as_bool(v: Val<'_>) -> Option<bool> {
    match v {
        Val::Bool(b) => Some(b),
        Val::Text(t) if t.eq_ignore_ascii_case("true") => Some(true),
        Val::Text(t) if t.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn is_numeric(v: Val<'_>) -> bool {
    matches!(v, Val::Long(_) | Val::Double(_))
}

/// Three-valued comparison: `None` is unknown.
fn compare(op: CmpOp, a: Val<'_>, b: Val<'_>) -> Option<bool> {
    use std::cmp::Ordering::{Equal, Greater, Less};
    if a == Val::Null || b == Val::Null {
        return None;
    }
    let ord = if is_numeric(a) || is_numeric(b) {
        num_cmp(as_num(a)?, as_num(b)?)?
    } else if let (Val::Bool(_), _) | (_, Val::Bool(_)) = (a, b) {
        let (x, y) = (as_bool(a)?, as_bool(b)?);
        return match op {
            CmpOp::Eq => Some(x == y),
            CmpOp::Ne => Some(x != y),
            _ => None,
        };
    } else {
        let (Val::Text(x), Val::Text(y)) = (a, b) else {
            return None;
        };
        // Text compares only for (in)equality, as RocketMQ's character comparison.
        return match op {
            CmpOp::Eq => Some(x == y),
            CmpOp::Ne => Some(x != y),
            _ => None,
        };
    };
    Some(match op {
        CmpOp::Eq => ord == Equal,
        CmpOp::Ne => ord != Equal,
        CmpOp::Gt => ord == Greater,
        CmpOp::Ge => ord != Less,
        CmpOp::Lt => ord == Less,
        CmpOp::Le => ord != Greater,
    })
}

fn eval<'s, 'p: 's>(e: &'s Expr, prop: &impl Fn(&str) -> Option<&'p str>) -> Option<bool> {
    match e {
        Expr::Or(a, b) => match (eval(a, prop), eval(b, prop)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        Expr::And(a, b) => match (eval(a, prop), eval(b, prop)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        Expr::Not(a) => eval(a, prop).map(|v| !v),
        Expr::Cmp(op, a, b) => compare(*op, value(a, prop), value(b, prop)),
        Expr::Between {
            negated,
            value: v,
            low,
            high,
        } => {
            let v = value(v, prop);
            let ge = compare(CmpOp::Ge, v, value(low, prop));
            let le = compare(CmpOp::Le, v, value(high, prop));
            let inside = match (ge, le) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            };
            inside.map(|x| x != *negated)
        }
        Expr::In {
            negated,
            value: v,
            list,
        } => match value(v, prop) {
            Val::Text(t) => Some(list.iter().any(|s| s == t) != *negated),
            _ => None,
        },
        Expr::IsNull { negated, value: v } => Some((value(v, prop) == Val::Null) != *negated),
        Expr::Text {
            op,
            negated,
            value: v,
            search,
        } => match value(v, prop) {
            Val::Text(t) if !search.is_empty() => {
                let found = match op {
                    TextOp::Contains => t.contains(search.as_str()),
                    TextOp::StartsWith => t.starts_with(search.as_str()),
                    TextOp::EndsWith => t.ends_with(search.as_str()),
                };
                Some(found != *negated)
            }
            _ => Some(false),
        },
        Expr::Truth(v) => as_bool(value(v, prop)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |n| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| *v)
    }

    fn m(expr: &str, pairs: &[(&str, &str)]) -> bool {
        Selector::parse(expr)
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
            .matches(props(pairs))
    }

    #[test]
    fn numeric_and_text_comparisons() {
        let msg = [("a", "10"), ("b", "abc"), ("c", "true"), ("d", "2.5")];
        assert!(m("a > 5 AND b = 'abc'", &msg));
        assert!(!m("a > 5 AND b = 'abd'", &msg));
        assert!(!m("a < 5", &msg));
        assert!(m("a >= 10 and a <= 10 and a = 10 and a <> 11", &msg));
        assert!(m("d > 2 AND d < 3 AND d = 2.5", &msg));
        assert!(m("a BETWEEN 0 AND 10", &msg));
        assert!(!m("a BETWEEN 11 AND 20", &msg));
        assert!(m("a NOT BETWEEN 11 AND 20", &msg));
        assert!(m("b IN ('x', 'abc')", &msg));
        assert!(!m("b NOT IN ('x', 'abc')", &msg));
        assert!(m("c = TRUE", &msg));
        assert!(m("c", &msg));
        assert!(!m("c = FALSE", &msg));
        assert!(m("b <> 'x' OR a < 0", &msg));
        assert!(m("(a > 100 OR b = 'abc') AND NOT (a < 0)", &msg));
        assert!(m("-5 < a", &msg));
        assert!(m("a > 1e0", &msg));
    }

    #[test]
    fn absent_or_non_numeric_properties_are_unknown_and_never_match() {
        let msg = [("b", "abc")];
        // Absent: unknown, also under NOT.
        assert!(!m("a > 5", &msg));
        assert!(!m("NOT (a > 5)", &msg));
        assert!(!m("a BETWEEN 0 AND 10", &msg));
        assert!(!m("a NOT BETWEEN 0 AND 10", &msg));
        assert!(!m("a IN ('1')", &msg));
        assert!(!m("a NOT IN ('1')", &msg));
        // Text compared with a number: unknown.
        assert!(!m("b > 1", &msg));
        // Three-valued logic.
        assert!(m("a > 5 OR b = 'abc'", &msg));
        assert!(!m("a > 5 AND b = 'abc'", &msg));
        assert!(m("NOT (a > 5 AND b = 'x')", &msg));
        assert!(m("a IS NULL AND b IS NOT NULL", &msg));
        assert!(!m("a IS NOT NULL", &msg));
        // Text orders only for (in)equality.
        assert!(!m("b > 'a'", &msg));
    }

    #[test]
    fn text_matching_of_5x() {
        let msg = [("a", "order-created"), ("n", "12")];
        assert!(m("a CONTAINS 'der-cr'", &msg));
        assert!(!m("a CONTAINS 'x'", &msg));
        assert!(m("a NOT CONTAINS 'x'", &msg));
        assert!(m("a startswith 'order'", &msg));
        assert!(!m("a STARTSWITH 'created'", &msg));
        assert!(m("a NOT STARTSWITH 'created'", &msg));
        assert!(m("a ENDSWITH 'created' AND n > 10", &msg));
        assert!(!m("a NOT ENDSWITH 'created'", &msg));
        // Absent property or empty search: false either way, never unknown.
        for e in [
            "b CONTAINS 'x'",
            "b NOT CONTAINS 'x'",
            "a CONTAINS ''",
            "a NOT ENDSWITH ''",
        ] {
            assert!(!m(e, &msg), "{e}");
        }
        assert!(m("NOT (b CONTAINS 'x')", &msg));
    }

    #[test]
    fn keywords_any_case_quotes_and_dotted_names() {
        let msg = [("order.type", "it's"), ("TAGS", "TagA")];
        assert!(m("order.type = 'it''s' and TAGS in ('TagA')", &msg));
        assert!(m("TAGS is not null Or FALSE", &msg));
    }

    #[test]
    fn bad_expressions_say_where_and_why() {
        let cases = [
            ("", 0, "ends early"),
            ("a >", 3, "ends early"),
            ("a > 5 b", 6, "after a complete expression"),
            ("(a > 5", 6, "expected )"),
            ("b = 'abc", 4, "not closed"),
            ("a # 1", 2, "unexpected character"),
            ("a IN (1)", 6, "string constants"),
            ("a NOT LIKE 'x'", 6, "BETWEEN, IN, CONTAINS"),
            ("a CONTAINS 5", 11, "string constant"),
            ("5", 1, "comparison"),
            ("a BETWEEN 1 2", 12, "expected AND"),
            ("AND", 0, "keyword"),
        ];
        for (expr, at, why) in cases {
            let e = Selector::parse(expr).expect_err(expr);
            assert!(e.reason.contains(why), "{expr}: {e}");
            assert_eq!(e.at, at, "{expr}: {e}");
        }
        let deep = format!("{}a > 1{}", "(".repeat(100), ")".repeat(100));
        assert!(Selector::parse(&deep)
            .expect_err("deep")
            .reason
            .contains("nested"));
        assert!(Selector::parse(&"a = 1 OR ".repeat(1000)).is_err());
    }
}
