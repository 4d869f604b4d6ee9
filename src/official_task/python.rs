//! The bits of CPython that the official When2Call prompts depend on,
//! reproduced exactly: `json.loads` (into [`PyValue`]), `json.dumps` with its
//! defaults and with `ensure_ascii=False`, `str()`/`repr()` of the values
//! `json.loads` returns, and `str.strip()`.
//!
//! `json.loads` is emulated here rather than done with serde_json because the
//! output must match Python's for inputs serde_json reads differently: integers
//! of any size stay exact (serde_json turns those beyond 64 bits into floats),
//! `NaN`/`Infinity`/`-Infinity` literals are accepted as Python accepts them,
//! `-0` is the integer 0, and a repeated key keeps its first position with its
//! last value. What cannot be reproduced (a lone surrogate, which a Rust string
//! cannot hold; nesting deeper than [`MAX_DEPTH`]) is an error, never a guess.
//!
//! `repr()` of a string escapes the characters Python deems non-printable,
//! which depends on Python's Unicode database: this module follows Unicode
//! [`PYTHON_UNICODE_VERSION`] (Python 3.11's). Python versions with another
//! database differ only for characters assigned between the two versions.

use crate::fingerprint::python_float_repr;
use indexmap::IndexMap;
use std::fmt::Write as _;
use unicode_general_category::{get_general_category, GeneralCategory};

/// The Unicode version of the Python `unicodedata` whose `str.isprintable()`
/// [`py_isprintable`] reproduces (Python 3.11).
pub const PYTHON_UNICODE_VERSION: &str = "14.0.0";

/// Python's default limit on the digits of an int read from or written as
/// text (`sys.get_int_max_str_digits()`); longer ints make `json.loads` raise.
pub const PYTHON_INT_MAX_STR_DIGITS: usize = 4300;

/// Deepest nesting of lists and objects that is reproduced (Python's own
/// limit depends on its recursion limit and stack; this one is far below it).
pub const MAX_DEPTH: usize = 200;

/// A value as Python's `json.loads` returns it.
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    /// `None` (JSON `null`).
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An `int` of any size, as its decimal text (`-` then digits, no leading zeros).
    Int(String),
    /// A `float`, possibly non-finite (`NaN`, `Infinity`, or an overflowing literal).
    Float(f64),
    /// A `str`.
    Str(String),
    /// A `list`.
    List(Vec<PyValue>),
    /// A `dict`, in insertion order.
    Dict(IndexMap<String, PyValue>),
}

impl PyValue {
    /// Python's type name of the value, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            PyValue::None => "NoneType",
            PyValue::Bool(_) => "bool",
            PyValue::Int(_) => "int",
            PyValue::Float(_) => "float",
            PyValue::Str(_) => "str",
            PyValue::List(_) => "list",
            PyValue::Dict(_) => "dict",
        }
    }
}

/// Why a text could not be read the way Python's `json.loads` reads it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PyJsonError {
    /// Python raises too (`json.JSONDecodeError` or `ValueError`).
    #[error("{message} at character {position} (Python's json.loads raises too)")]
    Invalid {
        /// What is wrong, in the words of Python's message where it has one.
        message: String,
        /// 0-based character index, as Python reports it.
        position: usize,
    },
    /// Python reads it, but its result cannot be reproduced exactly.
    #[error("{reason} at character {position} (Python reads it; w2c cannot reproduce its output exactly)")]
    NotReproducible {
        /// What cannot be reproduced.
        reason: String,
        /// 0-based character index.
        position: usize,
    },
}

/// Parses `text` as Python's `json.loads(text)` does (default arguments).
pub fn json_loads(text: &str) -> Result<PyValue, PyJsonError> {
    let mut p = Parser {
        chars: text.chars().collect(),
        pos: 0,
    };
    p.skip_ws();
    let v = p.value(0)?;
    p.skip_ws();
    if p.pos != p.chars.len() {
        return Err(p.invalid("Extra data"));
    }
    Ok(v)
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn invalid(&self, message: &str) -> PyJsonError {
        PyJsonError::Invalid {
            message: message.to_string(),
            position: self.pos,
        }
    }

    fn starts_with(&self, word: &str) -> bool {
        let w: Vec<char> = word.chars().collect();
        self.chars.get(self.pos..self.pos + w.len()) == Some(&w[..])
    }

    /// Python's JSON whitespace is exactly space, tab, LF and CR.
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\n' | '\r')) {
            self.pos += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<PyValue, PyJsonError> {
        match self.peek() {
            Some('"') => {
                self.pos += 1;
                self.string().map(PyValue::Str)
            }
            Some('{') => self.object(depth + 1),
            Some('[') => self.array(depth + 1),
            Some('n') if self.starts_with("null") => self.word(4, PyValue::None),
            Some('t') if self.starts_with("true") => self.word(4, PyValue::Bool(true)),
            Some('f') if self.starts_with("false") => self.word(5, PyValue::Bool(false)),
            Some('N') if self.starts_with("NaN") => self.word(3, PyValue::Float(f64::NAN)),
            Some('I') if self.starts_with("Infinity") => {
                self.word(8, PyValue::Float(f64::INFINITY))
            }
            Some('-') if self.starts_with("-Infinity") => {
                self.word(9, PyValue::Float(f64::NEG_INFINITY))
            }
            Some('-' | '0'..='9') => self.number(),
            _ => Err(self.invalid("Expecting value")),
        }
    }

    fn word(&mut self, len: usize, v: PyValue) -> Result<PyValue, PyJsonError> {
        self.pos += len;
        Ok(v)
    }

    fn enter(&self, depth: usize) -> Result<(), PyJsonError> {
        if depth > MAX_DEPTH {
            return Err(PyJsonError::NotReproducible {
                reason: format!("lists/objects nested deeper than {MAX_DEPTH} levels"),
                position: self.pos,
            });
        }
        Ok(())
    }

    fn object(&mut self, depth: usize) -> Result<PyValue, PyJsonError> {
        self.enter(depth)?;
        self.pos += 1; // '{'
        let mut map = IndexMap::new();
        self.skip_ws();
        if self.peek() == Some('}') {
            self.pos += 1;
            return Ok(PyValue::Dict(map));
        }
        loop {
            if self.peek() != Some('"') {
                return Err(self.invalid("Expecting property name enclosed in double quotes"));
            }
            self.pos += 1;
            let key = self.string()?;
            self.skip_ws();
            if self.peek() != Some(':') {
                return Err(self.invalid("Expecting ':' delimiter"));
            }
            self.pos += 1;
            self.skip_ws();
            let v = self.value(depth)?;
            // Python builds the dict pair by pair: a repeated key keeps its
            // first position and takes the last value, as IndexMap::insert does.
            map.insert(key, v);
            self.skip_ws();
            match self.peek() {
                Some(',') => {
                    self.pos += 1;
                    self.skip_ws();
                }
                Some('}') => {
                    self.pos += 1;
                    return Ok(PyValue::Dict(map));
                }
                _ => return Err(self.invalid("Expecting ',' delimiter")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<PyValue, PyJsonError> {
        self.enter(depth)?;
        self.pos += 1; // '['
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(']') {
            self.pos += 1;
            return Ok(PyValue::List(items));
        }
        loop {
            items.push(self.value(depth)?);
            self.skip_ws();
            match self.peek() {
                Some(',') => {
                    self.pos += 1;
                    self.skip_ws();
                }
                Some(']') => {
                    self.pos += 1;
                    return Ok(PyValue::List(items));
                }
                _ => return Err(self.invalid("Expecting ',' delimiter")),
            }
        }
    }

    /// A number per Python's `-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?`; a
    /// dangling `.` or exponent is left unread (and then fails as extra data).
    fn number(&mut self) -> Result<PyValue, PyJsonError> {
        let start = self.pos;
        let digits_from = |p: &Parser, mut i: usize| {
            while matches!(p.chars.get(i), Some('0'..='9')) {
                i += 1;
            }
            i
        };
        let mut i = start;
        if self.chars[i] == '-' {
            i += 1;
        }
        match self.chars.get(i) {
            Some('0') => i += 1,
            Some('1'..='9') => i = digits_from(self, i),
            _ => return Err(self.invalid("Expecting value")),
        }
        let mut is_float = false;
        if self.chars.get(i) == Some(&'.') && matches!(self.chars.get(i + 1), Some('0'..='9')) {
            i = digits_from(self, i + 1);
            is_float = true;
        }
        if matches!(self.chars.get(i), Some('e' | 'E')) {
            let mut j = i + 1;
            if matches!(self.chars.get(j), Some('+' | '-')) {
                j += 1;
            }
            if matches!(self.chars.get(j), Some('0'..='9')) {
                i = digits_from(self, j);
                is_float = true;
            }
        }
        let text: String = self.chars[start..i].iter().collect();
        if is_float {
            let v: f64 = text.parse().map_err(|_| PyJsonError::NotReproducible {
                reason: format!("number `{text}` could not be read as a float"),
                position: start,
            })?;
            self.pos = i;
            return Ok(PyValue::Float(v));
        }
        let (sign, digits) = match text.strip_prefix('-') {
            Some(d) => ("-", d),
            None => ("", text.as_str()),
        };
        if digits.len() > PYTHON_INT_MAX_STR_DIGITS {
            return Err(PyJsonError::Invalid {
                message: format!(
                    "integer with {} digits exceeds Python's limit of {PYTHON_INT_MAX_STR_DIGITS} (ValueError)",
                    digits.len()
                ),
                position: start,
            });
        }
        self.pos = i;
        // `-0` is the int 0.
        let sign = if digits == "0" { "" } else { sign };
        Ok(PyValue::Int(format!("{sign}{digits}")))
    }

    /// The rest of a string after its opening quote.
    fn string(&mut self) -> Result<String, PyJsonError> {
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.invalid("Unterminated string starting"));
            };
            match c {
                '"' => {
                    self.pos += 1;
                    return Ok(out);
                }
                '\\' => {
                    self.pos += 1;
                    let Some(e) = self.peek() else {
                        return Err(self.invalid("Unterminated string starting"));
                    };
                    self.pos += 1;
                    match e {
                        '"' => out.push('"'),
                        '\\' => out.push('\\'),
                        '/' => out.push('/'),
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        'n' => out.push('\n'),
                        'r' => out.push('\r'),
                        't' => out.push('\t'),
                        'u' => out.push(self.unicode_escape()?),
                        _ => {
                            self.pos -= 2;
                            return Err(self.invalid("Invalid \\escape"));
                        }
                    }
                }
                c if (c as u32) < 0x20 => return Err(self.invalid("Invalid control character")),
                c => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let s: String = self.chars.get(at..at + 4)?.iter().collect();
        if s.chars().all(|c| c.is_ascii_hexdigit()) {
            u32::from_str_radix(&s, 16).ok()
        } else {
            None
        }
    }

    /// After `\u`: one code point, joining a surrogate pair as Python does.
    fn unicode_escape(&mut self) -> Result<char, PyJsonError> {
        let esc_start = self.pos - 2;
        let Some(hi) = self.hex4(self.pos) else {
            self.pos = esc_start;
            return Err(self.invalid("Invalid \\uXXXX escape"));
        };
        self.pos += 4;
        let lone = |pos| PyJsonError::NotReproducible {
            reason: "a lone surrogate escape (a Rust string cannot hold it)".into(),
            position: pos,
        };
        match hi {
            0xd800..=0xdbff => {
                if self.chars.get(self.pos) == Some(&'\\')
                    && self.chars.get(self.pos + 1) == Some(&'u')
                {
                    if let Some(lo @ 0xdc00..=0xdfff) = self.hex4(self.pos + 2) {
                        self.pos += 6;
                        let cp = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
                        return char::from_u32(cp).ok_or_else(|| lone(esc_start));
                    }
                }
                Err(lone(esc_start))
            }
            0xdc00..=0xdfff => Err(lone(esc_start)),
            cp => char::from_u32(cp).ok_or_else(|| lone(esc_start)),
        }
    }
}

/// Python's `json.dumps(value)` with its defaults: `ensure_ascii=True`,
/// separators `", "` and `": "`, floats as `repr`, `NaN`/`Infinity` allowed.
pub fn json_dumps(value: &PyValue) -> String {
    let mut out = String::new();
    dumps_into(value, &mut out, true);
    out
}

/// Python's `json.dumps(value, ensure_ascii=False)`: as [`json_dumps`], but
/// non-ASCII characters (and DEL) are written as they are; only `"`, `\\`
/// and the control characters below U+0020 are escaped.
pub fn json_dumps_unicode(value: &PyValue) -> String {
    let mut out = String::new();
    dumps_into(value, &mut out, false);
    out
}

fn dumps_into(value: &PyValue, out: &mut String, ascii: bool) {
    match value {
        PyValue::None => out.push_str("null"),
        PyValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        PyValue::Int(digits) => out.push_str(digits),
        // `python_float_repr` spells non-finite values as json.dumps does.
        PyValue::Float(f) => out.push_str(&python_float_repr(*f)),
        PyValue::Str(s) => dumps_str(s, out, ascii),
        PyValue::List(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                dumps_into(v, out, ascii);
            }
            out.push(']');
        }
        PyValue::Dict(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                dumps_str(k, out, ascii);
                out.push_str(": ");
                dumps_into(v, out, ascii);
            }
            out.push('}');
        }
    }
}

/// A string as `json.dumps` writes it: the short escapes for
/// `\" \\ \n \r \t \b \f`, other control characters as `\u00XX`; with
/// `ascii` (`ensure_ascii=True`) everything outside printable ASCII as
/// `\uXXXX` too (lowercase hex, surrogate pairs above the BMP).
fn dumps_str(s: &str, out: &mut String, ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            c if !ascii && c >= ' ' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// Python's `str(value)`: a `str` as itself, anything else as its `repr`.
pub fn py_str(value: &PyValue) -> String {
    match value {
        PyValue::Str(s) => s.clone(),
        other => py_repr(other),
    }
}

/// Python's `repr(value)`.
pub fn py_repr(value: &PyValue) -> String {
    let mut out = String::new();
    repr_into(value, &mut out);
    out
}

fn repr_into(value: &PyValue, out: &mut String) {
    match value {
        PyValue::None => out.push_str("None"),
        PyValue::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
        PyValue::Int(digits) => out.push_str(digits),
        PyValue::Float(f) => out.push_str(&py_float_repr(*f)),
        PyValue::Str(s) => out.push_str(&py_repr_str(s)),
        PyValue::List(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                repr_into(v, out);
            }
            out.push(']');
        }
        PyValue::Dict(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&py_repr_str(k));
                out.push_str(": ");
                repr_into(v, out);
            }
            out.push('}');
        }
    }
}

/// Python's `repr(float)` (`inf`, `-inf`, `nan` for non-finite values).
pub fn py_float_repr(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        python_float_repr(v)
    }
}

/// Python's `repr(s)` of a `str`: single quotes unless the text holds `'` and
/// no `"`; `\\`, the quote, `\t \n \r` escaped; other non-printable characters
/// as `\xhh`, `\uhhhh` or `\Uhhhhhhhh`; printable non-ASCII kept as is.
pub fn py_repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if py_isprintable(c) => out.push(c),
            c => {
                let cp = c as u32;
                let _ = if cp < 0x100 {
                    write!(out, "\\x{cp:02x}")
                } else if cp < 0x10000 {
                    write!(out, "\\u{cp:04x}")
                } else {
                    write!(out, "\\U{cp:08x}")
                };
            }
        }
    }
    out.push(quote);
    out
}

/// Python's `str.isprintable()` of one character: false for the categories
/// Cc, Cf, Cs, Co, Cn, Zs, Zl, Zp, except the space (Unicode
/// [`PYTHON_UNICODE_VERSION`]).
pub fn py_isprintable(c: char) -> bool {
    use GeneralCategory::*;
    c == ' '
        || !matches!(
            get_general_category(c),
            Control
                | Format
                | Surrogate
                | PrivateUse
                | Unassigned
                | SpaceSeparator
                | LineSeparator
                | ParagraphSeparator
        )
}

/// Python's `str.isspace()` of one character: Unicode White_Space plus the
/// ASCII separators U+001C..U+001F, which Python also counts as whitespace.
pub fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `s.strip()` (no argument).
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(py_isspace)
}

/// Python's `s.rstrip()` (no argument): what lm-eval's `_encode_pair`
/// keeps of a context before moving the rest into the continuation.
pub fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(py_isspace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loads(s: &str) -> PyValue {
        json_loads(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    // Every expectation below was produced by CPython 3.11.7.

    #[test]
    fn dumps_matches_python_json_dumps() {
        // json.dumps(json.loads(s))
        let cases = [
            (
                r#"{"a":1,"b":[true,false,null],"c":{}}"#,
                r#"{"a": 1, "b": [true, false, null], "c": {}}"#,
            ),
            (
                r#"[1e-05, 1e16, 0.1, -0.0, 1.0, 1E5, 123456789012345678901234567890]"#,
                "[1e-05, 1e+16, 0.1, -0.0, 1.0, 100000.0, 123456789012345678901234567890]",
            ),
            (
                "[-0, 0, -1, 9007199254740993]",
                "[0, 0, -1, 9007199254740993]",
            ),
            (
                "[NaN, Infinity, -Infinity, 1e400, -1e400, 1e-400]",
                "[NaN, Infinity, -Infinity, Infinity, -Infinity, 0.0]",
            ),
            (
                r#""\u00e9\u6771\ud83d\ude00\u007f\u0001\n\"\\\/\b\f\t\r""#,
                r#""\u00e9\u6771\ud83d\ude00\u007f\u0001\n\"\\/\b\f\t\r""#,
            ),
            ("\"é東😀\u{7f}\"", r#""\u00e9\u6771\ud83d\ude00\u007f""#),
            (r#"{"a": 1, "b": 2, "a": 3}"#, r#"{"a": 3, "b": 2}"#),
            (" \t\r\n[ ] \n", "[]"),
        ];
        for (input, want) in cases {
            assert_eq!(json_dumps(&loads(input)), want, "{input}");
        }
    }

    #[test]
    fn dumps_unicode_matches_python_ensure_ascii_false() {
        // json.dumps(json.loads(s), ensure_ascii=False)
        let cases = [
            (
                r#"["\u00e9\u6771\ud83d\ude00\u007f\u0001\u001f\n\"\\\/\b\f\t\r", 1.0]"#,
                "[\"é東😀\u{7f}\\u0001\\u001f\\n\\\"\\\\/\\b\\f\\t\\r\", 1.0]",
            ),
            (
                r#"{"k": [true, null, 1e16]}"#,
                r#"{"k": [true, null, 1e+16]}"#,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(json_dumps_unicode(&loads(input)), want, "{input}");
        }
    }

    #[test]
    fn str_matches_python_str() {
        // str(json.loads(s))
        let cases = [
            ("true", "True"),
            ("null", "None"),
            ("1e16", "1e+16"),
            ("-0.0", "-0.0"),
            ("[NaN, Infinity, -Infinity]", "[nan, inf, -inf]"),
            (r#""plain \"text\"""#, r#"plain "text""#),
            (r#"{"k": {}, "l": [], "s": "it's", "t": "say \"hi\"", "u": "both ' \""}"#,
             r#"{'k': {}, 'l': [], 's': "it's", 't': 'say "hi"', 'u': 'both \' "'}"#),
            (r#"["a\\b\n\t\r\u0001\u007f\u0085\u00a0\u00ad\u200b\u2028\ue000\u0378\udb40\udc01\ud83d\ude00\ud83d\udedc \u00e9\u6771"]"#,
             "['a\\\\b\\n\\t\\r\\x01\\x7f\\x85\\xa0\\xad\\u200b\\u2028\\ue000\\u0378\\U000e0001😀\\U0001f6dc é東']"),
        ];
        for (input, want) in cases {
            assert_eq!(py_str(&loads(input)), want, "{input}");
        }
    }

    #[test]
    fn strip_uses_python_whitespace() {
        // "\x1c\xa0 x \u3000\x1f".strip() == "x"; "\u200b" is not whitespace
        assert_eq!(py_strip("\u{1c}\u{a0} x \u{3000}\u{1f}"), "x");
        assert_eq!(py_strip("\u{200b}x\u{200b}"), "\u{200b}x\u{200b}");
        assert_eq!(py_rstrip(" x \u{1c}\n\u{85}\u{1f}"), " x");
        assert_eq!(py_rstrip("x\u{200b}"), "x\u{200b}");
    }

    #[test]
    fn python_rejections_are_invalid() {
        for bad in [
            "",
            "[1,]",
            "{\"a\" 1}",
            "{'a': 1}",
            "01",
            "1.",
            "1e",
            "-",
            "[1 2]",
            "\"\t\"",
            "\"\\x\"",
            "\"\\u12g4\"",
            "nan",
            "-NaN",
            "\u{feff}[]",
            "\"abc",
        ] {
            match json_loads(bad) {
                Err(PyJsonError::Invalid { .. }) => {}
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        // 4300 digits are fine, 4301 raise ValueError.
        assert!(json_loads(&format!("-{}", "9".repeat(4300))).is_ok());
        let e = json_loads(&format!("[{}]", "9".repeat(4301))).unwrap_err();
        assert!(e.to_string().contains("4301 digits"), "{e}");
    }

    #[test]
    fn unreproducible_inputs_are_errors() {
        for (bad, pos) in [
            (r#"["ok", "\ud800"]"#, 8),
            (r#""\udc00\ud800""#, 1),
            (r#""\ud800\u0041""#, 1),
        ] {
            match json_loads(bad) {
                Err(PyJsonError::NotReproducible { position, .. }) => {
                    assert_eq!(position, pos, "{bad}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        let deep_ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(json_loads(&deep_ok).is_ok());
        let too_deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(matches!(
            json_loads(&too_deep),
            Err(PyJsonError::NotReproducible { .. })
        ));
    }

    #[test]
    fn unicode_table_is_pythons() {
        assert_eq!(
            unicode_general_category::UNICODE_VERSION,
            (14, 0, 0),
            "py_isprintable must follow Python 3.11's Unicode {PYTHON_UNICODE_VERSION}"
        );
    }
}
