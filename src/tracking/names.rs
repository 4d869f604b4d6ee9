//! What runs are called and say about themselves in MLflow: names that
//! keep what tells rows apart (the method, the model) at the front, where
//! the UI's truncated name column still shows it, and the runs'
//! descriptions (`mlflow.note.content`).

/// The part of a model name that tells models apart: after the last `/`
/// (`meta-llama/Llama-3.1-8B-Instruct` → `Llama-3.1-8B-Instruct`), at most
/// 40 characters.
pub fn model_short(model: &str) -> String {
    let tail = model.rsplit('/').next().unwrap_or(model);
    let tail = if tail.is_empty() { model } else { tail };
    tail.chars().take(40).collect()
}

/// A namespace in a few characters: `judge` for `llm_judge`, `logprob`,
/// `stab-mcq T0.7 k5` for `stability_mcq_k=5_T=0.7`, a settings suffix
/// `~3f2a1b` cut to 6 digits.
pub fn namespace_label(ns: &str) -> String {
    let (body, suffix) = match ns.split_once('~') {
        Some((b, h)) => (b, format!("~{}", h.chars().take(6).collect::<String>())),
        None => (ns, String::new()),
    };
    let (body, target) = match body.strip_suffix(".target") {
        Some(b) => (b, ".target"),
        None => (body, ""),
    };
    let mut label = body
        .replacen("stability_llm_judge", "stab-judge", 1)
        .replacen("stability_mcq", "stab-mcq", 1)
        .replacen("mcq_logprob", "logprob", 1)
        .replacen("llm_judge", "judge", 1);
    // `_k=5_T=0.7` → ` T0.7 k5`
    if let Some(i) = label.find("_k=") {
        let rest = label[i + 3..].to_string();
        if let Some((k, t)) = rest.split_once("_T=") {
            label = format!("{} T{t} k{k}", &label[..i]);
        }
    }
    format!("{label}{target}{suffix}")
}

/// A child run's name: `judge · Llama-3.1-8B-Instruct / gpt-4o`.
pub fn child_name(ns: &str, target: &str, judge: Option<&str>) -> String {
    let mut name = format!("{} · {}", namespace_label(ns), model_short(target));
    if let Some(j) = judge {
        name.push_str(&format!(" / {}", model_short(j)));
    }
    name
}

/// The parent run's name: `Llama-3.1-8B-Instruct · <run key>-<fp8>`.
pub fn parent_name(target: &str, run_key: &str, fingerprint: &str) -> String {
    format!(
        "{} · {run_key}-{}",
        model_short(target),
        crate::fingerprint::prefix(fingerprint, 8)
    )
}

/// What a method's child run is, in one sentence.
pub fn describe(method: &str) -> &'static str {
    match method {
        "mcq" => "multiple choice: the model picks one of four candidate replies by letter; metrics score the parsed letter",
        "llm_judge.target" => "the target model's free replies to each example, which the judge then classifies (no metrics of its own)",
        "llm_judge" => "the target model replies freely and a judge model classifies each reply as direct, tool_call, request_for_info or cannot_answer",
        "mcq_logprob" => "the When2Call paper's log-probability MCQ: each candidate reply is scored by the model's log-probabilities (acc, acc_norm, per bytes, per tokens)",
        "stability_mcq" => "stability sweep of mcq: each example repeated K times at one temperature; consistency and accuracy across repeats",
        "stability_llm_judge" | "stability_llm_judge.target" => "stability sweep of llm_judge: each example repeated K times at one temperature; consistency and accuracy across repeats",
        _ => "a w2c method namespace",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lead_with_what_tells_runs_apart() {
        assert_eq!(
            model_short("meta-llama/Llama-3.1-8B-Instruct"),
            "Llama-3.1-8B-Instruct"
        );
        assert_eq!(model_short("gpt-4o"), "gpt-4o");
        assert_eq!(namespace_label("mcq"), "mcq");
        assert_eq!(namespace_label("llm_judge.target"), "judge.target");
        assert_eq!(
            namespace_label("stability_llm_judge_k=2_T=0.7"),
            "stab-judge T0.7 k2"
        );
        assert_eq!(
            namespace_label("stability_llm_judge_k=2_T=0.7.target"),
            "stab-judge T0.7 k2.target"
        );
        assert_eq!(namespace_label("mcq~0123456789ab"), "mcq~012345");
        assert_eq!(
            child_name("llm_judge", "org/m1", Some("j1")),
            "judge · m1 / j1"
        );
        assert_eq!(
            parent_name("m1", "demo", &"ab".repeat(32)),
            "m1 · demo-abababab"
        );
    }
}
