//! A model of how llama-cpp-python (0.3.x) echoes a prompt on `/completions`
//! with `logprobs`, for tests and for `w2c mock-server --echo-style
//! llama-cpp`. It reproduces the server's rules, not its tokenizer:
//!
//! - each token's string is its bytes decoded as UTF-8 with invalid or
//!   incomplete sequences dropped, so a byte piece of a multi-byte character
//!   renders as `""`;
//! - `text_offset[i]` is the character count of the decoded bytes of the
//!   tokens before `i` (so pieces of one character repeat an offset);
//! - special tokens written in the prompt are tokenized as specials, render
//!   as `""` and add nothing to later offsets;
//! - BOS is counted in `usage.prompt_tokens` but left out of the arrays, and
//!   the first logprob is null;
//! - when the next token is end-of-generation nothing is appended and
//!   `usage.completion_tokens` is 0.
//!
//! The tokenizer here is a toy: special markers from [`SPECIALS`], ASCII
//! words and punctuation as in the mock's tokenizer, and every non-ASCII
//! character split into single bytes.

use super::TokenLogprobs;

/// Special tokens the toy vocabulary knows (a ChatML model's).
pub const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// One token of the toy tokenizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// The token's bytes (for a special, its marker text).
    pub bytes: Vec<u8>,
    /// Tokenized as a special token.
    pub special: bool,
}

impl Piece {
    /// A plain token of these bytes.
    pub fn bytes(b: &[u8]) -> Piece {
        Piece {
            bytes: b.to_vec(),
            special: false,
        }
    }

    /// A special token with this marker text.
    pub fn special(marker: &str) -> Piece {
        Piece {
            bytes: marker.as_bytes().to_vec(),
            special: true,
        }
    }
}

/// Decodes UTF-8, dropping invalid and incomplete sequences (Python's
/// `decode("utf-8", errors="ignore")`).
pub fn decode_ignore(bytes: &[u8]) -> String {
    bytes.utf8_chunks().map(|c| c.valid()).collect()
}

/// Tokenizes a prompt with the toy vocabulary.
pub fn tokenize(prompt: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut rest = prompt;
    while !rest.is_empty() {
        if let Some(m) = SPECIALS.iter().find(|m| rest.starts_with(**m)) {
            out.push(Piece::special(m));
            rest = &rest[m.len()..];
            continue;
        }
        let next_special = SPECIALS
            .iter()
            .filter_map(|m| rest.find(m))
            .min()
            .unwrap_or(rest.len());
        let (plain, tail) = rest.split_at(next_special);
        for (_, word) in super::mock::tokenize(plain) {
            let mut ascii = String::new();
            for ch in word.chars() {
                if ch.is_ascii() {
                    ascii.push(ch);
                } else {
                    if !ascii.is_empty() {
                        out.push(Piece::bytes(ascii.as_bytes()));
                        ascii.clear();
                    }
                    let mut buf = [0u8; 4];
                    for b in ch.encode_utf8(&mut buf).bytes() {
                        out.push(Piece::bytes(&[b]));
                    }
                }
            }
            if !ascii.is_empty() {
                out.push(Piece::bytes(ascii.as_bytes()));
            }
        }
        rest = tail;
    }
    out
}

/// The `tokens` and `text_offset` arrays llama-cpp-python returns for these
/// pieces (prompt and generated, in order).
pub fn arrays(pieces: &[Piece]) -> (Vec<String>, Vec<usize>) {
    let mut tokens = Vec::with_capacity(pieces.len());
    let mut offsets = Vec::with_capacity(pieces.len());
    let mut prefix: Vec<u8> = Vec::new();
    for p in pieces {
        offsets.push(decode_ignore(&prefix).chars().count());
        if p.special {
            tokens.push(String::new());
        } else {
            tokens.push(decode_ignore(&p.bytes));
            prefix.extend_from_slice(&p.bytes);
        }
    }
    (tokens, offsets)
}

/// A whole echo reply for prompt pieces, generated pieces (empty means
/// end-of-generation) and a log-probability per token (the first is
/// reported as null). Returns the logprobs and `(prompt_tokens,
/// completion_tokens)` as the server reports them (BOS counted).
pub fn echo(
    prompt: &[Piece],
    generated: &[Piece],
    logprob: impl Fn(usize) -> f64,
) -> (TokenLogprobs, (u64, u64)) {
    let all: Vec<Piece> = prompt.iter().chain(generated).cloned().collect();
    let (tokens, text_offset) = arrays(&all);
    let token_logprobs = (0..all.len())
        .map(|i| (i > 0).then(|| logprob(i)))
        .collect();
    (
        TokenLogprobs {
            tokens,
            token_logprobs,
            text_offset,
        },
        (prompt.len() as u64 + 1, generated.len() as u64),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_pieces_render_empty_and_repeat_offsets() {
        let p = tokenize("ok。");
        assert_eq!(p.len(), 4);
        let (tokens, offsets) = arrays(&p);
        assert_eq!(tokens, vec!["ok", "", "", ""]);
        assert_eq!(offsets, vec![0, 2, 2, 2]);
    }

    #[test]
    fn specials_render_empty_and_add_nothing() {
        let p = tokenize("<|im_start|>user\nhi<|im_end|>");
        let (tokens, offsets) = arrays(&p);
        assert_eq!(tokens, vec!["", "user", "\nhi", ""]);
        assert_eq!(offsets, vec![0, 0, 4, 7]);
    }

    #[test]
    fn a_merged_piece_renders_only_its_whole_characters() {
        // "X" plus the first byte of "好", then the other two bytes.
        let hao = "好".as_bytes();
        let p = vec![
            Piece::bytes(&[b'X', hao[0]]),
            Piece::bytes(&hao[1..]),
            Piece::bytes(b"!"),
        ];
        let (tokens, offsets) = arrays(&p);
        assert_eq!(tokens, vec!["X", "", "!"]);
        assert_eq!(offsets, vec![0, 1, 2]);
    }
}
