//! Continuation scoring from echoed log-probabilities (pure, no I/O), with
//! lm-eval-harness semantics.
//!
//! A scored prompt is `context + continuation`, sent to `/completions` with
//! `echo: true`, `logprobs`, `max_tokens: 1`. The continuation's tokens are
//! found by character offsets (`text_offset`) against the context length, not
//! by string matching. The generated extra tokens at the end are trimmed by
//! `usage.completion_tokens`. Only the very first prompt token may have a null
//! log-probability. Endpoints that do not echo the prompt, or return fewer
//! offsets than the prompt needs (a known llama.cpp failure mode), are
//! reported as [`ScoreError`]s so the method can stop instead of producing
//! chance-level numbers.

use crate::llm::TokenLogprobs;
use serde::{Deserialize, Serialize};

/// Why a reply cannot be scored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScoreError {
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
    /// The returned tokens do not cover the prompt: no echo, or truncated arrays.
    #[error("the echoed tokens cover {covered} of the prompt's {prompt} characters (the endpoint does not echo prompts with logprobs)")]
    PromptNotCovered {
        /// Characters covered by the returned prompt tokens.
        covered: usize,
        /// Prompt length in characters.
        prompt: usize,
    },
    /// A continuation token has no log-probability.
    #[error("continuation token {index} has a null logprob")]
    NullLogprob {
        /// Token index.
        index: usize,
    },
    /// No token starts inside the continuation.
    #[error("no token falls inside the continuation")]
    EmptyContinuation,
}

/// The score of one continuation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContinuationScore {
    /// Sum of the continuation tokens' log-probabilities.
    #[serde(with = "crate::store::floats::finite_or_string")]
    pub logprob: f64,
    /// Continuation tokens.
    pub n_tokens: usize,
    /// A token began in the context and ended in the continuation.
    pub straddles_boundary: bool,
}

/// Splits lm-eval style: trailing whitespace of the context moves to the start
/// of the continuation; the target delimiter goes between them.
/// Returns (context, continuation).
pub fn split_prompt(context: &str, delimiter: &str, choice: &str) -> (String, String) {
    let trimmed = context.trim_end();
    let moved = &context[trimmed.len()..];
    (trimmed.to_string(), format!("{moved}{delimiter}{choice}"))
}

/// Scores the continuation that starts at character `context_chars` of
/// `prompt`, from the echoed logprobs of `prompt` followed by
/// `completion_tokens` generated tokens.
pub fn score(
    prompt: &str,
    context_chars: usize,
    lp: Option<&TokenLogprobs>,
    completion_tokens: usize,
) -> Result<ContinuationScore, ScoreError> {
    let lp = lp.ok_or(ScoreError::NoLogprobs)?;
    let (nt, nl, no) = (
        lp.tokens.len(),
        lp.token_logprobs.len(),
        lp.text_offset.len(),
    );
    if nt != nl || nt != no {
        return Err(ScoreError::RaggedArrays {
            tokens: nt,
            logprobs: nl,
            offsets: no,
        });
    }
    let prompt_chars = prompt.chars().count();
    // Generated tokens come last; drop them by count, then anything that still
    // starts at or beyond the end of the prompt.
    let mut n_prompt = nt.saturating_sub(completion_tokens);
    while n_prompt > 0 && lp.text_offset[n_prompt - 1] >= prompt_chars {
        n_prompt -= 1;
    }
    let covered = if n_prompt == 0 {
        0
    } else {
        let last = n_prompt - 1;
        (lp.text_offset[last] + lp.tokens[last].chars().count()).min(prompt_chars)
    };
    if covered < prompt_chars || lp.text_offset.first().copied().unwrap_or(1) != 0 {
        return Err(ScoreError::PromptNotCovered {
            covered,
            prompt: prompt_chars,
        });
    }
    let mut sum = 0.0;
    let mut n_tokens = 0;
    let mut straddles = false;
    for i in 0..n_prompt {
        let start = lp.text_offset[i];
        let end = start + lp.tokens[i].chars().count();
        if end <= context_chars {
            continue;
        }
        if start < context_chars {
            straddles = true;
        }
        match lp.token_logprobs[i] {
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
        assert!(matches!(
            score("Some text", 4, Some(&l), 1),
            Err(ScoreError::PromptNotCovered { covered: 0, .. })
        ));
        // Truncated arrays (logprobs for only part of the prompt).
        let l = lp(&["Some", " te"], &[None, Some(-1.0)]);
        assert!(matches!(
            score("Some text", 4, Some(&l), 0),
            Err(ScoreError::PromptNotCovered {
                covered: 7,
                prompt: 9
            })
        ));
        let mut ragged = lp(&["a", "b"], &[None, Some(-1.0)]);
        ragged.text_offset.pop();
        assert!(matches!(
            score("ab", 1, Some(&ragged), 0),
            Err(ScoreError::RaggedArrays { .. })
        ));
        assert_eq!(score("ab", 1, None, 0), Err(ScoreError::NoLogprobs));
    }

    #[test]
    fn lm_eval_whitespace_move() {
        let (ctx, cont) = split_prompt("Q: hi\nA:\n\n", "", "yes");
        assert_eq!(ctx, "Q: hi\nA:");
        assert_eq!(cont, "\n\nyes");
        let (ctx, cont) = split_prompt("Q", " ", "no");
        assert_eq!((ctx.as_str(), cont.as_str()), ("Q", " no"));
    }

    #[test]
    fn argmax_ties_go_to_the_first_and_are_reported() {
        assert_eq!(argmax(&[-3.0, -1.0, -1.0, -2.0]), Some((1, true)));
        assert_eq!(argmax(&[-3.0, -1.0, -2.0]), Some((1, false)));
        assert_eq!(argmax(&[f64::NEG_INFINITY, -5.0]), Some((1, false)));
        assert_eq!(argmax(&[]), None);
    }
}
