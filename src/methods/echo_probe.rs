//! The capability probe of `mcq_logprob` (pure): what one echo request on a
//! small prompt in the run's chat family says about the endpoint.
//!
//! The probe prompt holds multi-byte text (accented Latin and CJK) and the
//! family's special-token markers, so its reply shows whether the endpoint
//! echoes the prompt at all, with logprobs, how it renders special tokens and
//! multi-byte characters, and whether w2c can align the echo. The runner
//! sends it before scoring, prints the verdict, keeps it in
//! `checkpoints/<ns>/probe.json`, and stops the method when the endpoint
//! cannot score prompts.

use super::logprob::{self, AlignError, TokenKind};
use crate::chat_templates::{self, ScoringTemplate};
use crate::labels::Label;
use crate::llm::CompletionReply;
use serde::{Deserialize, Serialize};

/// What the probe found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "verdict")]
pub enum Verdict {
    /// The reply does not contain the prompt: the endpoint does not echo.
    NoEcho,
    /// The prompt is echoed but without per-token logprobs.
    EchoWithoutLogprobs,
    /// The prompt is echoed with logprobs, but the reply's numbers
    /// contradict each other (offsets that do not count from the prompt's
    /// start, more generated tokens than tokens).
    Inconsistent {
        /// What is wrong.
        detail: String,
    },
    /// The echo has logprobs but w2c cannot place them on the prompt.
    Unalignable {
        /// Which token at which offset.
        detail: String,
    },
    /// The endpoint can score prompts.
    Scorable {
        /// Special-token markers in the prompt were tokenized as specials and
        /// echoed as `""` (not as their text).
        specials_not_text: bool,
        /// Multi-byte characters came back as byte pieces rendered `""`.
        partial_bytes: bool,
        /// The model's next token was end-of-generation (nothing generated).
        end_of_generation: bool,
    },
}

impl Verdict {
    /// Whether `mcq_logprob` can run on this endpoint.
    pub fn scorable(&self) -> bool {
        matches!(self, Verdict::Scorable { .. })
    }

    /// One line for the user: what was found and what works.
    pub fn message(&self, template: ScoringTemplate) -> String {
        let name = template.name();
        match self {
            Verdict::NoEcho => "no echo: the endpoint does not return the prompt's tokens (`echo: true` on /completions is ignored or unsupported); mcq_logprob needs a completions endpoint that echoes the prompt with logprobs (e.g. llama-cpp-python, vLLM)".into(),
            Verdict::EchoWithoutLogprobs => "echo without logprobs: the prompt comes back but without per-token `logprobs`; mcq_logprob needs `logprobs` with `echo` on /completions (enable them on the server if it has a switch, e.g. llama-cpp-python's `--logits_all true`)".into(),
            Verdict::Inconsistent { detail } => format!("inconsistent echo: {detail}; the endpoint's /completions reply does not follow the OpenAI format (`text_offset` counts characters from the prompt's start; `usage.completion_tokens` counts the generated tokens at the end), so mcq_logprob cannot read it"),
            Verdict::Unalignable { detail } => format!("unalignable echo: {detail}; try `template = \"when2call\"` (no special tokens) under [methods.mcq_logprob]"),
            Verdict::Scorable { specials_not_text, partial_bytes, end_of_generation } => {
                let mut parts = vec!["scorable: the endpoint echoes the prompt with logprobs".to_string()];
                if *specials_not_text {
                    parts.push(format!("special tokens not echoed as text: the `{name}` template's markers are tokenized as specials and echoed as \"\" (w2c aligns around them; `template = \"when2call\"` has none)"));
                }
                if *partial_bytes {
                    parts.push("partial-byte tokens: multi-byte characters come back as byte pieces rendered \"\" (w2c counts them with the character they complete)".into());
                }
                if *end_of_generation {
                    parts.push("end-of-generation: nothing was generated and completion_tokens was 0 (handled)".into());
                }
                parts.join("; ")
            }
        }
    }
}

/// The probe's prompt for a template: [`chat_templates::specimen`] (a tool,
/// a question and answers with multi-byte text) rendered in the template,
/// with its `cannot_answer` choice ("好的，café。") as the continuation.
pub fn prompt(template: ScoringTemplate) -> String {
    let choice = Label::CannotAnswer.index();
    let (context, answer) = match template.render(&chat_templates::specimen()) {
        Ok(p) => (p.context, p.choices[choice].clone()),
        // Every template renders the specimen (a unit test checks it).
        Err(e) => (e.to_string(), String::new()),
    };
    let (ctx, cont) = logprob::split_prompt(&context, "", &answer);
    format!("{ctx}{cont}")
}

/// The verdict for the probe prompt's reply.
pub fn verdict(prompt: &str, reply: &CompletionReply) -> Verdict {
    let echoed = reply.text.starts_with(prompt);
    let Some(lp) = reply.logprobs.as_ref() else {
        return if echoed {
            Verdict::EchoWithoutLogprobs
        } else {
            Verdict::NoEcho
        };
    };
    let completion = reply.usage.completion_tokens as usize;
    match logprob::align(prompt, Some(lp), completion) {
        Ok(spans) => Verdict::Scorable {
            specials_not_text: spans.iter().any(|s| s.kind == TokenKind::Special),
            partial_bytes: spans
                .iter()
                .any(|s| matches!(s.kind, TokenKind::Partial | TokenKind::MidChar)),
            end_of_generation: completion == 0,
        },
        // The text echoes the prompt and the logprobs have tokens before
        // the generated ones, but their offsets start past the prompt's
        // end: the echo is there, its offsets are shifted (not an echo
        // without logprobs).
        Err(AlignError::NoEcho {
            tokens,
            completion_tokens,
            first_offset: Some(first_offset),
        }) if echoed && tokens > completion_tokens => Verdict::Inconsistent {
            detail: AlignError::ShiftedOffsets {
                first_offset,
                prompt: prompt.chars().count(),
            }
            .to_string(),
        },
        // The text echoes the prompt but the logprobs cover only what was
        // generated.
        Err(AlignError::NoEcho { .. }) if echoed => Verdict::EchoWithoutLogprobs,
        Err(AlignError::NoEcho { .. }) => Verdict::NoEcho,
        Err(AlignError::NoLogprobs) => Verdict::EchoWithoutLogprobs,
        Err(
            e @ (AlignError::ShiftedOffsets { .. }
            | AlignError::CompletionTokensBeyondReply { .. }
            | AlignError::RaggedArrays { .. }),
        ) => Verdict::Inconsistent {
            detail: e.to_string(),
        },
        Err(e) => Verdict::Unalignable {
            detail: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat_templates::Family;
    use crate::llm::llama_echo::{self, Piece};
    use crate::llm::{mock, Usage};
    use crate::official_task::OfficialVariant;

    fn reply_of(prompt: &str, generated: &[&str]) -> CompletionReply {
        let gen: Vec<Piece> = generated
            .iter()
            .map(|g| Piece::bytes(g.as_bytes()))
            .collect();
        let (lp, (p, c)) = llama_echo::echo(&llama_echo::tokenize(prompt), &gen, |_| -1.0);
        CompletionReply {
            text: format!("{prompt}{}", generated.concat()),
            logprobs: Some(lp),
            usage: Usage {
                prompt_tokens: p,
                completion_tokens: c,
            },
            http_status: 200,
            usage_anomaly: None,
        }
    }

    #[test]
    fn verdicts() {
        let hermes = prompt(ScoringTemplate::W2c(Family::Hermes));
        assert_eq!(
            verdict(&hermes, &reply_of(&hermes, &[])),
            Verdict::Scorable {
                specials_not_text: true,
                partial_bytes: true,
                end_of_generation: true
            }
        );
        let plain = prompt(ScoringTemplate::Official(OfficialVariant::When2call));
        let simple = mock::completion(&plain, true, true, 1, 7);
        assert_eq!(
            verdict(&plain, &simple),
            Verdict::Scorable {
                specials_not_text: false,
                partial_bytes: false,
                end_of_generation: false
            }
        );
        let no_echo = mock::completion(&plain, false, true, 1, 7);
        assert_eq!(verdict(&plain, &no_echo), Verdict::NoEcho);
        let mut no_lp = simple.clone();
        no_lp.logprobs = None;
        assert_eq!(verdict(&plain, &no_lp), Verdict::EchoWithoutLogprobs);
        let mut broken = reply_of(&plain, &[" x"]);
        if let Some(lp) = broken.logprobs.as_mut() {
            lp.tokens[3] = "zzz".into();
        }
        let v = verdict(&plain, &broken);
        assert!(
            matches!(v, Verdict::Unalignable { ref detail } if detail.contains("token 3")),
            "{v:?}"
        );
        assert!(v
            .message(ScoringTemplate::W2c(Family::Hermes))
            .contains("template = \"when2call\""));
        assert!(Verdict::EchoWithoutLogprobs
            .message(ScoringTemplate::W2c(Family::Default))
            .contains("logits_all"));
        // An echo whose offsets are shifted, or whose usage claims more
        // generated tokens than it returned, is named as what it is.
        let mut shifted = simple.clone();
        if let Some(lp) = shifted.logprobs.as_mut() {
            lp.text_offset.iter_mut().for_each(|o| *o += 3);
        }
        let v = verdict(&plain, &shifted);
        assert!(
            matches!(v, Verdict::Inconsistent { ref detail } if detail.contains("`text_offset` starts at 3, not 0")),
            "{v:?}"
        );
        // Shifted far past the prompt's end (issue 29: reported as an echo
        // without logprobs, although they are there).
        let mut far = simple.clone();
        if let Some(lp) = far.logprobs.as_mut() {
            lp.text_offset.iter_mut().for_each(|o| *o += 1_000_000);
        }
        let v = verdict(&plain, &far);
        assert!(
            matches!(v, Verdict::Inconsistent { ref detail } if detail.contains("`text_offset` starts at 1000000, not 0")),
            "{v:?}"
        );
        let mut counted = simple.clone();
        counted.usage.completion_tokens = 1_000_000;
        let v = verdict(&plain, &counted);
        assert!(
            matches!(v, Verdict::Inconsistent { ref detail } if detail.contains("1000000")),
            "{v:?}"
        );
        assert!(v
            .message(ScoringTemplate::W2c(Family::Default))
            .starts_with("inconsistent echo"));
        // Text echoed, logprobs of the generated token only.
        let mut gen_only = no_echo.clone();
        gen_only.text = format!("{plain} the");
        assert_eq!(verdict(&plain, &gen_only), Verdict::EchoWithoutLogprobs);
        // Every template renders the probe's specimen, with its multi-byte
        // answer as the continuation.
        for t in ScoringTemplate::all() {
            let p = prompt(t);
            assert!(p.ends_with("好的，café。"), "{}: {p}", t.name());
            assert!(p.contains("Zürich"), "{}", t.name());
        }
    }
}
