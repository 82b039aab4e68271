//! The customer filter language: what segments, list queries and plugins' `query-customers` use.
//!
//! ```text
//! branch = "bkk-01" and tag = "vip" and not email ~ "@example.com"
//! purchases.last < 2024-06-01 or score.rfm.monetary >= 4
//! attributes.tier in ("gold", "platinum") and tickets.open > 0
//! ```
//!
//! Parsed by hand into a typed AST (the grammar is ten lines; a parser generator would cost more
//! than it saves and give worse messages), checked against field types, then compiled to a SQL
//! condition whose every user value is a bound parameter. Errors point at the offending token.

use std::fmt;

use rusqlite::types::Value;

/// A parsed, type-checked filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    All,
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Compare { field: Field, op: Op, value: Literal },
    In { field: Field, values: Vec<Literal> },
    IsNull { field: Field, negated: bool },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Id,
    Name,
    Email,
    Phone,
    Branch,
    Distributor,
    CreatedAt,
    UpdatedAt,
    Tag,
    /// `attributes.<key>`: compared as JSON text, number or boolean, as the value given.
    Attribute(String),
    /// `score.<plugin>.<name>`: a number.
    Score {
        plugin: String,
        name: String,
    },
    /// `label.<plugin>.<name>`: a scorer's text label.
    Label {
        plugin: String,
        name: String,
    },
    Aggregate(Aggregate),
}

/// Interaction aggregates per customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    PurchaseCount,
    /// Sum of purchase amounts in minor units (currencies are not converted).
    PurchaseTotalMinor,
    FirstPurchase,
    LastPurchase,
    TicketCount,
    OpenTickets,
    /// Open tickets past their due time (the branch's service standard), as of the query.
    OverdueTickets,
    InteractionCount,
    LastInteraction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Text,
    Number,
    Time,
    /// JSON: text, number or boolean, as the value is written.
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// Contains, case-insensitively (text only).
    Contains,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Text(String),
    Number(f64),
    /// Unix milliseconds; written `2024-06-01` or `2024-06-01T12:00:00Z`.
    Time(i64),
    Bool(bool),
}

/// A filter that does not parse or does not type-check, with where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at character {position} of the filter)")]
pub struct FilterError {
    pub message: String,
    /// 0-based character offset of the offending token.
    pub position: usize,
}

const FIELDS: &str = "id, name, email, phone, branch, distributor, created_at, updated_at, tag, attributes.<key>, \
     score.<plugin>.<score>, label.<plugin>.<label>, purchases.count, purchases.total_minor, purchases.first, \
     purchases.last, tickets.count, tickets.open, tickets.overdue, interactions.count, interactions.last";

impl Field {
    fn parse(name: &str) -> Option<Field> {
        Some(match name {
            "id" => Field::Id,
            "name" => Field::Name,
            "email" => Field::Email,
            "phone" => Field::Phone,
            "branch" => Field::Branch,
            "distributor" => Field::Distributor,
            "created_at" => Field::CreatedAt,
            "updated_at" => Field::UpdatedAt,
            "tag" | "tags" => Field::Tag,
            "purchases.count" => Field::Aggregate(Aggregate::PurchaseCount),
            "purchases.total_minor" => Field::Aggregate(Aggregate::PurchaseTotalMinor),
            "purchases.first" => Field::Aggregate(Aggregate::FirstPurchase),
            "purchases.last" => Field::Aggregate(Aggregate::LastPurchase),
            "tickets.count" => Field::Aggregate(Aggregate::TicketCount),
            "tickets.open" => Field::Aggregate(Aggregate::OpenTickets),
            "tickets.overdue" => Field::Aggregate(Aggregate::OverdueTickets),
            "interactions.count" => Field::Aggregate(Aggregate::InteractionCount),
            "interactions.last" => Field::Aggregate(Aggregate::LastInteraction),
            _ => {
                let mut parts = name.splitn(3, '.');
                match (parts.next()?, parts.next(), parts.next()) {
                    ("attributes", Some(key), None) if !key.is_empty() => Field::Attribute(key.to_owned()),
                    ("attributes", Some(key), Some(rest)) => Field::Attribute(format!("{key}.{rest}")),
                    ("score", Some(plugin), Some(name)) if !plugin.is_empty() && !name.is_empty() => {
                        Field::Score { plugin: plugin.to_owned(), name: name.to_owned() }
                    }
                    ("label", Some(plugin), Some(name)) if !plugin.is_empty() && !name.is_empty() => {
                        Field::Label { plugin: plugin.to_owned(), name: name.to_owned() }
                    }
                    _ => return None,
                }
            }
        })
    }

    pub fn ty(&self) -> Type {
        match self {
            Field::Name | Field::Email | Field::Phone | Field::Branch | Field::Tag | Field::Label { .. } => Type::Text,
            Field::Id | Field::Distributor | Field::Score { .. } => Type::Number,
            Field::CreatedAt | Field::UpdatedAt => Type::Time,
            Field::Attribute(_) => Type::Any,
            Field::Aggregate(a) => match a {
                Aggregate::FirstPurchase | Aggregate::LastPurchase | Aggregate::LastInteraction => Type::Time,
                _ => Type::Number,
            },
        }
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Type::Text => "text: compare it with a quoted string",
            Type::Number => "a number",
            Type::Time => "a time: compare it with a date like 2024-06-01",
            Type::Any => "a JSON value",
        })
    }
}

/// A field named outside a filter (an aggregation's field or a group-by).
///
/// # Errors
/// [`UnknownField`]: no field has this name.
pub fn field(name: &str) -> Result<Field, UnknownField> {
    Field::parse(name.trim()).ok_or_else(|| UnknownField(name.to_owned()))
}

/// A name that is no field of the filter language; its message lists the fields.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown field `{0}`; the fields are {FIELDS}")]
pub struct UnknownField(pub String);

/// A field's SQL expression over the customer row `c`, its values bound in `params` (tags are
/// not a column: join `customer_tags t` and use `t.tag`).
pub fn field_sql(field: &Field, params: &mut Vec<Value>) -> String {
    match field {
        Field::Tag => "t.tag".into(),
        other => column(other, params),
    }
}

// ----- lexing -----

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(f64),
    Date(i64),
    Op(Op),
    LParen,
    RParen,
    Comma,
}

fn lex(input: &str) -> Result<Vec<(Tok, usize)>, FilterError> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |message: String, position| FilterError { message, position };
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        match c {
            _ if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => (out.push((Tok::LParen, start)), i += 1).1,
            ')' => (out.push((Tok::RParen, start)), i += 1).1,
            ',' => (out.push((Tok::Comma, start)), i += 1).1,
            '~' => (out.push((Tok::Op(Op::Contains), start)), i += 1).1,
            '=' => {
                i += if chars.get(i + 1) == Some(&'=') { 2 } else { 1 };
                out.push((Tok::Op(Op::Eq), start));
            }
            '!' if chars.get(i + 1) == Some(&'=') => (out.push((Tok::Op(Op::Ne), start)), i += 2).1,
            '<' | '>' => {
                let eq = chars.get(i + 1) == Some(&'=');
                let op = match (c, eq) {
                    ('<', false) => Op::Lt,
                    ('<', true) => Op::Le,
                    ('>', false) => Op::Gt,
                    _ => Op::Ge,
                };
                out.push((Tok::Op(op), start));
                i += if eq { 2 } else { 1 };
            }
            '"' | '\'' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(err("this string is never closed".into(), start)),
                        Some('\\') if matches!(chars.get(i + 1), Some('"' | '\'' | '\\')) => {
                            s.push(chars[i + 1]);
                            i += 2;
                        }
                        Some(&ch) if ch == quote => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                out.push((Tok::Str(s), start));
            }
            _ if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) => {
                let mut j = i + 1;
                while j < chars.len() && (chars[j].is_ascii_alphanumeric() || matches!(chars[j], '.' | '-' | ':' | '+'))
                {
                    j += 1;
                }
                let text: String = chars[i..j].iter().collect();
                let tok = if let Ok(n) = text.parse::<f64>() {
                    Tok::Num(n)
                } else if let Some(t) = parse_time(&text) {
                    Tok::Date(t)
                } else {
                    return Err(err(format!("`{text}` is neither a number nor a date (2024-06-01)"), start));
                };
                out.push((tok, start));
                i = j;
            }
            _ if c.is_alphabetic() || c == '_' => {
                let mut j = i + 1;
                while j < chars.len() && (chars[j].is_alphanumeric() || matches!(chars[j], '_' | '.' | '-')) {
                    j += 1;
                }
                out.push((Tok::Word(chars[i..j].iter().collect()), start));
                i = j;
            }
            _ => return Err(err(format!("unexpected character `{c}`"), start)),
        }
    }
    Ok(out)
}

/// `2024-06-01` (midnight UTC) or an RFC 3339 time, as unix milliseconds.
pub fn parse_time(text: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(text, &Rfc3339) {
        return Some((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let date = time::Date::parse(text, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
    Some(date.midnight().assume_utc().unix_timestamp() * 1000)
}

// ----- parsing -----

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    /// Where the input ends, for errors about something missing at the end.
    end: usize,
    depth: usize,
    conditions: usize,
}

/// The longest filter accepted, in characters.
pub const MAX_LENGTH: usize = 4096;
/// The most conditions one filter may hold.
pub const MAX_CONDITIONS: usize = 64;
/// The deepest nesting of parentheses and `not`s.
pub const MAX_DEPTH: usize = 32;

/// Parse a filter; the empty filter matches every customer.
///
/// Size and nesting are bounded (the parser and the SQL it produces recurse, and plugins can send
/// filters): a filter past [`MAX_LENGTH`], [`MAX_CONDITIONS`] or [`MAX_DEPTH`] is an error.
/// `text` as a string literal of the filter language (the escapes `parse` reads back).
pub fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A caller's filter narrowed to a row-level scope (an agent's branch or distributor clause).
/// The caller's text is parsed on its own first: concatenated unchecked, `a) or (b` would turn
/// `(…) and scope` into `(a) or (b) and scope` and lift the scope from `a`. A filter that parses
/// alone has balanced parentheses and quotes, so once wrapped in parentheses it cannot reach
/// outside them. The error's position is in the text the caller wrote.
///
/// # Errors
/// `asked` does not parse on its own (see [`parse`]).
pub fn within(asked: &str, scope: Option<&str>) -> Result<String, FilterError> {
    parse(asked)?;
    Ok(match (asked.trim(), scope) {
        (asked, None) => asked.to_owned(),
        ("", Some(scope)) => scope.to_owned(),
        (asked, Some(scope)) => format!("({asked}) and {scope}"),
    })
}

/// # Errors
/// Where and why the text fails: past [`MAX_LENGTH`], [`MAX_CONDITIONS`] or [`MAX_DEPTH`], a syntax
/// error, an unknown field, or a value of the wrong type for its field.
pub fn parse(input: &str) -> Result<Filter, FilterError> {
    let length = input.chars().count();
    if length > MAX_LENGTH {
        return Err(FilterError {
            message: format!("a filter may be at most {MAX_LENGTH} characters"),
            position: MAX_LENGTH,
        });
    }
    let toks = lex(input)?;
    if toks.is_empty() {
        return Ok(Filter::All);
    }
    let mut p = Parser { toks, pos: 0, end: length, depth: 0, conditions: 0 };
    let filter = p.or()?;
    if let Some((tok, at)) = p.toks.get(p.pos) {
        return Err(FilterError {
            message: format!("expected `and`, `or` or the end, found {}", describe(tok)),
            position: *at,
        });
    }
    Ok(filter)
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Word(w) => format!("`{w}`"),
        Tok::Str(s) => format!("the string {s:?}"),
        Tok::Num(n) => format!("the number {n}"),
        Tok::Date(_) => "a date".into(),
        Tok::Op(_) => "an operator".into(),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::Comma => "`,`".into(),
    }
}

impl Parser {
    fn peek_word(&self, word: &str) -> bool {
        matches!(self.toks.get(self.pos), Some((Tok::Word(w), _)) if w.eq_ignore_ascii_case(word))
    }

    fn here(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |(_, at)| *at)
    }

    fn fail<T>(&self, message: impl Into<String>) -> Result<T, FilterError> {
        Err(FilterError { message: message.into(), position: self.here() })
    }

    fn or(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.and()?;
        while self.peek_word("or") {
            self.pos += 1;
            left = Filter::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.not()?;
        while self.peek_word("and") {
            self.pos += 1;
            left = Filter::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Filter, FilterError> {
        if self.peek_word("not") {
            self.pos += 1;
            let inner = self.nested(Self::not)?;
            return Ok(Filter::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn nested(&mut self, f: fn(&mut Self) -> Result<Filter, FilterError>) -> Result<Filter, FilterError> {
        if self.depth >= MAX_DEPTH {
            return self.fail(format!("a filter may nest parentheses and `not` at most {MAX_DEPTH} deep"));
        }
        self.depth += 1;
        let inner = f(self);
        self.depth -= 1;
        inner
    }

    fn primary(&mut self) -> Result<Filter, FilterError> {
        match self.toks.get(self.pos).cloned() {
            Some((Tok::LParen, _)) => {
                self.pos += 1;
                let inner = self.nested(Self::or)?;
                match self.toks.get(self.pos) {
                    Some((Tok::RParen, _)) => {
                        self.pos += 1;
                        Ok(inner)
                    }
                    _ => self.fail("expected `)` to close the parenthesis"),
                }
            }
            Some((Tok::Word(name), at)) => {
                self.conditions += 1;
                if self.conditions > MAX_CONDITIONS {
                    return self.fail(format!("a filter may hold at most {MAX_CONDITIONS} conditions"));
                }
                let field = Field::parse(&name.to_ascii_lowercase()).ok_or_else(|| FilterError {
                    message: format!("unknown field `{name}`; fields are {FIELDS}"),
                    position: at,
                })?;
                self.pos += 1;
                self.condition(field)
            }
            Some((tok, _)) => self.fail(format!("expected a field name, found {}", describe(&tok))),
            None => self.fail("the filter ends where a condition was expected"),
        }
    }

    fn condition(&mut self, field: Field) -> Result<Filter, FilterError> {
        if self.peek_word("is") {
            self.pos += 1;
            let negated = self.peek_word("not");
            if negated {
                self.pos += 1;
            }
            if !self.peek_word("null") {
                return self.fail("expected `null` after `is`");
            }
            self.pos += 1;
            return Ok(Filter::IsNull { field, negated });
        }
        if self.peek_word("in") {
            self.pos += 1;
            if !matches!(self.toks.get(self.pos), Some((Tok::LParen, _))) {
                return self.fail("expected `(` after `in`");
            }
            self.pos += 1;
            let mut values = vec![self.value(&field, Op::Eq)?];
            while matches!(self.toks.get(self.pos), Some((Tok::Comma, _))) {
                self.pos += 1;
                values.push(self.value(&field, Op::Eq)?);
            }
            if !matches!(self.toks.get(self.pos), Some((Tok::RParen, _))) {
                return self.fail("expected `,` or `)` in the list");
            }
            self.pos += 1;
            return Ok(Filter::In { field, values });
        }
        let op = match self.toks.get(self.pos) {
            Some((Tok::Op(op), _)) => *op,
            _ => return self.fail("expected an operator: =, !=, <, <=, >, >=, ~ (contains), in (...), is null"),
        };
        if op == Op::Contains && !matches!(field.ty(), Type::Text | Type::Any) {
            return self.fail(format!("`~` (contains) works on text; this field is {}", field.ty()));
        }
        if field == Field::Tag && !matches!(op, Op::Eq | Op::Ne) {
            return self.fail("a tag is either there or not: use `tag = \"vip\"` or `tag != \"vip\"`");
        }
        self.pos += 1;
        let value = self.value(&field, op)?;
        Ok(Filter::Compare { field, op, value })
    }

    fn value(&mut self, field: &Field, op: Op) -> Result<Literal, FilterError> {
        let Some((tok, at)) = self.toks.get(self.pos).cloned() else {
            return self.fail("the filter ends where a value was expected");
        };
        let mismatch = || FilterError { message: format!("this field is {}", field.ty()), position: at };
        let literal = match (field.ty(), tok) {
            (Type::Text, Tok::Str(s)) => Literal::Text(s),
            (Type::Number, Tok::Num(n)) => Literal::Number(n),
            (Type::Time, Tok::Date(t)) => Literal::Time(t),
            (Type::Time, Tok::Str(s)) => Literal::Time(parse_time(&s).ok_or_else(mismatch)?),
            (Type::Time, Tok::Num(n)) if n.fract() == 0.0 && (1000.0..10000.0).contains(&n) => {
                return Err(FilterError { message: "write a full date: 2024-06-01".into(), position: at });
            }
            (Type::Any, Tok::Str(s)) => Literal::Text(s),
            (Type::Any, Tok::Num(n)) => Literal::Number(n),
            (Type::Any, Tok::Word(w)) if w == "true" || w == "false" => Literal::Bool(w == "true"),
            _ => return Err(mismatch()),
        };
        if matches!(literal, Literal::Bool(_)) && !matches!(op, Op::Eq | Op::Ne) {
            return Err(FilterError { message: "true and false compare with = or != only".into(), position: at });
        }
        self.pos += 1;
        Ok(literal)
    }
}

// ----- SQL -----

/// The SQL condition over customers aliased `c`, with its parameters in order. Nothing from the
/// user is pasted into the text: fields map to fixed SQL, values and names are parameters.
pub fn to_sql(filter: &Filter, params: &mut Vec<Value>) -> String {
    match filter {
        Filter::All => "1".into(),
        Filter::And(a, b) => format!("({} AND {})", to_sql(a, params), to_sql(b, params)),
        Filter::Or(a, b) => format!("({} OR {})", to_sql(a, params), to_sql(b, params)),
        Filter::Not(a) => format!("(NOT {})", to_sql(a, params)),
        Filter::IsNull { field: Field::Tag, negated } => {
            // "no tags at all" / "some tag".
            let exists = "EXISTS (SELECT 1 FROM customer_tags t WHERE t.customer_id = c.id)";
            if *negated { exists.into() } else { format!("(NOT {exists})") }
        }
        Filter::IsNull { field, negated } => {
            let column = column(field, params);
            format!("({column} IS {}NULL)", if *negated { "NOT " } else { "" })
        }
        Filter::In { field: Field::Tag, values } => {
            let list = placeholders(values, params);
            format!("EXISTS (SELECT 1 FROM customer_tags t WHERE t.customer_id = c.id AND t.tag IN ({list}))")
        }
        Filter::In { field, values } => {
            let column = column(field, params);
            let list = placeholders(values, params);
            format!("(coalesce({column} IN ({list}), 0))")
        }
        Filter::Compare { field: Field::Tag, op, value } => {
            params.push(literal(value));
            let exists = "EXISTS (SELECT 1 FROM customer_tags t WHERE t.customer_id = c.id AND t.tag = ?)";
            if *op == Op::Ne { format!("(NOT {exists})") } else { exists.into() }
        }
        Filter::Compare { field, op: Op::Contains, value } => {
            let column = column(field, params);
            params.push(literal(value));
            // NULL-safe: a missing value does not contain anything, so `not email ~ "x"` keeps
            // customers without an email.
            format!("(coalesce(instr({FOLD}({column}), {FOLD}(?)) > 0, 0))")
        }
        Filter::Compare { field, op, value } => {
            let column = column(field, params);
            params.push(literal(value));
            // Two-valued logic throughout: a missing value is not equal, not less and not greater,
            // so `not (name = "x")` and `name != "x"` select the same customers.
            match op {
                Op::Eq => format!("({column} IS ?)"),
                Op::Ne => format!("({column} IS NOT ?)"),
                Op::Lt => format!("(coalesce({column} < ?, 0))"),
                Op::Le => format!("(coalesce({column} <= ?, 0))"),
                Op::Gt => format!("(coalesce({column} > ?, 0))"),
                Op::Ge => format!("(coalesce({column} >= ?, 0))"),
                Op::Contains => unreachable!("handled above"),
            }
        }
    }
}

/// The SQL function [`fold`] is registered as on every connection of the store.
pub const FOLD: &str = "rapport_fold";

/// Text as `~` (contains) compares it: lower-cased by Unicode's rules (SQLite's `lower` knows
/// only ASCII), and with Thai written the way people search it. Thai has no spaces between words,
/// so contains is already a substring match; what breaks it is the marks above the consonants:
/// tone marks are often left out when typing, and typed before or after an upper vowel in either
/// order (กี่ is ก ี ่ or ก ่ ี — Unicode does not reorder them). Dropping tone marks, the
/// silencer (ทัณฑฆาต) and ไม้ไต่คู้ from both sides makes those spellings meet; SARA AM typed as
/// NIKHAHIT + SARA AA becomes SARA AM.
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\u{0E47}'..='\u{0E4C}' => {}
            c => out.extend(c.to_lowercase()),
        }
    }
    if out.contains('\u{0E4D}') { out.replace("\u{0E4D}\u{0E32}", "\u{0E33}") } else { out }
}

/// Registers [`fold`] as the SQL function [`FOLD`]; numbers are folded as their text (as
/// SQLite's `lower` does), NULL stays NULL.
///
/// # Errors
/// SQLite refused to register the function.
pub fn register_functions(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    use rusqlite::types::ValueRef;
    conn.create_scalar_function(FOLD, 1, FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC, |ctx| {
        Ok(match ctx.get_raw(0) {
            ValueRef::Null => None,
            ValueRef::Integer(i) => Some(i.to_string()),
            ValueRef::Real(r) => Some(r.to_string()),
            ValueRef::Text(t) | ValueRef::Blob(t) => Some(fold(&String::from_utf8_lossy(t))),
        })
    })
}

fn placeholders(values: &[Literal], params: &mut Vec<Value>) -> String {
    params.extend(values.iter().map(literal));
    vec!["?"; values.len()].join(", ")
}

fn literal(l: &Literal) -> Value {
    match l {
        Literal::Text(s) => Value::Text(s.clone()),
        Literal::Number(n) => Value::Real(*n),
        Literal::Time(t) => Value::Integer(*t),
        Literal::Bool(b) => Value::Integer(*b as i64),
    }
}

fn column(field: &Field, params: &mut Vec<Value>) -> String {
    let purchases = "i.kind = 'purchase'";
    let aggregate = |expr: &str, condition: &str| {
        format!("(SELECT {expr} FROM interactions i WHERE i.customer_id = c.id AND {condition})")
    };
    match field {
        Field::Id => "c.id".into(),
        Field::Name => "c.name".into(),
        Field::Email => "c.email".into(),
        Field::Phone => "c.phone".into(),
        Field::Branch => "c.branch".into(),
        Field::Distributor => "c.distributor_id".into(),
        Field::CreatedAt => "c.created_at".into(),
        Field::UpdatedAt => "c.updated_at".into(),
        Field::Tag => unreachable!("tags are compiled as EXISTS"),
        Field::Attribute(key) => {
            params.push(Value::Text(format!("$.\"{}\"", key.replace('"', "\\\""))));
            "json_extract(c.attributes, ?)".into()
        }
        Field::Score { plugin, name } | Field::Label { plugin, name } => {
            params.push(Value::Text(plugin.clone()));
            params.push(Value::Text(name.clone()));
            let what = if matches!(field, Field::Score { .. }) { "value" } else { "label" };
            format!("(SELECT s.{what} FROM scores s WHERE s.customer_id = c.id AND s.plugin = ? AND s.name = ?)")
        }
        Field::Aggregate(a) => match a {
            Aggregate::PurchaseCount => aggregate("count(*)", purchases),
            Aggregate::PurchaseTotalMinor => aggregate("coalesce(sum(i.amount_minor), 0)", purchases),
            Aggregate::FirstPurchase => aggregate("min(i.occurred_at)", purchases),
            Aggregate::LastPurchase => aggregate("max(i.occurred_at)", purchases),
            Aggregate::TicketCount => aggregate("count(*)", "i.kind = 'ticket'"),
            Aggregate::OpenTickets => {
                aggregate("count(*)", "i.kind = 'ticket' AND coalesce(i.ticket_status, 'open') != 'closed'")
            }
            Aggregate::OverdueTickets => aggregate(
                "count(*)",
                "i.kind = 'ticket' AND coalesce(i.ticket_status, 'open') != 'closed' AND i.due_at < \
                 CAST(strftime('%s', 'now') AS INTEGER) * 1000",
            ),
            Aggregate::InteractionCount => aggregate("count(*)", "1"),
            Aggregate::LastInteraction => aggregate("max(i.occurred_at)", "1"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thai_text_folds_away_tone_marks_and_their_order() {
        // Without tone marks, with them in either order around an upper vowel, SARA AM in two parts.
        assert_eq!(fold("แก้ว"), fold("แกว"));
        assert_eq!(fold("ก\u{0E35}\u{0E48}"), fold("ก\u{0E48}\u{0E35}"));
        assert_eq!(fold("ทองคำ"), fold("ทองค\u{0E4D}\u{0E32}"));
        assert_eq!(fold("น\u{0E49}ำ"), fold("น\u{0E4D}\u{0E49}\u{0E32}"));
        assert_eq!(fold("สมศักดิ์"), "สมศักดิ");
        assert_eq!(fold("ÉCOLE Somchai"), "école somchai");
    }

    #[test]
    fn a_quoted_string_reads_back_as_itself() {
        for text in [r#"BKK "north""#, r"back\slash", "it's", r#"\""#, ""] {
            let f = parse(&format!("branch = {}", quote(text))).unwrap_or_else(|e| panic!("{text}: {e}"));
            let mut params = Vec::new();
            to_sql(&f, &mut params);
            assert_eq!(params, [Value::Text(text.to_owned())], "{text}");
        }
    }

    #[test]
    fn parses_precedence_and_types() {
        let f = parse(r#"branch = "bkk" and tag = "vip" or not purchases.count >= 3"#).unwrap();
        let Filter::Or(left, right) = f else { panic!("or binds loosest: {f:?}") };
        assert!(matches!(*left, Filter::And(..)));
        assert!(matches!(*right, Filter::Not(..)));
        assert_eq!(
            parse("purchases.last < 2024-06-01").unwrap(),
            Filter::Compare {
                field: Field::Aggregate(Aggregate::LastPurchase),
                op: Op::Lt,
                value: Literal::Time(1_717_200_000_000)
            }
        );
        assert_eq!(parse("  ").unwrap(), Filter::All);
    }

    #[test]
    fn errors_point_at_the_bad_token() {
        let e = parse(r#"branch = "bkk" and emial = "x""#).unwrap_err();
        assert_eq!(e.position, 19);
        assert!(e.message.starts_with("unknown field `emial`; fields are id, name"), "{e}");
        let e = parse(r#"purchases.last < "yesterday""#).unwrap_err();
        assert_eq!(
            (e.position, e.message.as_str()),
            (17, "this field is a time: compare it with a date like 2024-06-01")
        );
        let e = parse("name = 3").unwrap_err();
        assert_eq!(e.position, 7);
        let e = parse(r#"name = "unterminated"#).unwrap_err();
        assert_eq!((e.position, e.message.as_str()), (7, "this string is never closed"));
        let e = parse(r#"(name = "a""#).unwrap_err();
        assert!(e.message.contains("expected `)`"));
        let e = parse(r#"name = "a" "b""#).unwrap_err();
        assert_eq!(e.position, 11);
        assert!(parse("purchases.count ~ 3").unwrap_err().message.contains("works on text"));
        assert!(parse(r#"tag > "vip""#).unwrap_err().message.contains("either there or not"));
    }

    #[test]
    fn size_and_nesting_are_bounded() {
        let deep = format!("{}name = \"a\"{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(parse(&deep).unwrap_err().message.contains("at most 4096 characters"));
        let deep = format!("{}name = \"a\"{}", "(".repeat(100), ")".repeat(100));
        assert!(parse(&deep).unwrap_err().message.contains("at most 32 deep"));
        let nots = format!("{}name = \"a\"", "not ".repeat(100));
        assert!(parse(&nots).unwrap_err().message.contains("at most 32 deep"));
        let long = vec!["id = 1"; 100].join(" or ");
        assert!(parse(&long).unwrap_err().message.contains("at most 64 conditions"));
        assert!(parse(&vec!["id = 1"; 64].join(" or ")).is_ok());
    }

    #[test]
    fn every_field_compiles_with_every_form() {
        // `is null` on tags once reached an unreachable!() in the compiler.
        for field in ["tag", "name", "attributes.x", "score.p.s", "label.p.l", "purchases.last", "tickets.open"] {
            for form in ["is null", "is not null"] {
                let mut params = Vec::new();
                to_sql(&parse(&format!("{field} {form}")).unwrap(), &mut params);
            }
        }
    }

    #[test]
    fn user_values_never_reach_the_sql_text() {
        let evil = r#"name = "x'); DROP TABLE customers; --" and attributes.tier-x = "1" and score.evil-plugin.n = 1"#;
        let mut params = Vec::new();
        let sql = to_sql(&parse(evil).unwrap(), &mut params);
        assert!(!sql.contains("DROP") && !sql.contains("evil") && !sql.contains("tier"), "{sql}");
        assert!(params.contains(&Value::Text("x'); DROP TABLE customers; --".into())));
        assert!(params.contains(&Value::Text("$.\"tier-x\"".into())), "{params:?}");
        assert!(params.contains(&Value::Text("evil-plugin".into())), "{params:?}");
        // Quotes cannot enter a field name: it ends at the quote, and the rest does not parse.
        assert!(parse(r#"attributes.a"b = "1""#).is_err());
    }
}
