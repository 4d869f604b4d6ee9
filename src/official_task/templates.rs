//! The fixed texts of the official When2Call lm-eval task prompts, one
//! [`Template`] per variant, and nothing else: how they are filled in is in
//! the parent module.
//!
//! Origin: the instruction texts below are data reproduced from NVIDIA's
//! When2Call lm-evaluation-harness task (`utils.py`, NVIDIA/When2Call commit
//! ecc8d42388e91ab37e7e737d48e16e8ecea3d1dc), Copyright (c) 2025 NVIDIA
//! CORPORATION, Apache License 2.0 (see `reference/when2call_lm_eval/NOTICE.md`
//! and `LICENSE.txt` in the shared reference directory). They must stay
//! byte-identical to the reference: trailing spaces are significant and are
//! written out before each `\n`; one source line of the reference is one
//! string literal here. `tests/official_prompts.rs` checks every byte against
//! the reference on the real test file.

use serde::Serialize;

/// How the list of tools (each a JSON text) becomes the text between a
/// template's `head` and `middle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum ToolsStyle {
    /// Each tool's text as is, between `before` and `after`, the items
    /// joined with `separator` (nothing for no tools).
    Joined {
        /// Text before each tool.
        before: &'static str,
        /// Text after each tool.
        after: &'static str,
        /// Text between two tools.
        separator: &'static str,
    },
    /// Python's `json.dumps` of the list of parsed tools.
    JsonList,
    /// The tools joined with newlines, then Python's `str.strip()`.
    LinesStripped,
    /// Python's `str()` of the list of tool texts (each in `repr` quotes).
    PythonListRepr,
    /// Per tool: `before_name`, `str(tool["name"])`, `between`,
    /// `str(tool["description"])`, `after_description`, the tool's text,
    /// `after_tool`.
    DescribedBlocks {
        /// Text before the tool's name.
        before_name: &'static str,
        /// Text between the name and the description.
        between: &'static str,
        /// Text after the description.
        after_description: &'static str,
        /// Text after the tool's JSON text.
        after_tool: &'static str,
    },
}

/// How the `tool_call` candidate answer (a JSON text) becomes its choice.
/// The other three answers are always used as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum ToolCallStyle {
    /// The answer's text as is, between `before` and `after`.
    Wrapped {
        /// Text before the answer.
        before: &'static str,
        /// Text after the answer.
        after: &'static str,
    },
    /// `[name(key="str value", key=<str() of other values>)]`.
    PythonicCall,
    /// `<function=name>{"key": "<json.dumps(value)>", ...}</function>`
    /// (arguments from `arguments`, else `parameters`).
    FunctionTag,
}

/// One variant's prompt: `head`, the rendered tools, `middle`, the question,
/// `tail`; and the rule for its `tool_call` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Template {
    /// Text before the tools.
    pub head: &'static str,
    /// How the tools are rendered.
    pub tools: ToolsStyle,
    /// Text between the tools and the question.
    pub middle: &'static str,
    /// Text after the question.
    pub tail: &'static str,
    /// How the `tool_call` answer is rendered.
    pub tool_call: ToolCallStyle,
}

const VERBATIM: ToolCallStyle = ToolCallStyle::Wrapped {
    before: "",
    after: "",
};

/// Task `when2call` (`process_docs_default`).
pub const WHEN2CALL: Template = Template {
    head: concat!(
        "You are a helpful AI assistant. \n",
        "You have access to the following tools described in <tool></tool> which you can use to answer the user's questions.\n",
        "Only use a tool if it directly answers the user's question.\n",
        "\n",
        "To use a tool, return JSON in the following format:\n",
        "{\"name\": \"tool_name\", \"arguments\": {\"argument1\": \"value1\", \"argument2\": \"value2\", ...}}\n",
        "\n",
        "\n",
    ),
    tools: ToolsStyle::Joined {
        before: "<tool>",
        after: "</tool>",
        separator: "\n\n",
    },
    middle: "\n\n",
    tail: "",
    tool_call: VERBATIM,
};

/// Task `when2call-llama3_2` (`process_docs_llama3_2`).
pub const LLAMA3_2: Template = Template {
    head: concat!(
        "<|start_header_id|>system<|end_header_id|>\n",
        "\n",
        "You are an expert in composing functions. You are given a question and a set of possible functions. \n",
        "Based on the question, you will need to make one or more function/tool calls to achieve the purpose. \n",
        "If none of the functions can be used, point it out. If the given question lacks the parameters required by the function,also point it out. You should only return the function call in tools call sections.\n",
        "If you decide to invoke any of the function(s), you MUST put it in the format of [func_name1(params_name1=params_value1, params_name2=params_value2...), func_name2(params)]\n",
        "You SHOULD NOT include any other text in the response.\n",
        "Here is a list of functions in JSON format that you can invoke.\n",
    ),
    tools: ToolsStyle::JsonList,
    middle: concat!(
        "<|eot_id|><|start_header_id|>user<|end_header_id|>\n",
        "\n",
    ),
    tail: concat!(
        "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n",
        "\n",
    ),
    tool_call: ToolCallStyle::PythonicCall,
};

/// Task `when2call-qwen2_5` (`process_docs_qwen2_5`).
pub const QWEN2_5: Template = Template {
    head: concat!(
        "<|im_start|>system\n",
        "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n",
        "\n",
        "# Tools\n",
        "\n",
        "You may call one or more functions to assist with the user query.\n",
        "\n",
        "You are provided with function signatures within <tools></tools> XML tags:\n",
        "<tools>\n",
    ),
    tools: ToolsStyle::LinesStripped,
    middle: concat!(
        "\n",
        "</tools>\n",
        "\n",
        "For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n",
        "<tool_call>\n",
        "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n",
        "</tool_call><|im_end|>\n",
        "<|im_start|>user\n",
    ),
    tail: concat!("<|im_end|>\n", "<|im_start|>assistant\n"),
    tool_call: VERBATIM,
};

/// Task `when2call-xlam` (`process_docs_xlam`). The reference strips only the
/// ends of its indented instruction blocks, so their inner lines keep four
/// leading spaces.
pub const XLAM: Template = Template {
    head: concat!(
        "[BEGIN OF TASK INSTRUCTION]\n",
        "You are an expert in composing functions. You are given a question and a set of possible functions. \n",
        "    Based on the question, you will need to make one or more function/tool calls to achieve the purpose. \n",
        "    If none of the functions can be used, point it out and refuse to answer. \n",
        "    If the given question lacks the parameters required by the function, also point it out.\n",
        "[END OF TASK INSTRUCTION]\n",
        "\n",
        "[BEGIN OF AVAILABLE TOOLS]\n",
    ),
    tools: ToolsStyle::PythonListRepr,
    middle: concat!(
        "\n",
        "[END OF AVAILABLE TOOLS]\n",
        "\n",
        "[BEGIN OF FORMAT INSTRUCTION]\n",
        "The output MUST strictly adhere to the following JSON format, and NO other text MUST be included.\n",
        "    The example format is as follows. Please make sure the parameter type is correct. If no function call is needed, please make tool_calls an empty list '[]'.\n",
        "    ```\n",
        "    {\n",
        "        \"tool_calls\": [\n",
        "        {\"name\": \"func_name1\", \"arguments\": {\"argument1\": \"value1\", \"argument2\": \"value2\"}},\n",
        "        ... (more tool calls as required)\n",
        "        ]\n",
        "    }\n",
        "    ```\n",
        "[END OF FORMAT INSTRUCTION]\n",
        "\n",
        "[BEGIN OF QUERY]\n",
    ),
    tail: concat!("\n", "[END OF QUERY]\n", "\n"),
    tool_call: ToolCallStyle::Wrapped {
        before: "{\n\t\"tool_calls\": [\n\t",
        after: "\n\t]\n}",
    },
};

/// Task `when2call-hermes` (`process_docs_hermes`). The prompt ends after the
/// user's turn, with no assistant header.
pub const HERMES: Template = Template {
    head: concat!(
        "<|im_start|>system\n",
        "You are a function calling AI model. You are provided with function signatures within <tools></tools> XML tags. You may call one or more functions to assist with the user query. Don't make assumptions about what values to plug into functions. Here are the available tools: ",
        "<tools> ",
    ),
    tools: ToolsStyle::Joined {
        before: "",
        after: "",
        separator: " ",
    },
    middle: concat!(
        " </tools> ",
        "Use the following pydantic model json schema for each tool call you will make: {\"properties\": {\"arguments\": {\"title\": \"Arguments\", \"type\": \"object\"}, \"name\": {\"title\": \"Name\", \"type\": \"string\"}}, \"required\": [\"arguments\", \"name\"], \"title\": \"FunctionCall\", \"type\": \"object\"} For each function call return a json object with function name and arguments within <tool_call></tool_call> XML tags as follows:\n",
        "<tool_call>\n",
        "{\"arguments\": <args-dict>, \"name\": <function-name>}\n",
        "</tool_call><|im_end|>",
        "<|im_start|>user\n",
    ),
    tail: "<|im_end|>",
    tool_call: ToolCallStyle::Wrapped {
        before: "<tool_call>",
        after: "\n</tool_call>",
    },
};

/// Task `when2call-functionary` (`process_docs_functionary`).
pub const FUNCTIONARY: Template = Template {
    head: concat!(
        "<|start_header_id|>system<|end_header_id|>\n",
        "\n",
        "Environment: ipython\n",
        "\n",
        "Cutting Knowledge Date: December 2023\n",
        "\n",
        "\n",
        "You have access to the following functions:\n",
    ),
    tools: ToolsStyle::DescribedBlocks {
        before_name: "Use the function '",
        between: "' to '",
        after_description: "'\n",
        after_tool: "\n\n",
    },
    middle: concat!(
        "\n",
        "Think very carefully before calling functions.\n",
        "If a you choose to call a function ONLY reply in the following format:\n",
        "<{start_tag}={function_name}>{parameters}{end_tag}\n",
        "where\n",
        "\n",
        "start_tag => `<function`\n",
        "parameters => a JSON dict with the function argument name as key and function argument value as value.\n",
        "end_tag => `</function>`\n",
        "\n",
        "Here is an example,\n",
        "<function=example_function_name>{\"example_name\": \"example_value\"}</function>\n",
        "\n",
        "Reminder:\n",
        "- If looking for real time information use relevant functions before falling back to brave_search\n",
        "- Function calls MUST follow the specified format, start with <function= and end with </function>\n",
        "- Required parameters MUST be specified\n",
        "- Only call one function at a time\n",
        "- Put the entire function call reply on one line\n",
        "\n",
        "<|eot_id|>",
        "<|start_header_id|>user<|end_header_id|>\n",
        "\n",
    ),
    tail: concat!(
        "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n",
        "\n",
    ),
    tool_call: ToolCallStyle::FunctionTag,
};
