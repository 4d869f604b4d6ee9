//! Continuation scoring from echoed log-probabilities (pure, no I/O), with
//! lm-eval-harness semantics.
//!
//! A scored prompt is `context + continuation`, sent to `/completions` with
//! `echo: true`, `logprobs`, `max_tokens: 1`. The reply's arrays hold the
//! prompt's tokens (a BOS token may be left out) followed by exactly
//! `usage.completion_tokens` generated tokens — zero when the model's next
//! token is end-of-generation.
//!
//! [`align`] places every echoed prompt token on the prompt string without
//! trusting that the token strings concatenate to it. It reads `text_offset`
//! the way OpenAI-compatible servers compute it (characters of the decoded
//! prefix, as llama-cpp-python does) and handles what such servers really
//! send:
//! - a byte-level token holding part of a multi-byte character renders as
//!   `""` and repeats the offset: it belongs to the character it helps
//!   complete ([`TokenKind::Partial`]); the token that completes a character
//!   begun earlier renders without that character ([`TokenKind::MidChar`]);
//! - a special token written in the prompt (`<|im_start|>`...) renders as
//!   `""` and adds nothing to later offsets ([`TokenKind::Special`]): w2c
//!   recognises the marker text at that place and shifts the offsets by it;
//! - the first logprob is null.
//!
//! Every token must start where the previous one ended and its rendering must
//! match the prompt there; otherwise the reply is [`AlignError`] naming the
//! token and offset. A server that gives byte offsets (OpenAI-style `bytes`)
//! would produce the same [`TokenSpan`]s directly.
//!
//! [`score`] then sums the tokens whose span ends after the context: the same
//! token set as lm-eval's `whole[len(tok(context)):]` whenever no token
//! straddles the boundary; straddles are flagged. One limit: when the first
//! character of the continuation is multi-byte and split into `""` pieces,
//! offsets alone cannot show whether the context's last token also held its
//! first byte, so such a straddle is not flagged.

use crate::llm::TokenLogprobs;
use serde::{Deserialize, Serialize};

/// Why an echoed reply cannot be placed on its prompt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlignError {
    /// The reply has no `logprobs` at all.
    #[error("the reply has no logprobs (does the endpoint support `logprobs` on /completions?)")]
    NoLogprobs,
    /// `tokens`, `token_logprobs` and `text_offset` differ in length.
    #[error("logprob arrays differ in length (tokens {tokens}, token_logprobs {logprobs}, text_offset {offsets})")]
    RaggedArrays {
        /// Tokens.
        tokens: usize,
        /// Log-probabilities.
        logprobs: usize,
        /// Offsets.
        offsets: usize,
    },
    /// Nothing of the prompt came back: no echo.
    #[error("the reply does not echo the prompt ({tokens} tokens, {completion_tokens} generated, first offset {first_offset:?})")]
    NoEcho {
        /// Tokens in the reply.
        tokens: usize,
        /// `usage.completion_tokens`.
        completion_tokens: usize,
        /// `text_offset[0]`, if any.
        first_offset: Option<usize>,
    },
    /// `usage.completion_tokens` is more than the reply's tokens: its counts
    /// contradict each other.
    #[error("`usage.completion_tokens` = {completion_tokens} is more than the {tokens} tokens the reply returned, so the generated tokens cannot be told from the prompt's")]
    CompletionTokensBeyondReply {
        /// Tokens in the reply.
        tokens: usize,
        /// `usage.completion_tokens`.
        completion_tokens: usize,
    },
    /// The echo is there but its offsets do not count from the prompt's
    /// start.
    #[error("the prompt is echoed but `text_offset` starts at {first_offset}, not 0: the offsets are shifted against the prompt's {prompt} characters")]
    ShiftedOffsets {
        /// `text_offset[0]`.
        first_offset: usize,
        /// Prompt length in characters.
        prompt: usize,
    },
    /// A token does not start where the previous one ended.
    #[error("token {index} ({token:?}) starts at offset {offset}, which is prompt character {position}, but the tokens before it end at character {expected}")]
    OffsetGap {
        /// Token index.
        index: usize,
        /// Its text.
        token: String,
        /// Its `text_offset`.
        offset: usize,
        /// The prompt character it maps to.
        position: usize,
        /// Where the previous tokens ended.
        expected: usize,
    },
    /// Offsets point past the end of the prompt.
    #[error("token {index} ({token:?}) at offset {offset} reaches past the prompt's {prompt} characters")]
    BeyondPrompt {
        /// Token index.
        index: usize,
        /// Its text.
        token: String,
        /// Its `text_offset`.
        offset: usize,
        /// Prompt length in characters.
        prompt: usize,
    },
    /// An empty token at a place that is neither a multi-byte character nor a special-token marker.
    #[error("token {index} at offset {offset} renders as \"\" but prompt character {position} ({found:?}) is neither a multi-byte character nor a special-token marker")]
    UnexplainedEmpty {
        /// Token index.
        index: usize,
        /// Its `text_offset`.
        offset: usize,
        /// The prompt character it maps to.
        position: usize,
        /// The prompt text there (a few characters).
        found: String,
    },
    /// A token's text differs from the prompt text its offsets cover.
    #[error(
        "token {index} at offset {offset} renders {token:?} but the prompt has {expected:?} there"
    )]
    Mismatch {
        /// Token index.
        index: usize,
        /// Its `text_offset`.
        offset: usize,
        /// Its text.
        token: String,
        /// The prompt text its offsets cover.
        expected: String,
    },
    /// The prompt tokens end before the prompt does (truncated arrays).
    #[error("the echoed tokens cover {covered} of the prompt's {prompt} characters")]
    PromptNotCovered {
        /// Characters covered by the returned prompt tokens.
        covered: usize,
        /// Prompt length in characters.
        prompt: usize,
    },
}

impl AlignError {
    /// Whether the error shows the endpoint cannot score prompts at all (as
    /// opposed to one reply that cannot be aligned).
    pub fn is_endpoint_level(&self) -> bool {
        matches!(self, AlignError::NoLogprobs | AlignError::NoEcho { .. })
    }
}

/// Why a continuation cannot be scored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScoreError {
    /// The echo cannot be placed on the prompt.
    #[error(transparent)]
    Align(#[from] AlignError),
    /// A continuation token has no log-probability.
    #[error("continuation token {index} has a null logprob")]
    NullLogprob {
        /// Token index.
        index: usize,
    },
    /// No token falls inside the continuation.
    #[error("no token falls inside the continuation")]
    EmptyContinuation,
    /// A continuation token's log-probability is positive (a probability
    /// above 1): the reply cannot be right.
    #[error("continuation token {index} has logprob {}, which is impossible (a log-probability is at most 0)", readable(*value))]
    ImpossibleLogprob {
        /// Token index.
        index: usize,
        /// The value reported.
        value: f64,
    },
}

/// How an echoed token sits on the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// Whole characters, rendered as they are in the prompt.
    Text,
    /// Completes a character begun by an earlier token, then whole characters.
    MidChar,
    /// Part of one multi-byte character (rendered `""`).
    Partial,
    /// A special token written in the prompt (rendered `""`, adds 0 to offsets).
    Special,
}

/// The prompt characters `[start, end)` an echoed token stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenSpan {
    /// First prompt character.
    pub start: usize,
    /// One past the last prompt character.
    pub end: usize,
    /// How it was placed.
    pub kind: TokenKind,
}

/// The score of one continuation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContinuationScore {
    /// Sum of the continuation tokens' log-probabilities.
    #[serde(with = "crate::floats::finite_or_string")]
    pub logprob: f64,
    /// Continuation tokens.
    pub n_tokens: usize,
    /// A token began in the context and ended in the continuation.
    pub straddles_boundary: bool,
}

/// Splits lm-eval style: trailing whitespace of the context moves to the start
/// of the continuation; the target delimiter goes between them.
/// Returns (context, continuation). Whitespace is Python's (`str.rstrip()`,
/// which also strips U+001C..U+001F), as in lm-eval's `_encode_pair`.
pub fn split_prompt(context: &str, delimiter: &str, choice: &str) -> (String, String) {
    let trimmed = crate::official_task::python::py_rstrip(context);
    let moved = &context[trimmed.len()..];
    (trimmed.to_string(), format!("{moved}{delimiter}{choice}"))
}

/// Length in characters of a special-token marker starting at `chars[pos]`:
/// `<|name|>`, `<name>` / `</name>`, or `[NAME]` / `[/NAME]` without spaces,
/// at most 64 characters.
pub fn marker_len(chars: &[char], pos: usize) -> Option<usize> {
    let close = match chars.get(pos)? {
        '<' => '>',
        '[' => ']',
        _ => return None,
    };
    let rest = &chars[pos + 1..];
    let end = rest
        .iter()
        .take(64)
        .position(|&c| c == close || c.is_whitespace() || c == '<' || c == '[')?;
    (rest[end] == close && end > 0).then_some(end + 2)
}

fn text_of(chars: &[char], start: usize, end: usize) -> String {
    chars[start.min(chars.len())..end.min(chars.len())]
        .iter()
        .collect()
}

/// Places each echoed prompt token on the prompt (see the module comment).
/// `completion_tokens` generated tokens at the end are not prompt tokens.
pub fn align(
    prompt: &str,
    lp: Option<&TokenLogprobs>,
    completion_tokens: usize,
) -> Result<Vec<TokenSpan>, AlignError> {
    let lp = lp.ok_or(AlignError::NoLogprobs)?;
    let (nt, nl, no) = (
        lp.tokens.len(),
        lp.token_logprobs.len(),
        lp.text_offset.len(),
    );
    if nt != nl || nt != no {
        return Err(AlignError::RaggedArrays {
            tokens: nt,
            logprobs: nl,
            offsets: no,
        });
    }
    let no_echo = AlignError::NoEcho {
        tokens: nt,
        completion_tokens,
        first_offset: lp.text_offset.first().copied(),
    };
    let n_prompt =
        nt.checked_sub(completion_tokens)
            .ok_or(AlignError::CompletionTokensBeyondReply {
                tokens: nt,
                completion_tokens,
            })?;
    let chars: Vec<char> = prompt.chars().collect();
    // Without echo the offsets start where the prompt ends.
    if n_prompt == 0 || lp.text_offset[0] >= chars.len() {
        return Err(no_echo);
    }
    if lp.text_offset[0] != 0 {
        return Err(AlignError::ShiftedOffsets {
            first_offset: lp.text_offset[0],
            prompt: chars.len(),
        });
    }
    // With echo, the first generated token starts where the prompt's
    // rendering ends.
    let rendered_end = (completion_tokens > 0).then(|| lp.text_offset[n_prompt]);
    let mut spans = Vec::with_capacity(n_prompt);
    let mut shift = 0usize; // characters of special tokens so far
    let mut covered = 0usize; // prompt characters explained so far
    let mut partial: Option<(usize, usize)> = None; // (character, pieces so far)
    for i in 0..n_prompt {
        let off = lp.text_offset[i];
        let token = lp.tokens[i].as_str();
        let pos = off + shift;
        let beyond = || AlignError::BeyondPrompt {
            index: i,
            token: token.to_string(),
            offset: off,
            prompt: chars.len(),
        };
        if pos > chars.len() {
            return Err(beyond());
        }
        if pos != covered {
            return Err(AlignError::OffsetGap {
                index: i,
                token: token.to_string(),
                offset: off,
                position: pos,
                expected: covered,
            });
        }
        let next = match (i + 1 < n_prompt, rendered_end) {
            (true, _) => lp.text_offset[i + 1],
            (false, Some(end)) => end,
            (false, None) => off + last_token_width(&chars, pos, token),
        };
        if next < off {
            return Err(AlignError::OffsetGap {
                index: i + 1,
                token: lp.tokens.get(i + 1).cloned().unwrap_or_default(),
                offset: next,
                position: next + shift,
                expected: pos,
            });
        }
        let width = next - off;
        if width == 0 && token.is_empty() {
            if partial.is_none() {
                if let Some(m) = marker_len(&chars, pos) {
                    spans.push(TokenSpan {
                        start: pos,
                        end: pos + m,
                        kind: TokenKind::Special,
                    });
                    shift += m;
                    covered += m;
                    continue;
                }
            }
            let pieces = match partial {
                Some((p, n)) if p == pos => n + 1,
                _ => 1,
            };
            match chars.get(pos) {
                Some(c) if c.len_utf8() > pieces => {
                    partial = Some((pos, pieces));
                    spans.push(TokenSpan {
                        start: pos,
                        end: pos + 1,
                        kind: TokenKind::Partial,
                    });
                    continue;
                }
                _ => {
                    return Err(AlignError::UnexplainedEmpty {
                        index: i,
                        offset: off,
                        position: pos,
                        found: text_of(&chars, pos, pos + 12),
                    })
                }
            }
        }
        let end = pos + width;
        if end > chars.len() {
            return Err(beyond());
        }
        let expected = text_of(&chars, pos, end);
        let begun_earlier = partial.take().is_some_and(|(p, _)| p == pos);
        let kind = if !begun_earlier && width > 0 && token == expected {
            TokenKind::Text
        } else if width > 0
            && chars[pos].len_utf8() > 1
            && token.chars().eq(chars[pos + 1..end].iter().copied())
        {
            TokenKind::MidChar
        } else {
            return Err(AlignError::Mismatch {
                index: i,
                offset: off,
                token: token.to_string(),
                expected,
            });
        };
        spans.push(TokenSpan {
            start: pos,
            end,
            kind,
        });
        covered = end;
    }
    if covered < chars.len() || partial.is_some() {
        return Err(AlignError::PromptNotCovered {
            covered,
            prompt: chars.len(),
        });
    }
    Ok(spans)
}

/// Width in rendered characters of the last prompt token when no generated
/// token follows it (end-of-generation): what the rest of the prompt says.
fn last_token_width(chars: &[char], pos: usize, token: &str) -> usize {
    let rest = &chars[pos.min(chars.len())..];
    let n = token.chars().count();
    if token.is_empty() {
        // The last piece of a final multi-byte character, or a special.
        return usize::from(rest.len() == 1 && rest[0].len_utf8() > 1);
    }
    if token.chars().eq(rest.iter().copied()) {
        return n;
    }
    if rest.len() == n + 1 && rest[0].len_utf8() > 1 && token.chars().eq(rest[1..].iter().copied())
    {
        return n + 1;
    }
    n
}

/// A float for a message: large values in exponent form (`1e308`, not
/// 309 digits).
fn readable(v: f64) -> String {
    if v.abs() >= 1e6 {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// Largest log-probability taken as a log-probability: 0 (probability 1)
/// plus room for a server's float rounding. Anything above is impossible and
/// makes the reply unscorable ([`ScoreError::ImpossibleLogprob`]).
pub const MAX_LOGPROB: f64 = 1e-3;

/// Scores the continuation that starts at character `context_chars` of
/// `prompt`, from the echoed logprobs of `prompt` followed by exactly
/// `completion_tokens` generated tokens.
pub fn score(
    prompt: &str,
    context_chars: usize,
    lp: Option<&TokenLogprobs>,
    completion_tokens: usize,
) -> Result<ContinuationScore, ScoreError> {
    let spans = align(prompt, lp, completion_tokens)?;
    let lp = lp.ok_or(AlignError::NoLogprobs)?;
    let mut sum = 0.0;
    let mut n_tokens = 0;
    let mut straddles = false;
    for (i, span) in spans.iter().enumerate() {
        if span.end <= context_chars {
            continue;
        }
        // A token that began in the context, or the first continuation
        // token completing a character whose first bytes the context holds.
        if span.start < context_chars
            || (n_tokens == 0 && span.kind == TokenKind::MidChar && span.start == context_chars)
        {
            straddles = true;
        }
        match lp.token_logprobs[i] {
            Some(v) if v > MAX_LOGPROB || v.is_nan() => {
                return Err(ScoreError::ImpossibleLogprob { index: i, value: v })
            }
            Some(v) => sum += v,
            None => return Err(ScoreError::NullLogprob { index: i }),
        }
        n_tokens += 1;
    }
    if n_tokens == 0 {
        return Err(ScoreError::EmptyContinuation);
    }
    Ok(ContinuationScore {
        logprob: sum,
        n_tokens,
        straddles_boundary: straddles,
    })
}

/// Index of the largest value; ties go to the lowest index. Returns
/// (index, whether another value tied with it).
pub fn argmax(values: &[f64]) -> Option<(usize, bool)> {
    let mut best: Option<usize> = None;
    for (i, v) in values.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        match best {
            Some(b) if *v <= values[b] => {}
            _ => best = Some(i),
        }
    }
    best.map(|b| {
        let tie = values
            .iter()
            .enumerate()
            .any(|(i, v)| i != b && *v == values[b]);
        (b, tie)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::llama_echo::{self, Piece};

    /// Offsets by whole-token characters, like a server whose tokens
    /// concatenate to the prompt.
    fn lp(tokens: &[&str], logprobs: &[Option<f64>]) -> TokenLogprobs {
        let mut off = 0;
        let mut offsets = Vec::new();
        for t in tokens {
            offsets.push(off);
            off += t.chars().count();
        }
        TokenLogprobs {
            tokens: tokens.iter().map(|s| s.to_string()).collect(),
            token_logprobs: logprobs.to_vec(),
            text_offset: offsets,
        }
    }

    /// A llama-cpp-python style echo of `prompt` (toy tokenizer) with token
    /// i's logprob = -(i as f64), plus `generated` pieces.
    fn llama(prompt: &str, generated: &[&str]) -> (TokenLogprobs, usize) {
        let gen: Vec<Piece> = generated
            .iter()
            .map(|g| Piece::bytes(g.as_bytes()))
            .collect();
        let (l, (_, c)) = llama_echo::echo(&llama_echo::tokenize(prompt), &gen, |i| -(i as f64));
        (l, c as usize)
    }

    /// lm-eval's continuation tokens: indices `[ctx_len, n_prompt)` where
    /// ctx_len counts the toy tokenizer's tokens of the context alone.
    fn lm_eval_sum(context: &str, prompt: &str) -> (f64, usize) {
        let ctx_len = llama_echo::tokenize(context).len();
        let n = llama_echo::tokenize(prompt).len();
        ((ctx_len..n).map(|i| -(i as f64)).sum(), n - ctx_len)
    }

    #[test]
    fn bpe_leading_space_and_extra_generated_token() {
        // Context "The answer is", continuation " yes"; one generated token.
        let prompt = "The answer is yes";
        let l = lp(
            &["The", " answer", " is", " yes", " and"],
            &[None, Some(-1.0), Some(-0.5), Some(-0.25), Some(-3.0)],
        );
        let s = score(prompt, "The answer is".len(), Some(&l), 1).unwrap();
        assert_eq!(s.logprob, -0.25);
        assert_eq!(s.n_tokens, 1);
        assert!(!s.straddles_boundary);
    }

    #[test]
    fn multibyte_offsets_are_characters() {
        // "Größe: " + "groß"; offsets count characters, not bytes.
        let prompt = "Größe: groß";
        let l = lp(
            &["Gr", "öße", ":", " gro", "ß", "!"],
            &[
                None,
                Some(-1.0),
                Some(-0.1),
                Some(-0.5),
                Some(-0.5),
                Some(-9.0),
            ],
        );
        let context = "Größe:";
        let s = score(prompt, context.chars().count(), Some(&l), 1).unwrap();
        assert_eq!(s.logprob, -1.0);
        assert_eq!(s.n_tokens, 2);
    }

    // Defect 1 (issue 10): a prompt ending in a character split into byte
    // pieces was reported as not covered ("1100 of 1101 characters").
    #[test]
    fn a_prompt_ending_in_byte_pieces_is_covered() {
        for generated in [&[" the"][..], &[][..]] {
            let prompt = "User: 请帮我。\nAssistant:好的。";
            let (l, c) = llama(prompt, generated);
            let spans = align(prompt, Some(&l), c).unwrap();
            assert_eq!(spans.last().unwrap().end, prompt.chars().count());
            assert!(score(
                prompt,
                prompt
                    .find("好")
                    .map(|b| prompt[..b].chars().count())
                    .unwrap(),
                Some(&l),
                c
            )
            .is_ok());
        }
    }

    // Defect 2: "" pieces at the start of an answer were dropped (token end
    // computed as start + chars(token)).
    #[test]
    fn byte_pieces_at_the_start_of_the_answer_are_scored() {
        let context = "Q: 你好\nAssistant:";
        let prompt = format!("{context}好的。Sure");
        let (l, c) = llama(&prompt, &[" the"]);
        let s = score(&prompt, context.chars().count(), Some(&l), c).unwrap();
        let (want, n) = lm_eval_sum(context, &prompt);
        // 好 的 。 are 3 bytes each, then "Sure".
        assert_eq!(n, 10);
        assert_eq!((s.logprob, s.n_tokens), (want, n));
        assert!(!s.straddles_boundary);
    }

    // Defect 3: with end-of-generation the server appends nothing and
    // reports completion_tokens 0; the last prompt token is still scored.
    #[test]
    fn end_of_generation_keeps_the_last_prompt_token() {
        let context = "Say it:";
        let prompt = format!("{context} done.");
        let (l, c) = llama(&prompt, &[]);
        assert_eq!(c, 0);
        let s = score(&prompt, context.len(), Some(&l), c).unwrap();
        assert_eq!((s.logprob, s.n_tokens), lm_eval_sum(context, &prompt));
        assert_eq!(s.n_tokens, 2, "\" done\" and \".\"");
    }

    // Defect 4: special tokens render as "" and add 0 to the offsets.
    #[test]
    fn special_tokens_in_the_prompt_are_aligned() {
        let context = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n你好?<|im_end|>\n<|im_start|>assistant";
        let prompt = format!("{context}\n<tool_call>\n{{}}\n</tool_call>");
        let (l, c) = llama(&prompt, &[" the"]);
        let spans = align(&prompt, Some(&l), c).unwrap();
        let specials: Vec<_> = spans
            .iter()
            .filter(|s| s.kind == TokenKind::Special)
            .map(|s| {
                prompt
                    .chars()
                    .skip(s.start)
                    .take(s.end - s.start)
                    .collect::<String>()
            })
            .collect();
        assert_eq!(
            specials,
            [
                "<|im_start|>",
                "<|im_end|>",
                "<|im_start|>",
                "<|im_end|>",
                "<|im_start|>"
            ]
        );
        let s = score(&prompt, context.chars().count(), Some(&l), c).unwrap();
        assert_eq!((s.logprob, s.n_tokens), lm_eval_sum(context, &prompt));
        // A special at the very end of the context stays in the context.
        let context = "<|im_start|>user\nhi<|im_end|>";
        let prompt = format!("{context}ok");
        let (l, c) = llama(&prompt, &[]);
        let s = score(&prompt, context.chars().count(), Some(&l), c).unwrap();
        assert_eq!((s.logprob, s.n_tokens), lm_eval_sum(context, &prompt));
    }

    #[test]
    fn a_piece_merging_across_a_character_is_placed_and_flagged() {
        // "X" + first byte of 好 in one token; context ends after "X".
        let hao = "好".as_bytes();
        let pieces = vec![
            Piece::bytes(b"Q"),
            Piece::bytes(&[b'X', hao[0]]),
            Piece::bytes(&hao[1..]),
            Piece::bytes(b"!"),
        ];
        let (l, _) = llama_echo::echo(&pieces, &[], |i| -(i as f64));
        let spans = align("QX好!", Some(&l), 0).unwrap();
        assert_eq!(spans[2].kind, TokenKind::MidChar);
        let s = score("QX好!", 2, Some(&l), 0).unwrap();
        assert!(s.straddles_boundary);
        assert_eq!((s.logprob, s.n_tokens), (-5.0, 2));
    }

    #[test]
    fn null_first_logprob_is_fine_but_not_inside_the_continuation() {
        let l = lp(&["A", " b", "."], &[None, None, Some(-1.0)]);
        assert_eq!(
            score("A b", 1, Some(&l), 1),
            Err(ScoreError::NullLogprob { index: 1 })
        );
        let l = lp(&["A", " b", "."], &[None, Some(-2.0), Some(-1.0)]);
        assert_eq!(score("A b", 1, Some(&l), 1).unwrap().logprob, -2.0);
    }

    #[test]
    fn a_positive_logprob_is_impossible_beyond_rounding() {
        let l = lp(&["A", " b", "."], &[None, Some(1e308), Some(-1.0)]);
        let e = score("A b", 1, Some(&l), 1).unwrap_err();
        assert_eq!(
            e,
            ScoreError::ImpossibleLogprob {
                index: 1,
                value: 1e308
            }
        );
        assert!(e.to_string().contains("logprob 1e308,"), "{e}");
        let l = lp(&["A", " b", "."], &[None, Some(0.5), Some(-1.0)]);
        assert!(score("A b", 1, Some(&l), 1).is_err());
        // Probability 1, with a server's float rounding.
        let l = lp(&["A", " b", "."], &[None, Some(1e-5), Some(-1.0)]);
        assert_eq!(score("A b", 1, Some(&l), 1).unwrap().logprob, 1e-5);
    }

    #[test]
    fn boundary_straddle_is_flagged() {
        // Joint tokenisation merged "is" + "n't" across the boundary.
        let l = lp(&["It", " isn't", "."], &[None, Some(-2.0), Some(-1.0)]);
        let s = score("It isn't", "It is".len(), Some(&l), 1).unwrap();
        assert!(s.straddles_boundary);
        assert_eq!(s.logprob, -2.0);
    }

    #[test]
    fn endpoints_that_cannot_score_are_detected() {
        // No echo: only the generated token comes back.
        let l = TokenLogprobs {
            tokens: vec![" the".into()],
            token_logprobs: vec![Some(-1.0)],
            text_offset: vec![9],
        };
        let e = score("Some text", 4, Some(&l), 1).unwrap_err();
        assert!(
            matches!(e, ScoreError::Align(ref a) if a.is_endpoint_level()),
            "{e}"
        );
        // Truncated arrays (logprobs for only part of the prompt).
        let l = lp(&["Some", " te"], &[None, Some(-1.0)]);
        assert_eq!(
            score("Some text", 4, Some(&l), 0),
            Err(ScoreError::Align(AlignError::PromptNotCovered {
                covered: 7,
                prompt: 9
            }))
        );
        let mut ragged = lp(&["a", "b"], &[None, Some(-1.0)]);
        ragged.text_offset.pop();
        assert!(matches!(
            score("ab", 1, Some(&ragged), 0),
            Err(ScoreError::Align(AlignError::RaggedArrays { .. }))
        ));
        assert_eq!(
            score("ab", 1, None, 0),
            Err(ScoreError::Align(AlignError::NoLogprobs))
        );
    }

    #[test]
    fn unalignable_replies_name_the_token_and_offset() {
        // An empty token at an ASCII character that is no special marker.
        let l = TokenLogprobs {
            tokens: vec!["a".into(), "".into(), "b".into()],
            token_logprobs: vec![None, Some(-1.0), Some(-1.0)],
            text_offset: vec![0, 1, 1],
        };
        assert_eq!(
            align("ab", Some(&l), 0),
            Err(AlignError::UnexplainedEmpty {
                index: 1,
                offset: 1,
                position: 1,
                found: "b".into()
            })
        );
        // Tokens whose text is not the prompt's.
        let l = lp(&["Hello", " wrld"], &[None, Some(-1.0)]);
        let e = align("Hello world", Some(&l), 0).unwrap_err();
        assert!(
            matches!(
                e,
                AlignError::Mismatch {
                    index: 1,
                    offset: 5,
                    ..
                }
            ),
            "{e}"
        );
        // Offsets that skip part of the prompt.
        let l = TokenLogprobs {
            tokens: vec!["a".into(), "c".into()],
            token_logprobs: vec![None, Some(-1.0)],
            text_offset: vec![0, 2],
        };
        let e = align("abc", Some(&l), 0).unwrap_err();
        assert!(matches!(e, AlignError::Mismatch { index: 0, .. }), "{e}");
        // More generated tokens than tokens: the reply contradicts itself
        // (the HTTP client refuses such a reply before it gets here).
        let l = lp(&["a"], &[None]);
        assert_eq!(
            align("a", Some(&l), 2),
            Err(AlignError::CompletionTokensBeyondReply {
                tokens: 1,
                completion_tokens: 2
            })
        );
        // An echo whose offsets start past 0 but inside the prompt is
        // shifted; offsets at the prompt's end are no echo.
        let mut l = lp(&["ab", "c"], &[None, Some(-1.0)]);
        l.text_offset = vec![2, 4];
        assert_eq!(
            align("abc", Some(&l), 0),
            Err(AlignError::ShiftedOffsets {
                first_offset: 2,
                prompt: 3
            })
        );
        l.text_offset = vec![3, 5];
        assert!(align("abc", Some(&l), 0).unwrap_err().is_endpoint_level());
    }

    #[test]
    fn markers() {
        let c: Vec<char> = "<|im_end|>x [INST] <a b>".chars().collect();
        assert_eq!(marker_len(&c, 0), Some(10));
        assert_eq!(marker_len(&c, 10), None);
        assert_eq!(marker_len(&c, 12), Some(6));
        assert_eq!(marker_len(&c, 19), None);
    }

    #[test]
    fn lm_eval_whitespace_move() {
        let (ctx, cont) = split_prompt("Q: hi\nA:\n\n", "", "yes");
        assert_eq!(ctx, "Q: hi\nA:");
        assert_eq!(cont, "\n\nyes");
        let (ctx, cont) = split_prompt("Q", " ", "no");
        assert_eq!((ctx.as_str(), cont.as_str()), ("Q", " no"));
        // Python's whitespace, not Rust's: U+001F is stripped, U+200B is not.
        let (ctx, cont) = split_prompt("Q?\u{1f} \u{85}", "", "A");
        assert_eq!((ctx.as_str(), cont.as_str()), ("Q?", "\u{1f} \u{85}A"));
        let (ctx, cont) = split_prompt("Q\u{200b}", "", "A");
        assert_eq!((ctx.as_str(), cont.as_str()), ("Q\u{200b}", "A"));
    }

    #[test]
    fn argmax_ties_go_to_the_first_and_are_reported() {
        assert_eq!(argmax(&[-3.0, -1.0, -1.0, -2.0]), Some((1, true)));
        assert_eq!(argmax(&[-3.0, -1.0, -2.0]), Some((1, false)));
        assert_eq!(argmax(&[f64::NEG_INFINITY, -5.0]), Some((1, false)));
        assert_eq!(argmax(&[]), None);
    }
}
