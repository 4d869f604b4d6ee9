//! Secret redaction at the boundary where server text enters w2c.
//!
//! Every secret w2c reads from the environment (provider API keys, header
//! values from `headers_env`, the MLflow password or token) is registered
//! here when it is read. Everything a server sends back — reply bodies,
//! error bodies, transport error texts — passes through [`scrub`] or
//! [`scrub_body`] before it reaches a record, a log line, an error message or
//! MLflow, so a server that echoes the key (`Incorrect API key provided:
//! Bearer sk-…`) never gets it stored: each occurrence becomes [`MASK`].
//!
//! A server may echo a key in another spelling, and JSON decoding would turn
//! some of them back into the key after the check. So a JSON body is decoded
//! first and every string in it (object keys included) is scrubbed, and each
//! text is searched for the secret written
//! - as it is, in any letter case;
//! - with any of its characters escaped as JSON/JavaScript `\uXXXX` (surrogate
//!   pairs included) or `\xHH`, percent-encoded (`%HH`, of its UTF-8 bytes),
//!   or as an HTML numeric character reference (`&#115;`, `&#x73;`), mixed
//!   freely character by character (and `\/` for `/`);
//! - in base64, standard or URL-safe alphabet, padded or not, at any offset
//!   inside a longer encoded text (so `Basic base64(user:key)` and
//!   base64 of `Bearer key` are caught): the characters that depend only on
//!   the secret's bytes are masked, the one or two at each edge that also
//!   encode neighbouring bytes are left;
//! - in hexadecimal (either case).
//!
//! A backslash escape may be written with its backslash escaped again
//! (`\\x73`, `\\u0073`: how a JSON string spells the text `\x73`), and a
//! body that is not JSON until its escapes are masked (raw `\xHH` in a JSON
//! string) is scrubbed as text and then, once it reads as JSON, string by
//! string.
//!
//! **Fragments**: no text w2c keeps holds more than [`SHOWN_CHARS`]
//! consecutive characters of a secret. Every run of `SHOWN_CHARS + 1`
//! characters of a secret (its prefix, its suffix, any part of it) is a
//! spelling too, in each of the forms above, so a key echoed minus a few
//! characters, or cut by a server, is masked as well; what may remain of it
//! beside the mask is at most `SHOWN_CHARS` characters — what an error
//! message about a misplaced setting repeats ([`shown`]).
//!
//! Other transformations (a key split across strings, reversed, encrypted,
//! compressed, or encoded twice in different ways such as base64 of a
//! percent-encoded key) are not recognised.
//!
//! Values shorter than [`MIN_SECRET_LEN`] characters are not treated as
//! secrets: masking every `1` or `on` in a model's reply would corrupt the
//! evaluation, and such values protect nothing.

use base64::Engine as _;
use serde_json::Value;
use std::sync::RwLock;

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Shortest value treated as a secret.
pub const MIN_SECRET_LEN: usize = 6;

/// One spelling of a secret to look for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Form {
    bytes: Vec<u8>,
    ignore_case: bool,
}

/// The spellings searched for, longest first, indexed by the byte each
/// starts with (so a text is searched once, not once per spelling).
struct Forms {
    /// Every spelling, longest first.
    all: Vec<Form>,
    /// For each first byte, the positions in `all` of the spellings that
    /// start with it (both letter cases for a case-blind spelling).
    by_first: Vec<Vec<usize>>,
}

impl Forms {
    /// No spellings.
    const fn new() -> Forms {
        Forms {
            all: Vec::new(),
            by_first: Vec::new(),
        }
    }

    /// The spellings of `secrets` (those shorter than [`MIN_SECRET_LEN`]
    /// left out).
    fn of<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Forms {
        let mut forms = Forms::new();
        for s in secrets {
            forms.add(s);
        }
        forms
    }

    /// Adds the spellings of `secret` (idempotent; short values are ignored).
    fn add(&mut self, secret: &str) {
        if secret.chars().count() < MIN_SECRET_LEN {
            return;
        }
        let mut known: std::collections::HashSet<Form> = self.all.drain(..).collect();
        known.extend(spellings_of(secret));
        self.all = known.into_iter().collect();
        // Longest first, so a secret containing another is masked whole
        // (ties in a fixed order, so a text is always masked alike).
        self.all.sort_by(|a, b| {
            b.bytes
                .len()
                .cmp(&a.bytes.len())
                .then_with(|| a.bytes.cmp(&b.bytes))
                .then_with(|| a.ignore_case.cmp(&b.ignore_case))
        });
        self.by_first = vec![Vec::new(); 256];
        for (i, f) in self.all.iter().enumerate() {
            let first = f.bytes[0];
            self.by_first[usize::from(first)].push(i);
            if f.ignore_case {
                let other = if first.is_ascii_lowercase() {
                    first.to_ascii_uppercase()
                } else {
                    first.to_ascii_lowercase()
                };
                if other != first {
                    self.by_first[usize::from(other)].push(i);
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// The spellings that may start with byte `b`, longest first.
    fn starting_with(&self, b: u8) -> impl Iterator<Item = &Form> {
        self.by_first
            .get(usize::from(b))
            .into_iter()
            .flatten()
            .map(|&i| &self.all[i])
    }
}

/// The spellings of every registered secret.
static FORMS: RwLock<Forms> = RwLock::new(Forms::new());

/// Registers a secret value for [`scrub`] (idempotent; short values are ignored).
pub fn register(secret: &str) {
    FORMS.write().unwrap_or_else(|p| p.into_inner()).add(secret);
}

/// Every spelling of `secret` searched for: those of the whole value, and
/// those of each run of [`SHOWN_CHARS`]` + 1` of its characters (the
/// fragment rule of the module comment).
fn spellings_of(secret: &str) -> Vec<Form> {
    let chars: Vec<char> = secret.chars().collect();
    let run = SHOWN_CHARS + 1;
    let mut out = forms_of(secret);
    if chars.len() > run {
        for window in chars.windows(run) {
            let part: String = window.iter().collect();
            out.extend(forms_of(&part));
        }
    }
    out
}

/// The spellings of `secret` searched for (see the module comment): the
/// value itself (any case), its hexadecimal (any case), and the base64
/// characters that depend only on its bytes at each of the three offsets, in
/// both alphabets.
fn forms_of(secret: &str) -> Vec<Form> {
    let bytes = secret.as_bytes();
    let mut forms = vec![
        Form {
            bytes: bytes.to_vec(),
            ignore_case: true,
        },
        Form {
            bytes: hex::encode(bytes).into_bytes(),
            ignore_case: true,
        },
    ];
    for offset in 0..3usize {
        let mut input = vec![0u8; offset];
        input.extend_from_slice(bytes);
        let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&input);
        // Character c encodes input bits [6c, 6c + 6); the secret's bits are
        // [8 * offset, 8 * (offset + len)).
        let first = (8 * offset).div_ceil(6);
        let end = (8 * (offset + bytes.len())) / 6;
        let Some(core) = encoded.get(first..end) else {
            continue;
        };
        if core.len() < MIN_SECRET_LEN {
            continue;
        }
        let url_safe = core.replace('+', "-").replace('/', "_");
        for text in [core.to_string(), url_safe] {
            let f = Form {
                bytes: text.into_bytes(),
                ignore_case: false,
            };
            if !forms.contains(&f) {
                forms.push(f);
            }
        }
    }
    forms
}

/// `text` with every registered secret replaced by [`MASK`].
pub fn scrub(text: &str) -> String {
    let forms = FORMS.read().unwrap_or_else(|p| p.into_inner());
    mask(text, &forms)
}

/// [`scrub`] for a reply body: a JSON body is decoded and scrubbed value by
/// value, object keys included (so an escaped secret is caught after
/// decoding, and a secret made of digits cannot corrupt a number and break
/// the JSON); any other body is scrubbed as text. A body without a secret is
/// returned as is.
pub fn scrub_body(body: &str) -> String {
    if FORMS.read().unwrap_or_else(|p| p.into_inner()).is_empty() {
        return body.to_string();
    }
    match serde_json::from_str::<Value>(body) {
        Ok(mut v) => {
            // Numbers are left alone: digits that happen to contain a
            // secret are not an echo of it.
            if scrub_value(&mut v) {
                v.to_string()
            } else {
                body.to_string()
            }
        }
        Err(_) => {
            let text = scrub(body);
            // Masking may have made it JSON (a raw `\xHH` escape, invalid
            // in JSON, spelling the key): its strings, decoded, are
            // scrubbed too, as the reader that parses it will see them.
            match serde_json::from_str::<Value>(&text) {
                Ok(mut v) => {
                    if scrub_value(&mut v) {
                        v.to_string()
                    } else {
                        text
                    }
                }
                Err(_) => text,
            }
        }
    }
}

/// Whether `text` holds a registered secret, in any of the spellings
/// [`scrub`] masks.
pub fn holds_secret(text: &str) -> bool {
    let forms = FORMS.read().unwrap_or_else(|p| p.into_inner());
    !spans(text, &forms).is_empty()
}

/// `text` with every one of `secrets`, in every spelling [`scrub`] knows,
/// replaced by [`MASK`] (the pure core of [`scrub`]; secrets shorter than
/// [`MIN_SECRET_LEN`] are left alone).
pub fn redact_with(text: &str, secrets: &[String]) -> String {
    mask(text, &Forms::of(secrets.iter().map(String::as_str)))
}

/// Scrubs every string (keys included) inside a JSON value; returns whether
/// anything was masked.
pub fn scrub_value(v: &mut Value) -> bool {
    match v {
        Value::String(s) => {
            let masked = scrub(s);
            let changed = masked != *s;
            *s = masked;
            changed
        }
        Value::Array(items) => {
            let mut changed = false;
            for item in items {
                changed |= scrub_value(item);
            }
            changed
        }
        Value::Object(map) => {
            if map.keys().any(|k| holds_secret(k)) {
                let old = std::mem::take(map);
                for (k, mut val) in old {
                    scrub_value(&mut val);
                    map.insert(scrub(&k), val);
                }
                true
            } else {
                let mut changed = false;
                for val in map.values_mut() {
                    changed |= scrub_value(val);
                }
                changed
            }
        }
        _ => false,
    }
}

/// `text` with the byte ranges [`spans`] finds replaced by [`MASK`]
/// (ranges that touch, such as the runs of one long fragment, by one).
fn mask(text: &str, forms: &Forms) -> String {
    let found = spans(text, forms);
    if found.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in found {
        if start > at || out.is_empty() {
            out.push_str(&text[at..start]);
            out.push_str(MASK);
        }
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

/// The byte ranges of `text` that spell one of `forms` (left to right, not
/// overlapping; at each position the longest form wins). Each range starts
/// and ends on a character boundary.
fn spans(text: &str, forms: &Forms) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    if forms.is_empty() {
        return out;
    }
    let mut i = 0;
    while i < b.len() {
        // The first byte the unit here stands for (an escape's decoded
        // byte) picks the spellings that may start here.
        let (unit, _) = unit_at(b, i);
        let found = forms
            .starting_with(unit.bytes[0])
            .find_map(|f| match_at(b, i, f));
        match found {
            Some(mut end) => {
                // Runs of a secret that overlap the one found extend it
                // (a fragment's last characters, fewer than a run).
                let mut j = unit_at(b, i).1;
                while j < end {
                    let (unit, next) = unit_at(b, j);
                    let further = forms
                        .starting_with(unit.bytes[0])
                        .filter_map(|f| match_at(b, j, f))
                        .max();
                    if let Some(e) = further.filter(|&e| e > end) {
                        end = e;
                    }
                    j = next;
                }
                out.push((i, end));
                i = end;
            }
            None => i += utf8_len(b[i]),
        }
    }
    out
}

/// Where a spelling of `form` that starts at `i` ends, if one does.
fn match_at(b: &[u8], mut i: usize, form: &Form) -> Option<usize> {
    let mut k = 0;
    while k < form.bytes.len() {
        if i >= b.len() {
            return None;
        }
        let (unit, next) = unit_at(b, i);
        for &u in unit.as_slice() {
            if !form
                .bytes
                .get(k)
                .is_some_and(|&want| same_byte(u, want, form.ignore_case))
            {
                return None;
            }
            k += 1;
        }
        i = next;
    }
    Some(i)
}

fn same_byte(a: u8, b: u8, ignore_case: bool) -> bool {
    if ignore_case {
        a.eq_ignore_ascii_case(&b)
    } else {
        a == b
    }
}

/// Length of the UTF-8 sequence a leading byte starts (1 for a stray byte).
fn utf8_len(lead: u8) -> usize {
    match lead {
        0xF0..=0xF7 => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// The bytes one written unit stands for: up to four.
struct Unit {
    bytes: [u8; 4],
    len: usize,
}

impl Unit {
    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    fn byte(b: u8) -> Unit {
        Unit {
            bytes: [b, 0, 0, 0],
            len: 1,
        }
    }

    fn char(c: char) -> Unit {
        let mut bytes = [0u8; 4];
        let len = c.encode_utf8(&mut bytes).len();
        Unit { bytes, len }
    }
}

/// The unit written at `b[i]` — an escape (`\uXXXX`, a surrogate pair,
/// `\xHH`, `\/`, `%HH`, `&#N;`, `&#xH;`) or one character as it is — and
/// where the next unit starts.
fn unit_at(b: &[u8], i: usize) -> (Unit, usize) {
    let hex_at = |at: usize, n: usize| -> Option<u32> {
        let digits = b.get(at..at + n)?;
        if !digits.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    };
    match b[i] {
        b'\\' => {
            // `\\x73` is how a JSON string writes the text `\x73`: a run
            // of backslashes introduces the escape as one does.
            let mut i = i;
            while b.get(i + 1) == Some(&b'\\') {
                i += 1;
            }
            match b.get(i + 1) {
                Some(b'u') => {
                    if let Some(hi) = hex_at(i + 2, 4) {
                        if (0xD800..0xDC00).contains(&hi) && b.get(i + 6..i + 8) == Some(b"\\u") {
                            if let Some(lo) =
                                hex_at(i + 8, 4).filter(|lo| (0xDC00..0xE000).contains(lo))
                            {
                                let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                                if let Some(c) = char::from_u32(c) {
                                    return (Unit::char(c), i + 12);
                                }
                            }
                        }
                        if let Some(c) = char::from_u32(hi) {
                            return (Unit::char(c), i + 6);
                        }
                    }
                }
                Some(b'x') => {
                    if let Some(v) = hex_at(i + 2, 2) {
                        return (Unit::byte(v as u8), i + 4);
                    }
                }
                Some(b'/') => return (Unit::byte(b'/'), i + 2),
                _ => {}
            }
        }
        b'%' => {
            if let Some(v) = hex_at(i + 1, 2) {
                return (Unit::byte(v as u8), i + 3);
            }
        }
        b'&' if b.get(i + 1) == Some(&b'#') => {
            let (digits_at, radix) = match b.get(i + 2) {
                Some(b'x' | b'X') => (i + 3, 16),
                _ => (i + 2, 10),
            };
            let len = b[digits_at.min(b.len())..]
                .iter()
                .take(8)
                .take_while(|c| c.is_ascii_hexdigit())
                .count();
            if len > 0 && b.get(digits_at + len) == Some(&b';') {
                let digits = std::str::from_utf8(&b[digits_at..digits_at + len]).unwrap_or("");
                if let Some(c) = u32::from_str_radix(digits, radix)
                    .ok()
                    .and_then(char::from_u32)
                {
                    return (Unit::char(c), digits_at + len + 1);
                }
            }
        }
        _ => {}
    }
    let len = utf8_len(b[i]).min(b.len() - i);
    let mut bytes = [0u8; 4];
    bytes[..len].copy_from_slice(&b[i..i + len]);
    (Unit { bytes, len }, i + len)
}

/// A URL with any `user:password@` removed, for messages.
pub fn url_without_credentials(raw: &str) -> String {
    match reqwest::Url::parse(raw) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Ok(u) => u.to_string(),
        // Not a URL: it may be anything, a key set in the wrong variable
        // included, so only a fragment is repeated.
        Err(_) => match raw.rsplit_once('@') {
            Some((_, host)) => format!("…@{}", fragment(host)),
            None => fragment(raw),
        },
    }
}

/// Longest part of a value that is not what its setting expects which an
/// error message repeats: a setting may hold a secret set by mistake (an API
/// key in the wrong variable), and no message shows more than this many
/// characters of one (docs/providers.md).
pub const SHOWN_CHARS: usize = 8;

/// `raw` as an error message may repeat it: whole when it has at most
/// [`SHOWN_CHARS`] characters, else its first [`SHOWN_CHARS`] and its length.
fn fragment(raw: &str) -> String {
    match head(raw) {
        None => raw.to_string(),
        Some((head, n)) => format!("{head}… ({n} characters)"),
    }
}

/// [`fragment`] in backticks, for an error message about a value that is
/// not what its setting expects.
pub fn shown(raw: &str) -> String {
    match head(raw) {
        None => format!("`{raw}`"),
        Some((head, n)) => format!("`{head}…` ({n} characters)"),
    }
}

/// The first [`SHOWN_CHARS`] characters of `raw` and its length in
/// characters; `None` when `raw` is no longer than that and may be shown
/// whole.
fn head(raw: &str) -> Option<(String, usize)> {
    let n = raw.chars().count();
    (n > SHOWN_CHARS).then(|| (raw.chars().take(SHOWN_CHARS).collect(), n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_that_is_not_a_url_is_repeated_only_in_part() {
        // A key set in MLFLOW_TRACKING_URI by mistake (found by the fuzz
        // test of the command line and environment).
        let text = url_without_credentials("sk-canary-0123456789");
        assert!(!text.contains("sk-canary-0"), "{text}");
        assert_eq!(text, "sk-canar… (20 characters)");
        assert_eq!(url_without_credentials("runs"), "runs");
        let text = url_without_credentials("sk-canary-0123456789@host");
        assert!(!text.contains("sk-canary"), "{text}");
        assert_eq!(url_without_credentials("http://u:p@h:1/x"), "http://h:1/x");
        assert_eq!(shown("sk-canary-0123456789"), "`sk-canar…` (20 characters)");
        assert_eq!(shown("soon"), "`soon`");
    }

    #[test]
    fn every_occurrence_is_masked_longest_first() {
        let secrets = vec!["sk-canary-0123456789".to_string(), "sk-canary".to_string()];
        assert_eq!(
            redact_with(
                "Incorrect API key provided: Bearer sk-canary-0123456789; again sk-canary-0123456789",
                &secrets
            ),
            "Incorrect API key provided: Bearer ***; again ***"
        );
        assert_eq!(redact_with("nothing here", &secrets), "nothing here");
        // Short values are not secrets.
        assert_eq!(redact_with("1 2 3", &["1".to_string()]), "1 2 3");
    }

    /// Every spelling a hostile server could use, alone and inside text.
    fn spellings(secret: &str) -> Vec<String> {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        let escaped_u: String = secret
            .chars()
            .map(|c| format!("\\u{:04x}", c as u32))
            .collect();
        let escaped_x: String = secret.bytes().map(|c| format!("\\x{c:02X}")).collect();
        let percent: String = secret.bytes().map(|c| format!("%{c:02x}")).collect();
        let html: String = secret.chars().map(|c| format!("&#{};", c as u32)).collect();
        let html_hex: String = secret
            .chars()
            .map(|c| format!("&#x{:x};", c as u32))
            .collect();
        let mixed: String = secret
            .chars()
            .enumerate()
            .map(|(i, c)| match i % 4 {
                0 => format!("\\u{:04X}", c as u32),
                1 => format!("%{:02X}", c as u32),
                2 => c.to_string(),
                _ => format!("&#{};", c as u32),
            })
            .collect();
        let mut out = vec![
            secret.to_string(),
            secret.to_ascii_uppercase(),
            escaped_u,
            escaped_x,
            percent,
            html,
            html_hex,
            mixed,
            hex::encode(secret),
            hex::encode_upper(secret),
        ];
        for prefix in ["", "u:", "user:", "Bearer "] {
            out.push(STANDARD.encode(format!("{prefix}{secret}")));
            out.push(URL_SAFE_NO_PAD.encode(format!("{prefix}{secret}trailing")));
        }
        out
    }

    #[test]
    fn encoded_echoes_are_masked() {
        let secret = "sk-canary-7d1e0b5a/93c4+Zz";
        let secrets = vec![secret.to_string()];
        for spelled in spellings(secret) {
            let text = format!("key: {spelled} (echo)");
            let out = redact_with(&text, &secrets);
            assert!(out.contains(MASK), "{spelled} -> {out}");
            assert!(
                !out.contains("canary") && !out.contains("7d1e0b5a"),
                "{spelled} -> {out}"
            );
            assert!(
                out.starts_with("key: ") && out.ends_with(" (echo)"),
                "{out}"
            );
        }
        // The same spellings inside a JSON body, keys included.
        register(secret);
        for spelled in spellings(secret) {
            let body = format!(r#"{{"error":{{"message":"bad key {spelled}"}},"{spelled}":1}}"#);
            let out = scrub_body(&body);
            let v: Value = serde_json::from_str(&out).expect("still JSON");
            let all = v.to_string();
            assert!(!all.contains("canary"), "{body} -> {all}");
            let decoded = v["error"]["message"].as_str().unwrap_or_default();
            assert!(decoded.starts_with("bad key "), "{decoded}");
            assert!(!decoded.contains("canary"), "{decoded}");
        }
    }

    #[test]
    fn json_unicode_escapes_are_decoded_before_the_check() {
        register("sk-escaped-4242xyz");
        let escaped: String = "Bearer sk-escaped-4242xyz"
            .chars()
            .map(|c| format!("\\u{:04x}", c as u32))
            .collect();
        let body = format!(r#"{{"choices":[{{"message":{{"content":"B ({escaped})"}}}}]}}"#);
        let out = scrub_body(&body);
        let v: Value = serde_json::from_str(&out).expect("JSON");
        let content = v["choices"][0]["message"]["content"].as_str().unwrap();
        assert_eq!(content, "B (Bearer ***)");
    }

    #[test]
    fn ordinary_text_is_untouched() {
        let secrets = vec!["sk-canary-0123456789".to_string()];
        for text in [
            r"C:\users\x41 %41 &#65; \u0041 & % \ ",
            // Fragments of SHOWN_CHARS characters, and their base64.
            "日本語のテキスト sk-canar y-012345 6789 (runs of 8 and less)",
            "c2stY2FuYXI",
            "",
            "\\",
            "%",
            "&#",
            "&#x110000;",
            r"\ud800",
        ] {
            assert_eq!(redact_with(text, &secrets), text);
        }
    }

    #[test]
    fn a_fragment_longer_than_the_shown_characters_is_masked() {
        let secret = "sk-canary-41f7c2e9d8b0aa7"; // 25 characters
        let secrets = vec![secret.to_string()];
        let n = secret.len();
        for part in [
            &secret[..n - 3],  // minus its last 3 characters
            &secret[3..],      // minus its first 3
            &secret[5..5 + 9], // 9 from the middle
            &secret[..n - 1],  // minus 1
            &secret[n - 9..],  // its last 9
            &secret[2..n - 2], // minus 2 at each end
        ] {
            for spelled in spellings(part) {
                let text = format!("key: {spelled} (echo)");
                let out = redact_with(&text, &secrets);
                assert!(out.contains(MASK), "{part}: {spelled} -> {out}");
                // At most SHOWN_CHARS characters of it are left in a row.
                for w in secret.as_bytes().windows(SHOWN_CHARS + 1) {
                    let w = std::str::from_utf8(w).unwrap();
                    assert!(!out.contains(w), "{part}: {spelled} -> {out}");
                }
            }
        }
        // One mask for one echo, however many runs it took.
        assert_eq!(
            redact_with(&format!("<{}>", &secret[..n - 3]), &secrets),
            "<***>"
        );
        // A run of SHOWN_CHARS characters is what a message may repeat.
        let shown = &secret[..SHOWN_CHARS];
        assert_eq!(redact_with(shown, &secrets), shown);
        assert_eq!(super::shown(secret), format!("`{shown}…` (25 characters)"));
    }

    #[test]
    fn raw_hex_escapes_and_escaped_escapes_are_masked() {
        let secret = "sk-hexcanary-5e7f01a2b3";
        register(secret);
        let x = |text: &str| -> String { text.bytes().map(|b| format!("\\x{b:02x}")).collect() };
        // `content` holds raw `\xHH` (not JSON); `system_fingerprint` the
        // JSON string `"\\xHH..."`, whose decoded text is `\xHH...`.
        let body = |raw: &str| {
            format!(
                r#"{{"choices":[{{"message":{{"content":"hi {raw}"}}}}],"system_fingerprint":"{}"}}"#,
                raw.replace('\\', "\\\\")
            )
        };
        // The key alone: JSON once masked, and every decoded string clean.
        let sent = body(&x(secret));
        assert!(serde_json::from_str::<Value>(&sent).is_err());
        let v: Value = serde_json::from_str(&scrub_body(&sent)).expect("JSON once masked");
        assert_eq!(v["choices"][0]["message"]["content"], "hi ***");
        assert_eq!(v["system_fingerprint"], "***");
        // A header echoed whole stays invalid JSON: masked as text, in both
        // spellings.
        let sent = body(&x(&format!("Bearer {secret}")));
        let out = scrub_body(&sent);
        let bearer = x("Bearer ");
        assert_eq!(
            out,
            format!(
                r#"{{"choices":[{{"message":{{"content":"hi {bearer}***"}}}}],"system_fingerprint":"{}***"}}"#,
                bearer.replace('\\', "\\\\")
            )
        );
        // A JSON string whose decoded text spells `\xHH` with `\u` escapes
        // is read once the body is JSON.
        let twice: String = x(secret)
            .chars()
            .map(|c| format!("\\u{:04x}", c as u32))
            .collect();
        let sent = format!(r#"{{"a":"{}","b":"{twice}"}}"#, x(secret));
        let v: Value = serde_json::from_str(&scrub_body(&sent)).expect("JSON once masked");
        assert_eq!(v, serde_json::json!({"a": "***", "b": "***"}));
    }

    #[test]
    fn registered_secrets_leave_json_values() {
        register("hunter2-canary-xyz");
        let mut v = serde_json::json!({
            "error": {"message": "bad key hunter2-canary-xyz"},
            "hunter2-canary-xyz": [1, "x hunter2-canary-xyz y"],
        });
        assert!(scrub_value(&mut v));
        let text = v.to_string();
        assert!(!text.contains("hunter2-canary-xyz"), "{text}");
        assert!(text.contains("bad key ***"), "{text}");
        assert!(scrub("hunter2-canary-xyz!").starts_with(MASK));
        let body = r#"{"a": 1.0, "b": "plain"}"#;
        assert_eq!(scrub_body(body), body, "unchanged bodies keep their bytes");
    }

    #[test]
    fn a_digit_secret_does_not_break_json_numbers() {
        register("98765432");
        let body = r#"{"created":1987654321,"error":{"message":"org 98765432 unknown"}}"#;
        let out = scrub_body(body);
        let v: Value = serde_json::from_str(&out).expect("still JSON");
        assert_eq!(v["created"], 1987654321u64);
        assert_eq!(v["error"]["message"], "org *** unknown");
        assert_eq!(scrub_body("<html>98765432</html>"), "<html>***</html>");
    }
}
