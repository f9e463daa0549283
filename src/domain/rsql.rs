//! The query language of `q=` parameters, target filters and rollout filters (rollouts.md §1.4):
//! the RSQL/FIQL subset hawkBit accepts, parsed into a small AST.
//!
//! Pure syntax: which fields exist and what SQL they become is `store::filter`'s business. The
//! parser never panics and never allocates without bound on hostile input (the nesting depth
//! is capped), because its input comes straight from a URL.
//!
//! Grammar (`and` binds tighter than `or`; whitespace is allowed between tokens):
//!
//! ```text
//! or         := and ( ( "," | " or " ) and )*
//! and        := primary ( ( ";" | " and " ) primary )*
//! primary    := "(" or ")" | comparison
//! comparison := selector operator arguments
//! operator   := "==" | "!=" | "<" | "<=" | ">" | ">=" | "=" name "="
//! arguments  := "(" value ( "," value )* ")" | value
//! value      := unreserved+ | '"' escaped* '"' | "'" escaped* "'"
//! ```
//!
//! Named operators: `lt le gt ge in out is eq not ne`. `=li=` is documented by hawkBit but its
//! parser refuses it, and so do we (rollouts.md §12 #5).

use std::fmt;

/// The deepest parenthesis nesting accepted; deeper input is a syntax error, not a stack
/// overflow.
const MAX_DEPTH: usize = 64;

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// All children hold (at least two).
    And(Vec<Node>),
    /// Any child holds (at least two).
    Or(Vec<Node>),
    /// `field op value` or `field op (v1,v2,...)`.
    Cmp {
        field: String,
        op: Op,
        values: Vec<String>,
    },
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `=lt=` or `<`
    Lt,
    /// `=le=` or `<=`
    Le,
    /// `=gt=` or `>`
    Gt,
    /// `=ge=` or `>=`
    Ge,
    /// `=in=(a,b)`
    In,
    /// `=out=(a,b)`
    Out,
    /// `=is=` or `=eq=`: like `==`, but the literal `null` means SQL NULL.
    Is,
    /// `=not=` or `=ne=`: like `!=`, but the literal `null` means SQL NULL.
    Not,
}

impl Op {
    /// Whether the operator takes a list of values.
    pub fn is_multi(self) -> bool {
        matches!(self, Op::In | Op::Out)
    }

    /// The canonical spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "=lt=",
            Op::Le => "=le=",
            Op::Gt => "=gt=",
            Op::Ge => "=ge=",
            Op::In => "=in=",
            Op::Out => "=out=",
            Op::Is => "=is=",
            Op::Not => "=not=",
        }
    }

    fn from_name(name: &str) -> Option<Op> {
        Some(match name.to_ascii_lowercase().as_str() {
            "lt" => Op::Lt,
            "le" => Op::Le,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "in" => Op::In,
            "out" => Op::Out,
            "is" | "eq" => Op::Is,
            "not" | "ne" => Op::Not,
            _ => return None,
        })
    }
}

/// Why a query was refused. Both map to HTTP 400 with different hawkBit error codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RsqlError {
    /// Not a well-formed query, or a value the field cannot take.
    #[error("invalid query: {0}")]
    Syntax(String),
    /// A well-formed query naming a field the entity does not have.
    #[error("unknown query field {0:?}")]
    UnknownField(String),
}

/// Parse a query. Blank input is a syntax error.
pub fn parse(input: &str) -> Result<Node, RsqlError> {
    let mut p = Parser {
        src: input,
        pos: 0,
        depth: 0,
    };
    p.skip_ws();
    if p.at_end() {
        return Err(RsqlError::Syntax("empty query".into()));
    }
    let node = p.or()?;
    p.skip_ws();
    if !p.at_end() {
        return Err(p.error("unexpected input"));
    }
    Ok(node)
}

/// Characters that end an unquoted selector or value.
fn is_reserved(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\'' | '(' | ')' | ';' | ',' | '=' | '<' | '>' | '!' | '~'
        )
}

struct Parser<'a> {
    src: &'a str,
    /// Byte offset into `src`, always on a char boundary.
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }

    fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    fn error(&self, what: &str) -> RsqlError {
        let near: String = self.rest().chars().take(20).collect();
        if near.is_empty() {
            RsqlError::Syntax(format!("{what} at end of query"))
        } else {
            RsqlError::Syntax(format!("{what} at position {}: {near:?}", self.pos))
        }
    }

    /// Consume the keyword `and`/`or` when it stands alone (whitespace before was already
    /// skipped; whitespace or `(` must follow).
    fn keyword(&mut self, word: &str) -> bool {
        let rest = self.rest();
        let Some(head) = rest.get(..word.len()) else {
            return false;
        };
        if !head.eq_ignore_ascii_case(word) {
            return false;
        }
        match rest[word.len()..].chars().next() {
            Some(c) if c.is_whitespace() || c == '(' => {
                self.pos += word.len();
                true
            }
            _ => false,
        }
    }

    fn or(&mut self) -> Result<Node, RsqlError> {
        self.joined(',', "or", Self::and, Node::Or)
    }

    fn and(&mut self) -> Result<Node, RsqlError> {
        self.joined(';', "and", Self::primary, Node::And)
    }

    /// One or more `operand`s separated by `symbol` or `word`; a single one stands for itself,
    /// several are `join`ed.
    fn joined(
        &mut self,
        symbol: char,
        word: &str,
        operand: fn(&mut Self) -> Result<Node, RsqlError>,
        join: fn(Vec<Node>) -> Node,
    ) -> Result<Node, RsqlError> {
        let mut items = vec![operand(self)?];
        loop {
            let before = self.pos;
            self.skip_ws();
            let sep = if self.peek() == Some(symbol) {
                self.bump();
                true
            } else {
                // The keyword needs whitespace before it: `a==b or c==d`.
                self.pos > before && self.keyword(word)
            };
            if !sep {
                self.pos = before;
                break;
            }
            items.push(operand(self)?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            join(items)
        })
    }

    fn primary(&mut self) -> Result<Node, RsqlError> {
        self.skip_ws();
        if self.peek() == Some('(') {
            self.bump();
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(self.error("parentheses nested too deeply"));
            }
            let node = self.or()?;
            self.skip_ws();
            if self.bump() != Some(')') {
                return Err(self.error("expected ')'"));
            }
            self.depth -= 1;
            return Ok(node);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Node, RsqlError> {
        let field = self.unreserved();
        if field.is_empty() {
            return Err(self.error("expected a field name"));
        }
        self.skip_ws();
        let op = self.operator()?;
        self.skip_ws();
        let values = if self.peek() == Some('(') {
            self.bump();
            let mut values = Vec::new();
            loop {
                self.skip_ws();
                values.push(self.value()?);
                self.skip_ws();
                match self.bump() {
                    Some(',') => continue,
                    Some(')') => break,
                    _ => return Err(self.error("expected ',' or ')' in a value list")),
                }
            }
            if !op.is_multi() && values.len() != 1 {
                return Err(RsqlError::Syntax(format!(
                    "operator {} takes a single value",
                    op.as_str()
                )));
            }
            values
        } else {
            vec![self.value()?]
        };
        Ok(Node::Cmp { field, op, values })
    }

    fn operator(&mut self) -> Result<Op, RsqlError> {
        let rest = self.rest();
        let (op, len) = if rest.starts_with("==") {
            (Op::Eq, 2)
        } else if rest.starts_with("!=") {
            (Op::Ne, 2)
        } else if rest.starts_with("<=") {
            (Op::Le, 2)
        } else if rest.starts_with(">=") {
            (Op::Ge, 2)
        } else if rest.starts_with('<') {
            (Op::Lt, 1)
        } else if rest.starts_with('>') {
            (Op::Gt, 1)
        } else if let Some(tail) = rest.strip_prefix('=') {
            let name_len = tail
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(tail.len());
            let name = &tail[..name_len];
            if name.is_empty() || !tail[name_len..].starts_with('=') {
                return Err(self.error("expected an operator"));
            }
            let op = Op::from_name(name)
                .ok_or_else(|| RsqlError::Syntax(format!("unknown operator ={name}=")))?;
            (op, name_len + 2)
        } else {
            return Err(self.error("expected an operator"));
        };
        self.pos += len;
        Ok(op)
    }

    fn unreserved(&mut self) -> String {
        let start = self.pos;
        while self.peek().is_some_and(|c| !is_reserved(c)) {
            self.bump();
        }
        self.src[start..self.pos].to_owned()
    }

    fn value(&mut self) -> Result<String, RsqlError> {
        match self.peek() {
            Some(q @ ('"' | '\'')) => {
                self.bump();
                let mut out = String::new();
                loop {
                    match self.bump() {
                        None => return Err(self.error("unterminated quoted value")),
                        Some('\\') => match self.bump() {
                            Some(c) => out.push(c),
                            None => return Err(self.error("unterminated quoted value")),
                        },
                        Some(c) if c == q => return Ok(out),
                        Some(c) => out.push(c),
                    }
                }
            }
            _ => {
                let v = self.unreserved();
                if v.is_empty() {
                    Err(self.error("expected a value"))
                } else {
                    Ok(v)
                }
            }
        }
    }
}

/// Prints the canonical form, which parses back to the same AST: composite children are
/// always parenthesised and values always quoted.
impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn children(f: &mut fmt::Formatter<'_>, items: &[Node], sep: &str) -> fmt::Result {
            for (i, n) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(sep)?;
                }
                match n {
                    Node::Cmp { .. } => write!(f, "{n}")?,
                    _ => write!(f, "({n})")?,
                }
            }
            Ok(())
        }
        fn quoted(f: &mut fmt::Formatter<'_>, v: &str) -> fmt::Result {
            f.write_str("\"")?;
            for c in v.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\"")
        }
        match self {
            Node::And(items) => children(f, items, ";"),
            Node::Or(items) => children(f, items, ","),
            Node::Cmp { field, op, values } => {
                write!(f, "{field}{}", op.as_str())?;
                if op.is_multi() {
                    f.write_str("(")?;
                    for (i, v) in values.iter().enumerate() {
                        if i > 0 {
                            f.write_str(",")?;
                        }
                        quoted(f, v)?;
                    }
                    f.write_str(")")
                } else {
                    quoted(f, values.first().map(String::as_str).unwrap_or(""))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cmp(field: &str, op: Op, values: &[&str]) -> Node {
        Node::Cmp {
            field: field.into(),
            op,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn syntax(q: &str) -> bool {
        matches!(parse(q), Err(RsqlError::Syntax(_)))
    }

    #[test]
    fn every_operator_spelling_parses() {
        for (q, op) in [
            ("a==1", Op::Eq),
            ("a!=1", Op::Ne),
            ("a=lt=1", Op::Lt),
            ("a<1", Op::Lt),
            ("a=le=1", Op::Le),
            ("a<=1", Op::Le),
            ("a=gt=1", Op::Gt),
            ("a>1", Op::Gt),
            ("a=ge=1", Op::Ge),
            ("a>=1", Op::Ge),
            ("a=in=1", Op::In),
            ("a=out=1", Op::Out),
            ("a=is=1", Op::Is),
            ("a=eq=1", Op::Is),
            ("a=not=1", Op::Not),
            ("a=ne=1", Op::Not),
        ] {
            assert_eq!(parse(q), Ok(cmp("a", op, &["1"])), "{q}");
        }
    }

    #[test]
    fn value_lists_belong_to_in_and_out() {
        assert_eq!(
            parse("name=in=(a, 'b c' ,\"d\")"),
            Ok(cmp("name", Op::In, &["a", "b c", "d"]))
        );
        assert_eq!(parse("name=out=(x)"), Ok(cmp("name", Op::Out, &["x"])));
        assert!(syntax("name==(a,b)"));
        assert!(syntax("name=in=()"));
        assert!(syntax("name=in=(a,"));
        // One value in parentheses is still one value.
        assert_eq!(parse("name==(a)"), Ok(cmp("name", Op::Eq, &["a"])));
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let q = parse("a==1,b==2;c==3").unwrap();
        assert_eq!(
            q,
            Node::Or(vec![
                cmp("a", Op::Eq, &["1"]),
                Node::And(vec![cmp("b", Op::Eq, &["2"]), cmp("c", Op::Eq, &["3"])]),
            ])
        );
        let q = parse("(a==1,b==2);c==3").unwrap();
        assert_eq!(
            q,
            Node::And(vec![
                Node::Or(vec![cmp("a", Op::Eq, &["1"]), cmp("b", Op::Eq, &["2"])]),
                cmp("c", Op::Eq, &["3"]),
            ])
        );
    }

    #[test]
    fn keywords_and_whitespace_work_like_symbols() {
        assert_eq!(parse(" a == 1 and b==2 or c==3 "), parse("a==1;b==2,c==3"));
        assert_eq!(parse("a==1 AND (b==2 OR c==3)"), parse("a==1;(b==2,c==3)"));
        // Without surrounding whitespace `and` is just part of a value.
        assert_eq!(parse("a==band"), Ok(cmp("a", Op::Eq, &["band"])));
        assert!(syntax("a==1 and"));
        assert!(syntax("a==1 b==2"));
    }

    #[test]
    fn quoted_values_keep_reserved_characters_and_unescape() {
        assert_eq!(
            parse(r#"name=="a;b,c (d) == 'e'""#),
            Ok(cmp("name", Op::Eq, &["a;b,c (d) == 'e'"]))
        );
        assert_eq!(
            parse(r"name=='it\'s \\ ok'"),
            Ok(cmp("name", Op::Eq, &[r"it's \ ok"]))
        );
        assert_eq!(parse("name==''"), Ok(cmp("name", Op::Eq, &[""])));
        assert!(syntax("name=='open"));
        assert!(syntax(r"name=='trailing\"));
    }

    #[test]
    fn wildcards_dots_and_unicode_are_plain_value_characters() {
        assert_eq!(
            parse("attribute.hw.rev==*ä-1.0/x*"),
            Ok(cmp("attribute.hw.rev", Op::Eq, &["*ä-1.0/x*"]))
        );
    }

    #[test]
    fn malformed_queries_are_syntax_errors() {
        for q in [
            "",
            "   ",
            "name",
            "name==",
            "==x",
            "name=li=x",
            "name=foo=x",
            "name=x",
            "name===x",
            "name==a=b",
            "(name==x",
            "name==x)",
            "name==x;",
            ";name==x",
            "name==x,,b==1",
            "name!x",
            "name~=x",
        ] {
            assert!(syntax(q), "{q:?} should be a syntax error: {:?}", parse(q));
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let q = format!("{}a==1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(syntax(&q));
        let ok = format!("{}a==1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert_eq!(parse(&ok), Ok(cmp("a", Op::Eq, &["1"])));
    }

    fn arb_value() -> impl Strategy<Value = String> {
        // Anything, including quotes, backslashes and reserved characters.
        proptest::string::string_regex("[a-zA-Z0-9 *;,()=!<>'\"\\\\.ä_-]{0,8}").unwrap()
    }

    fn arb_cmp() -> impl Strategy<Value = Node> {
        let op = prop_oneof![
            Just(Op::Eq),
            Just(Op::Ne),
            Just(Op::Lt),
            Just(Op::Le),
            Just(Op::Gt),
            Just(Op::Ge),
            Just(Op::In),
            Just(Op::Out),
            Just(Op::Is),
            Just(Op::Not),
        ];
        (
            "[a-z][a-zA-Z0-9.]{0,10}",
            op,
            prop::collection::vec(arb_value(), 1..4),
        )
            .prop_map(|(field, op, mut values)| {
                if !op.is_multi() {
                    values.truncate(1);
                }
                Node::Cmp { field, op, values }
            })
    }

    fn arb_node() -> impl Strategy<Value = Node> {
        arb_cmp().prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 2..4).prop_map(Node::And),
                prop::collection::vec(inner, 2..4).prop_map(Node::Or),
            ]
        })
    }

    proptest! {
        #[test]
        fn printed_queries_parse_back_to_the_same_tree(node in arb_node()) {
            let text = node.to_string();
            prop_assert_eq!(parse(&text), Ok(node), "{}", text);
        }

        #[test]
        fn arbitrary_input_never_panics(s in "\\PC{0,64}") {
            let _ = parse(&s);
        }

        #[test]
        fn query_shaped_noise_never_panics(s in "[a-z=!<>();,'\"\\\\ *]{0,40}") {
            let _ = parse(&s);
        }
    }
}
