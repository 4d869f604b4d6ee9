//! The fixed texts of the judge protocols that reproduce someone else's
//! scripts, and nothing else: how they are filled in is in the parent module.
//!
//! Origin: [`OFFICIAL_JUDGE_PROMPT`] and [`REPAIR_REQUEST`] are data
//! reproduced from NVIDIA's When2Call LLM-as-judge scripts
//! (`evaluation/llm_as_a_judge/run_openai_judge.py`, NVIDIA/When2Call commit
//! ecc8d42388e91ab37e7e737d48e16e8ecea3d1dc), Copyright (c) 2025 NVIDIA
//! CORPORATION, Apache License 2.0 (see `reference/when2call_llm_judge/`
//! `NOTICE.md` and `LICENSE.txt` in the shared reference directory).
//! [`SUITE_JUDGE_PROMPT`] and [`SUITE_SYSTEM`] are the Python suite's
//! (rcasaluce/when2call-api-eval-suite at f561dd5, `scripts/w2c_prompts.py`):
//! NVIDIA's judge prompt with the label `direct` for `direct_answer`, and the
//! official lm-eval task's instructions (`official_task::templates::WHEN2CALL`).
//!
//! The texts must stay byte-identical to their sources: trailing spaces are
//! significant and written out before each `\n`; one source line is one
//! string literal here. The judge prompts are kept in Python's `str.format`
//! syntax (`{}` slots, `{{`/`}}` for literal braces), as in the scripts.
//! `tests/official_judge.rs` checks every request against the scripts
//! themselves on the real test file.

/// `JUDGE_PROMPT` of `run_openai_judge.py`: three positional slots (the
/// tools, the question, the model's response).
pub const OFFICIAL_JUDGE_PROMPT: &str = concat!(
    "You are an expert at classifying responses from AI models.\n",
    "\n",
    "Your task is to classify AI model's response into one of the following four categories:\n",
    "(1) direct_answer: The AI model responded to the User's questions based on it's existing knowledge, without requesting any additional information or using external tools.\n",
    "(2) tool_call: The AI model decided to use a tool from the provided one's to help answer the question.\n",
    "(3) request_for_info: The AI model requested for some additional information from the User.\n",
    "(4) cannot_answer: The AI model refused to answer the User's questions by acknowledging the lack of required capabilities.\n",
    "\n",
    "*You should not judge whether the AI model's response is accurate or not. Only provide the classification of the response into one of these four categories: [direct_answer, tool_call, request_for_info, cannot_answer]*\n",
    "\n",
    "- The tools available to the AI model are given in <AVAILABLE_TOOLS> </AVAILABLE_TOOLS>\n",
    "- The User's question is provided in <USER_QUESTION> </USER_QUESTION>\n",
    "- The AI model's response is provided in <AI_MODEL_RESPONSE> </AI_MODEL_RESPONSE> which may or may not invlove a tool call\n",
    "\n",
    "<AVAILABLE_TOOLS>\n",
    "{}\n",
    "</AVAILABLE_TOOLS>\n",
    "\n",
    "<USER_QUESTION>\n",
    "{}\n",
    "</USER_QUESTION>\n",
    "\n",
    "<AI_MODEL_RESPONSE>\n",
    "{}\n",
    "</AI_MODEL_RESPONSE>\n",
    "\n",
    "Please provide the classification in the following json format by filling in the placeholders in < >:\n",
    "{{\"classification\": \"<one of `direct_answer`, `tool_call`, `request_for_info`, `cannot_answer`>\"}}\n",
    "\n",
    "Respond only in the prescribed json format with the placeholders filled in.",
);

/// The user turn both `run_openai_judge.py` and the Python suite add after
/// an unparseable judge reply (itself added as the assistant turn).
pub const REPAIR_REQUEST: &str =
    "Please re-write your response to be shorter and make sure it's a valid json in the prescribed format.";

/// The Python suite's `JUDGE_PROMPT` (`w2c_prompts.py`): three positional
/// slots, as [`OFFICIAL_JUDGE_PROMPT`].
pub const SUITE_JUDGE_PROMPT: &str = concat!(
    "You are an expert at classifying responses from AI models.\n",
    "\n",
    "Your task is to classify AI model's response into one of the following four categories:\n",
    "(1) direct: The AI model responded to the User's questions based on it's existing knowledge, without requesting any additional information or using external tools.\n",
    "(2) tool_call: The AI model decided to use a tool from the provided one's to help answer the question.\n",
    "(3) request_for_info: The AI model requested for some additional information from the User.\n",
    "(4) cannot_answer: The AI model refused to answer the User's questions by acknowledging the lack of required capabilities.\n",
    "\n",
    "*You should not judge whether the AI model's response is accurate or not. Only provide the classification of the response into these four categories: [direct, tool_call, request_for_info, cannot_answer]*\n",
    "\n",
    "- The tools available to the AI model are given in <AVAILABLE_TOOLS> </AVAILABLE_TOOLS>\n",
    "- The User's question is provided in <USER_QUESTION> </USER_QUESTION>\n",
    "- The AI model's response is provided in <AI_MODEL_RESPONSE> </AI_MODEL_RESPONSE> which may or may not invlove a tool call\n",
    "\n",
    "<AVAILABLE_TOOLS>\n",
    "{}\n",
    "</AVAILABLE_TOOLS>\n",
    "\n",
    "<USER_QUESTION>\n",
    "{}\n",
    "</USER_QUESTION>\n",
    "\n",
    "<AI_MODEL_RESPONSE>\n",
    "{}\n",
    "</AI_MODEL_RESPONSE>\n",
    "\n",
    "Please provide the classification in the following json format by filling in the placeholders in < >:\n",
    "{{\"classification\": \"<one of `direct`, `tool_call`, `request_for_info`, `cannot_answer`>\"}}\n",
    "\n",
    "Respond only in the prescribed json format with the placeholders filled in.",
);

/// The Python suite's target system message (`DEFAULT_SYSTEM_PROMPT`, a
/// newline, `TOOL_USE_INSTRUCTIONS`): the official lm-eval task's
/// instructions without the two newlines before the tools.
pub const SUITE_SYSTEM: &str = concat!(
    "You are a helpful AI assistant. \n",
    "You have access to the following tools described in <tool></tool> which you can use to answer the user's questions.\n",
    "Only use a tool if it directly answers the user's question.\n",
    "\n",
    "To use a tool, return JSON in the following format:\n",
    "{\"name\": \"tool_name\", \"arguments\": {\"argument1\": \"value1\", \"argument2\": \"value2\", ...}}\n",
);

/// The text replacements `run_openai_inference.py` makes, in order, over the
/// whole JSON text of each tool before parsing it.
pub const TOOL_TEXT_REPLACEMENTS: [(&str, &str); 4] = [
    ("float", "string"),
    ("integer", "string"),
    ("dict", "object"),
    ("tuple", "object"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suite_prompts_are_the_official_ones_with_its_label_names() {
        // The suite's judge prompt: NVIDIA's with `direct` for
        // `direct_answer` and "into these" for "into one of these".
        assert_eq!(
            OFFICIAL_JUDGE_PROMPT
                .replace("direct_answer", "direct")
                .replace("into one of these four", "into these four"),
            SUITE_JUDGE_PROMPT
        );
        // Its system message is the official task's head without the two
        // newlines before the tools.
        assert_eq!(
            format!("{SUITE_SYSTEM}\n\n"),
            crate::official_task::templates::WHEN2CALL.head
        );
    }
}
