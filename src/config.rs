//! Evaluation config: the TOML schema, loading with precise errors, and
//! resolution of paths and the RUN_KEY.
//!
//! Secrets never live here: a provider names the environment variable that
//! holds its key (`api_key_env`). Relative paths are resolved against the
//! directory of the config file, so a config works from any working directory.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A method w2c knows how to run, as named in `[methods] enabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MethodKind {
    /// Multiple-choice question, the model names an option.
    Mcq,
    /// Free answer with the dataset's tools, classified by a judge model.
    LlmJudge,
    /// The four answers scored by log-probability.
    McqLogprob,
    /// `mcq` repeated K times per temperature.
    StabilityMcq,
    /// `llm_judge` repeated K times per temperature.
    StabilityLlmJudge,
}

impl MethodKind {
    /// Every method, in documentation order.
    pub const ALL: [MethodKind; 5] = [
        MethodKind::Mcq,
        MethodKind::LlmJudge,
        MethodKind::McqLogprob,
        MethodKind::StabilityMcq,
        MethodKind::StabilityLlmJudge,
    ];

    /// The name used in configs, namespaces and MLflow.
    pub fn as_str(self) -> &'static str {
        match self {
            MethodKind::Mcq => "mcq",
            MethodKind::LlmJudge => "llm_judge",
            MethodKind::McqLogprob => "mcq_logprob",
            MethodKind::StabilityMcq => "stability_mcq",
            MethodKind::StabilityLlmJudge => "stability_llm_judge",
        }
    }

    /// Whether the method needs a judge model.
    pub fn uses_judge(self) -> bool {
        matches!(self, MethodKind::LlmJudge | MethodKind::StabilityLlmJudge)
    }
}

impl std::fmt::Display for MethodKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for MethodKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        MethodKind::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = MethodKind::ALL.iter().map(|m| m.as_str()).collect();
                format!("unknown method `{s}` (known: {known:?})")
            })
    }
}

/// `enabled = [...]`: method names, each error naming its index.
fn method_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<MethodKind>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            name.parse()
                .map_err(|e| serde::de::Error::custom(format!("key `methods.enabled[{i}]`: {e}")))
        })
        .collect()
}

/// The whole evaluation config, as written in TOML (after path resolution).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where outputs go and how the run is named.
    #[serde(default)]
    pub run: RunConfig,
    /// The When2Call dataset and the subsample to evaluate.
    pub dataset: DatasetConfig,
    /// The model under evaluation and the judge (a campaign names its
    /// models in `[[targets]]` and may leave this out).
    #[serde(default)]
    pub models: ModelsConfig,
    /// Named model endpoints.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Which methods run, and their settings.
    pub methods: MethodsConfig,
    /// Optional prices by model name, for cost accounting.
    #[serde(default)]
    pub prices: BTreeMap<String, Price>,
    /// MLflow tracking (`MLFLOW_TRACKING_URI` and `MLFLOW_EXPERIMENT_NAME`
    /// take precedence).
    #[serde(default)]
    pub tracking: TrackingConfig,
    /// A campaign's models (`[[targets]]`): one session each, instead of
    /// `models.target`. Empty in a session's own (stored) config.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetConfig>,
}

/// `[[targets]]`: one model of a campaign, evaluated in its own session
/// with the rest of the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Model name as the provider knows it.
    pub model: String,
    /// Provider name; when absent chosen by `model_prefixes`.
    #[serde(default)]
    pub provider: Option<String>,
    /// This model's `methods.mcq_logprob.template` (e.g. its chat family).
    #[serde(default)]
    pub template: Option<String>,
}

/// `[tracking]`: where the session is mirrored in MLflow.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingConfig {
    /// Tracking server URL, e.g. `http://127.0.0.1:5000` (no credentials:
    /// use `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`).
    pub uri: Option<String>,
    /// Experiment name (default `when2call`).
    pub experiment: Option<String>,
    /// One MLflow trace per example with its calls and assessments
    /// (default on; `false` for aggregates and files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traces: Option<bool>,
    /// Which examples get a trace: `all` (default), `problems` (wrong,
    /// unparsed or unscored, or with a warning or error audit event) or
    /// `sample:<fraction>` (the same examples in every session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_examples: Option<String>,
}

/// `[prices."<model>"]`: USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// USD per million prompt tokens.
    pub prompt_per_mtok: f64,
    /// USD per million completion tokens.
    pub completion_per_mtok: f64,
}

/// `[run]`: output location, RUN_KEY and the API seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Name of the run folder under `runs_dir`; see [`resolve_run_key`].
    #[serde(default)]
    pub run_key: Option<String>,
    /// Directory that holds `<RUN_KEY>/sessions/...` (default `runs`).
    #[serde(default = "default_runs_dir")]
    pub runs_dir: PathBuf,
    /// Seed sent with every request (`seed`) and used by the mock provider.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// The campaign a session belongs to (`[[targets]]` configs; default:
    /// the config file's name). Recorded, never part of the fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    /// Number of shards a run with `--shard` (index from the job engine)
    /// splits the session into, when neither `--shards` nor the session's
    /// plan says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<usize>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            run_key: None,
            runs_dir: default_runs_dir(),
            seed: default_seed(),
            campaign: None,
            shards: None,
        }
    }
}

fn default_runs_dir() -> PathBuf {
    PathBuf::from("runs")
}

fn default_seed() -> u64 {
    42
}

/// `[dataset]`: the JSONL file and the stratified subsample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// When2Call JSONL file.
    pub path: PathBuf,
    /// Examples per gold label; absent means the whole file.
    #[serde(default)]
    pub n_per_label: Option<usize>,
    /// Seed of the stratified subsample.
    #[serde(default = "default_subsample_seed")]
    pub subsample_seed: u64,
}

fn default_subsample_seed() -> u64 {
    11
}

/// `[models]`: the target model and how it is routed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    /// Model name as the provider knows it (a campaign names its models in
    /// `[[targets]]` instead).
    #[serde(default)]
    pub target: String,
    /// Provider name; when absent the provider is chosen by `model_prefixes`.
    #[serde(default)]
    pub target_provider: Option<String>,
    /// Judge model for `llm_judge` (required when that method is enabled).
    #[serde(default)]
    pub judge: Option<String>,
    /// Provider of the judge; when absent chosen by `model_prefixes`.
    #[serde(default)]
    pub judge_provider: Option<String>,
}

/// The kind of endpoint a provider is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// Built-in deterministic dry-run model; no network.
    Mock,
    /// Any OpenAI-compatible HTTP API.
    Openai,
}

/// `[providers.<name>]`: one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// `mock` or `openai`.
    pub kind: ProviderKind,
    /// Base URL, e.g. `https://api.openai.com/v1` (openai only).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Several endpoints serving the same model (replicas without a load
    /// balancer), instead of `base_url`: each a URL or `{ url, max_concurrency }`.
    /// Requests go to the least-loaded healthy one; `max_concurrency` is then
    /// per endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub base_urls: Vec<EndpointConfig>,
    /// Name of the environment variable holding the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Models whose name starts with one of these go to this provider.
    #[serde(default)]
    pub model_prefixes: Vec<String>,
    /// Most requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
    /// Request timeout in seconds (whole request, body included).
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
    /// Largest reply body read, bytes; a longer reply fails that attempt.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
    /// Attempts per request before the item is recorded as an error.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Requests-per-minute budget (absent = unlimited).
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    /// Tokens-per-minute budget, estimated from prompt size and `max_tokens`.
    #[serde(default)]
    pub tokens_per_minute: Option<u32>,
    /// Extra HTTP headers with non-secret values (stored in the manifest).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Extra HTTP headers whose values come from environment variables
    /// (header name → variable name); the values never reach disk.
    #[serde(default)]
    pub headers_env: BTreeMap<String, String>,
    /// Mock only: simulated latency per request, milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    /// Mock only: share of attempts that fail with a transient error.
    #[serde(default)]
    pub fail_rate: f64,
    /// Mock only: how the mock judge answers (`strict`, as a real judge
    /// answers NVIDIA's prompt; `varied`, styles that exercise the repair
    /// turn and `invalid`).
    #[serde(
        default,
        skip_serializing_if = "crate::llm::mock::JudgeReplies::is_default"
    )]
    pub judge_replies: crate::llm::mock::JudgeReplies,
}

fn default_concurrency() -> usize {
    8
}

/// One endpoint of `base_urls`: a URL, or a URL with its own concurrency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EndpointConfig {
    /// `"http://10.0.0.5:8000/v1"`.
    Url(String),
    /// `{ url = "...", max_concurrency = 16 }`.
    WithLimit {
        /// The endpoint's base URL.
        url: String,
        /// Most requests in flight to it (else the provider's `max_concurrency`).
        #[serde(default)]
        max_concurrency: Option<usize>,
    },
}

impl EndpointConfig {
    /// The endpoint's base URL.
    pub fn url(&self) -> &str {
        match self {
            EndpointConfig::Url(u) | EndpointConfig::WithLimit { url: u, .. } => u,
        }
    }

    /// Its own concurrency, if set.
    pub fn max_concurrency(&self) -> Option<usize> {
        match self {
            EndpointConfig::Url(_) => None,
            EndpointConfig::WithLimit {
                max_concurrency, ..
            } => *max_concurrency,
        }
    }
}

/// The environment variable that replaces provider `name`'s endpoints for
/// one process (`W2C_BASE_URLS_<NAME>`, the name upper-cased with other
/// characters as `_`): comma-separated URLs, e.g. each node's own server in
/// a job array.
pub fn endpoints_env_var(name: &str) -> String {
    let upper: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("W2C_BASE_URLS_{upper}")
}

fn default_timeout() -> f64 {
    60.0
}

fn default_max_attempts() -> u32 {
    4
}

/// Default of `max_response_bytes`: 4 MiB, far above any chat reply.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 4 << 20;

fn default_max_response_bytes() -> u64 {
    DEFAULT_MAX_RESPONSE_BYTES
}

/// Accepted range of `timeout_secs`.
pub const TIMEOUT_SECS_RANGE: std::ops::RangeInclusive<f64> = 0.001..=86_400.0;
/// Accepted range of `max_response_bytes` (1 KiB to 1 GiB).
pub const MAX_RESPONSE_BYTES_RANGE: std::ops::RangeInclusive<u64> = 1024..=(1 << 30);
/// Accepted range of `max_concurrency`.
pub const MAX_CONCURRENCY_RANGE: std::ops::RangeInclusive<usize> = 1..=4096;
/// Accepted range of `max_attempts`.
pub const MAX_ATTEMPTS_RANGE: std::ops::RangeInclusive<u32> = 1..=100;
/// Accepted range of a price, USD per million tokens: ten times the
/// dearest model's list price leaves room; `inf` or `1e300` is a typo.
pub const PRICE_RANGE: std::ops::RangeInclusive<f64> = 0.0..=10_000.0;
/// Accepted range of a mock provider's `latency_ms` (up to one day).
pub const LATENCY_MS_RANGE: std::ops::RangeInclusive<u64> = 0..=86_400_000;

/// `[methods]`: which methods run and their settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodsConfig {
    /// Methods to run, in order.
    #[serde(deserialize_with = "method_list")]
    pub enabled: Vec<MethodKind>,
    /// Settings of the `mcq` method.
    #[serde(default)]
    pub mcq: McqConfig,
    /// Settings of the `llm_judge` method.
    #[serde(default)]
    pub llm_judge: LlmJudgeConfig,
    /// Settings of the `stability_*` sweeps.
    #[serde(default)]
    pub stability: StabilityConfig,
    /// Settings of the `mcq_logprob` method.
    #[serde(default)]
    pub mcq_logprob: McqLogprobConfig,
}

/// `[methods.mcq_logprob]`: log-probability scoring of the four answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McqLogprobConfig {
    /// The scored prompt: an official task name (`when2call`, the default,
    /// `when2call-hermes`, ...) or one of w2c's families (`w2c-default`, ...;
    /// a bare family name is accepted as before). `null`, which only a
    /// stored config can hold (sessions created before the official
    /// prompts), means w2c's family chosen from the model name, as then.
    #[serde(default = "default_scoring_template")]
    pub template: Option<String>,
    /// Target delimiter between prompt and answer (official When2Call: empty).
    #[serde(default)]
    pub delimiter: String,
    /// What to do with an example whose prompt exceeds the server's context:
    /// `none` (it is unscored) or `left` (drop the context's oldest words).
    #[serde(default)]
    pub truncation: Truncation,
    /// The server's context window in tokens (required with `truncation = "left"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_context_tokens: Option<u32>,
}

impl Default for McqLogprobConfig {
    fn default() -> Self {
        McqLogprobConfig {
            template: default_scoring_template(),
            delimiter: String::new(),
            truncation: Truncation::None,
            max_context_tokens: None,
        }
    }
}

fn default_scoring_template() -> Option<String> {
    Some(crate::chat_templates::DEFAULT_TEMPLATE.to_string())
}

/// Context truncation for `mcq_logprob`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Truncation {
    /// Never truncate: an over-long example is unscored.
    #[default]
    None,
    /// Drop whole words from the start of the context until the longest
    /// choice fits (the same cut for all four choices).
    Left,
}

/// How each repetition of a sweep is seeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeedMode {
    /// Repetition r sends `seed + r`, so samples at T > 0 can differ.
    PerRepeat,
    /// Every repetition sends the run seed.
    Fixed,
}

/// `[methods.stability]`: K repetitions per example at each temperature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StabilityConfig {
    /// Repetitions per example (K).
    #[serde(default = "default_k")]
    pub k: u32,
    /// One sweep namespace per temperature.
    #[serde(default = "default_temperatures")]
    pub temperatures: Vec<f64>,
    /// Seeding of the repetitions.
    #[serde(default = "default_seed_mode")]
    pub seed_mode: SeedMode,
}

impl Default for StabilityConfig {
    fn default() -> Self {
        StabilityConfig {
            k: default_k(),
            temperatures: default_temperatures(),
            seed_mode: default_seed_mode(),
        }
    }
}

fn default_k() -> u32 {
    5
}

fn default_temperatures() -> Vec<f64> {
    vec![0.0, 0.7]
}

fn default_seed_mode() -> SeedMode {
    SeedMode::PerRepeat
}

/// How tools are shown to the target model in `llm_judge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolsMode {
    /// As text in the system prompt (`{{tools}}` in the target template).
    Text,
    /// As native OpenAI `tools` in the request.
    Native,
}

/// `[methods.llm_judge]`: target answers, a judge classifies, under a
/// protocol ([`crate::judge_protocol::Protocol`]). The prompt, tools and
/// sampling keys are the `w2c` protocol's; `python-suite` takes the
/// sampling keys (its defaults are the suite's), `when2call` none of them
/// (NVIDIA's scripts send no sampling parameters).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmJudgeConfig {
    /// The protocol: `when2call` (the default), `python-suite` or `w2c`.
    /// `null`, which only a stored config can hold (sessions created before
    /// protocols), means `w2c`, as then.
    #[serde(default = "default_judge_protocol")]
    pub protocol: Option<JudgeProtocol>,
    /// Target prompt template (`builtin:target_v1` or `file:<path>`; `w2c` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_prompt: Option<String>,
    /// Judge prompt template (`builtin:judge_v1` or `file:<path>`; `w2c` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_prompt: Option<String>,
    /// How tools reach the target (`w2c` only; default `text`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools_mode: Option<ToolsMode>,
    /// Target sampling temperature (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_temperature: Option<f64>,
    /// Target completion budget (default 512; reasoning models need more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_max_tokens: Option<u32>,
    /// Judge sampling temperature (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_temperature: Option<f64>,
    /// Judge completion budget (default 256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_max_tokens: Option<u32>,
}

pub use crate::judge_protocol::Protocol as JudgeProtocol;

impl Default for LlmJudgeConfig {
    fn default() -> Self {
        LlmJudgeConfig {
            protocol: default_judge_protocol(),
            target_prompt: None,
            judge_prompt: None,
            tools_mode: None,
            target_temperature: None,
            target_max_tokens: None,
            judge_temperature: None,
            judge_max_tokens: None,
        }
    }
}

fn default_judge_protocol() -> Option<JudgeProtocol> {
    Some(JudgeProtocol::DEFAULT)
}

impl LlmJudgeConfig {
    /// The protocol in effect (`w2c` for a stored config from before protocols).
    pub fn protocol(&self) -> JudgeProtocol {
        self.protocol.unwrap_or(JudgeProtocol::BEFORE_PROTOCOLS)
    }

    /// The target prompt template id (`w2c`).
    pub fn target_prompt_id(&self) -> &str {
        self.target_prompt.as_deref().unwrap_or("builtin:target_v1")
    }

    /// The judge prompt template id (`w2c`).
    pub fn judge_prompt_id(&self) -> &str {
        self.judge_prompt.as_deref().unwrap_or("builtin:judge_v1")
    }

    /// How tools reach the target (`w2c`).
    pub fn tools_mode(&self) -> ToolsMode {
        self.tools_mode.unwrap_or(ToolsMode::Text)
    }

    /// The target temperature sent (`None`: not sent, under `when2call`).
    pub fn target_temperature(&self) -> Option<f64> {
        self.sends_sampling()
            .then(|| self.target_temperature.unwrap_or(0.0))
    }

    /// The target completion budget sent (`None`: not sent).
    pub fn target_max_tokens(&self) -> Option<u32> {
        self.sends_sampling()
            .then(|| self.target_max_tokens.unwrap_or(512))
    }

    /// The judge temperature sent (`None`: not sent).
    pub fn judge_temperature(&self) -> Option<f64> {
        self.sends_sampling()
            .then(|| self.judge_temperature.unwrap_or(0.0))
    }

    /// The judge completion budget sent (`None`: not sent).
    pub fn judge_max_tokens(&self) -> Option<u32> {
        self.sends_sampling()
            .then(|| self.judge_max_tokens.unwrap_or(256))
    }

    /// Whether the protocol sends sampling parameters (all but `when2call`).
    pub fn sends_sampling(&self) -> bool {
        self.protocol() != JudgeProtocol::When2call
    }
}

/// A config as a session stored it, made readable by today's w2c: a stored
/// `[methods.llm_judge]` without `protocol` predates protocols and gets
/// `null` (w2c's prompts, as then), not today's default.
pub fn upgrade_stored_config(config: &mut serde_json::Value) {
    let Some(methods) = config.get_mut("methods").and_then(|m| m.as_object_mut()) else {
        return;
    };
    let judge = methods
        .entry("llm_judge")
        .or_insert_with(|| serde_json::Value::Object(Default::default()));
    if let Some(judge) = judge.as_object_mut() {
        judge.entry("protocol").or_insert(serde_json::Value::Null);
    }
}

/// How the candidate answers are ordered in the multiple-choice prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptionOrder {
    /// Dataset order: direct, tool_call, request_for_info, cannot_answer.
    Fixed,
    /// A per-example permutation derived from the seed and the uuid.
    Shuffled,
}

/// `[methods.mcq]`: the string multiple-choice classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McqConfig {
    /// Option labels shown to the model, one per candidate (4 distinct).
    #[serde(default = "default_option_labels")]
    pub option_labels: Vec<String>,
    /// Candidate order.
    #[serde(default = "default_order")]
    pub order: OptionOrder,
    /// Show the behaviour name next to each candidate.
    #[serde(default)]
    pub show_behavior_names: bool,
    /// Sampling temperature.
    #[serde(default)]
    pub temperature: f64,
    /// Completion budget.
    #[serde(default = "default_mcq_max_tokens")]
    pub max_tokens: u32,
    /// Prompt template: `builtin:<name>` or `file:<path>`; absent =
    /// `builtin:mcq_v1`, or `builtin:mcq_context_v1` with `context`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Show the model this scoring template's context (`{{context}}`) and
    /// its four choice strings as the options: an official task name
    /// (`when2call`, ...) or a w2c family (`w2c-default`, ...), as in
    /// `[methods.mcq_logprob] template`. Absent = w2c's own presentation of
    /// the tools and the question.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

impl McqLogprobConfig {
    /// Checks `[methods.mcq_logprob]`.
    fn validate(&self) -> Result<()> {
        match (self.truncation, self.max_context_tokens) {
            (Truncation::Left, None) => bail!(
                "key `methods.mcq_logprob.max_context_tokens`: required with `truncation = \"left\"` (the server's context window in tokens)"
            ),
            (_, Some(n)) if n < 16 => bail!(
                "key `methods.mcq_logprob.max_context_tokens`: expected at least 16, got {n}"
            ),
            _ => {}
        }
        if let Some(t) = &self.template {
            crate::chat_templates::ScoringTemplate::parse(t)
                .map_err(|e| anyhow::anyhow!("key `methods.mcq_logprob.template`: {e}"))?;
        }
        Ok(())
    }
}

impl LlmJudgeConfig {
    /// Checks `[methods.llm_judge]` (and the form of `mcq`'s prompt id, named
    /// with the judge's prompts).
    fn validate(&self, mcq_prompt: &str) -> Result<()> {
        let protocol = self.protocol();
        let w2c_only = [
            ("target_prompt", self.target_prompt.is_some()),
            ("judge_prompt", self.judge_prompt.is_some()),
            ("tools_mode", self.tools_mode.is_some()),
        ];
        let sampling = [
            ("target_temperature", self.target_temperature.is_some()),
            ("target_max_tokens", self.target_max_tokens.is_some()),
            ("judge_temperature", self.judge_temperature.is_some()),
            ("judge_max_tokens", self.judge_max_tokens.is_some()),
        ];
        match protocol {
            JudgeProtocol::W2c => {}
            JudgeProtocol::PythonSuite | JudgeProtocol::When2call => {
                if let Some((key, _)) = w2c_only.iter().find(|(_, set)| *set) {
                    bail!(
                        "key `methods.llm_judge.{key}`: protocol `{protocol}` has its own fixed prompts; w2c's prompt templates and tools modes are protocol `w2c`'s (set `protocol = \"w2c\"` to use them)"
                    );
                }
                if protocol == JudgeProtocol::When2call {
                    if let Some((key, _)) = sampling.iter().find(|(_, set)| *set) {
                        bail!(
                            "key `methods.llm_judge.{key}`: protocol `when2call` sends what NVIDIA's scripts send, no temperature or max_tokens (the server's defaults apply); use protocol `python-suite` or `w2c` to choose sampling"
                        );
                    }
                }
            }
        }
        for (key, prompt) in [
            ("methods.mcq.prompt", mcq_prompt),
            ("methods.llm_judge.target_prompt", self.target_prompt_id()),
            ("methods.llm_judge.judge_prompt", self.judge_prompt_id()),
        ] {
            if !(prompt.starts_with("builtin:") || prompt.starts_with("file:")) {
                bail!("key `{key}`: expected `builtin:<name>` or `file:<path>`, got {prompt:?}");
            }
        }
        for (key, t) in [
            (
                "methods.llm_judge.target_temperature",
                self.target_temperature,
            ),
            (
                "methods.llm_judge.judge_temperature",
                self.judge_temperature,
            ),
        ] {
            if let Some(t) = t {
                if !(0.0..=2.0).contains(&t) {
                    bail!("key `{key}`: expected a value in [0, 2], got {t}");
                }
            }
        }
        for (key, n) in [
            (
                "methods.llm_judge.target_max_tokens",
                self.target_max_tokens,
            ),
            ("methods.llm_judge.judge_max_tokens", self.judge_max_tokens),
        ] {
            if n == Some(0) {
                bail!("key `{key}`: expected a positive number of tokens, got 0");
            }
        }
        Ok(())
    }
}

impl StabilityConfig {
    /// Checks `[methods.stability]`.
    fn validate(&self) -> Result<()> {
        if !(1..=100).contains(&self.k) {
            bail!(
                "key `methods.stability.k`: expected 1 to 100 repetitions, got {}",
                self.k
            );
        }
        if self.temperatures.is_empty() {
            bail!("key `methods.stability.temperatures`: expected at least one temperature");
        }
        for (i, t) in self.temperatures.iter().enumerate() {
            if !(0.0..=2.0).contains(t) {
                bail!("key `methods.stability.temperatures[{i}]`: expected a value in [0, 2], got {t}");
            }
            if self.temperatures[..i].contains(t) {
                bail!("key `methods.stability.temperatures[{i}]`: {t} is listed twice");
            }
        }
        Ok(())
    }
}

impl ProviderConfig {
    /// Every endpoint with its concurrency: `base_urls`, else `base_url`.
    pub fn endpoints(&self) -> Vec<(String, usize)> {
        if self.base_urls.is_empty() {
            self.base_url
                .iter()
                .map(|u| (u.clone(), self.max_concurrency))
                .collect()
        } else {
            self.base_urls
                .iter()
                .map(|e| {
                    (
                        e.url().to_string(),
                        e.max_concurrency().unwrap_or(self.max_concurrency),
                    )
                })
                .collect()
        }
    }

    /// The config with its endpoints replaced by those of
    /// [`endpoints_env_var`], when that variable is set (for this process
    /// only: it is not stored, nor part of the fingerprint).
    pub fn with_endpoints_from_env(
        &self,
        name: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ProviderConfig> {
        let var = endpoints_env_var(name);
        let Some(value) = env(&var).filter(|v| !v.trim().is_empty()) else {
            return Ok(self.clone());
        };
        if self.kind != ProviderKind::Openai {
            bail!("{var}: provider `{name}` is not an `openai` provider");
        }
        let mut urls = Vec::new();
        for (i, raw) in value.split(',').map(str::trim).enumerate() {
            check_base_url(raw).map_err(|e| anyhow::anyhow!("{var}: URL {}: {e}", i + 1))?;
            urls.push(EndpointConfig::Url(raw.to_string()));
        }
        Ok(ProviderConfig {
            base_url: None,
            base_urls: urls,
            ..self.clone()
        })
    }

    /// Checks `[providers.<name>]`.
    fn validate(&self, name: &str) -> Result<()> {
        let key = |k: &str| format!("providers.{name}.{k}");
        let in_range = |k: &str, ok: bool, range: String| -> Result<()> {
            if ok {
                Ok(())
            } else {
                bail!("key `{}`: expected a value in {range}", key(k))
            }
        };
        in_range(
            "max_concurrency",
            MAX_CONCURRENCY_RANGE.contains(&self.max_concurrency),
            format!(
                "[{}, {}]",
                MAX_CONCURRENCY_RANGE.start(),
                MAX_CONCURRENCY_RANGE.end()
            ),
        )?;
        in_range(
            "max_attempts",
            MAX_ATTEMPTS_RANGE.contains(&self.max_attempts),
            format!(
                "[{}, {}]",
                MAX_ATTEMPTS_RANGE.start(),
                MAX_ATTEMPTS_RANGE.end()
            ),
        )?;
        crate::secs::in_range(
            &format!("key `{}`", key("timeout_secs")),
            self.timeout_secs,
            TIMEOUT_SECS_RANGE,
        )
        .map_err(anyhow::Error::msg)?;
        in_range(
            "max_response_bytes",
            MAX_RESPONSE_BYTES_RANGE.contains(&self.max_response_bytes),
            format!(
                "[{}, {}] bytes",
                MAX_RESPONSE_BYTES_RANGE.start(),
                MAX_RESPONSE_BYTES_RANGE.end()
            ),
        )?;
        for (k, v) in [
            ("requests_per_minute", self.requests_per_minute),
            ("tokens_per_minute", self.tokens_per_minute),
        ] {
            if v == Some(0) {
                bail!(
                    "key `{}`: expected at least 1 (leave it out for no limit)",
                    key(k)
                );
            }
        }
        if !(0.0..=1.0).contains(&self.fail_rate) {
            bail!("key `{}`: expected a share in [0, 1]", key("fail_rate"));
        }
        in_range(
            "latency_ms",
            LATENCY_MS_RANGE.contains(&self.latency_ms),
            format!(
                "[{}, {}] milliseconds (one day)",
                LATENCY_MS_RANGE.start(),
                LATENCY_MS_RANGE.end()
            ),
        )?;
        for (k, v) in self.headers.iter().chain(self.headers_env.iter()) {
            if k.eq_ignore_ascii_case("authorization") {
                bail!(
                    "key `{}`: set the key with `api_key_env`, not a header",
                    key(&format!("headers.{k}"))
                );
            }
            if v.is_empty() {
                bail!(
                    "key `{}`: expected a non-empty value",
                    key(&format!("headers.{k}"))
                );
            }
        }
        match self.kind {
            ProviderKind::Openai => {
                match (self.base_url.as_deref(), self.base_urls.is_empty()) {
                    (Some(_), false) => bail!(
                        "key `{}`: give either `base_url` or `base_urls`, not both",
                        key("base_urls")
                    ),
                    (None | Some(""), true) => bail!(
                        "key `{}`: required for an `openai` provider (or `base_urls` for several endpoints)",
                        key("base_url")
                    ),
                    (Some(url), true) => check_base_url(url)
                        .map_err(|e| anyhow::anyhow!("key `{}`: {e}", key("base_url")))?,
                    (None, false) => {}
                }
                for (i, e) in self.base_urls.iter().enumerate() {
                    check_base_url(e.url())
                        .map_err(|err| anyhow::anyhow!("key `{}[{i}]`: {err}", key("base_urls")))?;
                    if let Some(n) = e.max_concurrency() {
                        in_range(
                            &format!("base_urls[{i}].max_concurrency"),
                            MAX_CONCURRENCY_RANGE.contains(&n),
                            format!(
                                "[{}, {}]",
                                MAX_CONCURRENCY_RANGE.start(),
                                MAX_CONCURRENCY_RANGE.end()
                            ),
                        )?;
                    }
                    if self.base_urls[..i].iter().any(|o| o.url() == e.url()) {
                        bail!(
                            "key `{}[{i}]`: `{}` is listed twice",
                            key("base_urls"),
                            crate::redact::url_without_credentials(e.url())
                        );
                    }
                }
                if self.latency_ms != 0 || self.fail_rate != 0.0 {
                    bail!(
                        "key `{}`/`{}`: only a `mock` provider simulates latency and faults (use `w2c mock-server` for an HTTP endpoint)",
                        key("latency_ms"),
                        key("fail_rate")
                    );
                }
                if !self.judge_replies.is_default() {
                    bail!(
                        "key `{}`: only a `mock` provider has a mock judge (`w2c mock-server --judge-replies` for an HTTP endpoint)",
                        key("judge_replies")
                    );
                }
            }
            ProviderKind::Mock => {
                if self.base_url.is_some()
                    || !self.base_urls.is_empty()
                    || self.api_key_env.is_some()
                    || !self.headers_env.is_empty()
                {
                    bail!(
                        "provider `{name}` is `kind = \"mock\"`: it has no `base_url` or `api_key_env`"
                    );
                }
            }
        }
        Ok(())
    }
}

impl McqConfig {
    /// Checks `[methods.mcq]`.
    fn validate(&self) -> Result<()> {
        if self.option_labels.len() != 4 {
            bail!(
                "key `methods.mcq.option_labels`: expected exactly 4 labels, got {}",
                self.option_labels.len()
            );
        }
        for (i, l) in self.option_labels.iter().enumerate() {
            if l.is_empty() || !l.chars().all(|c| c.is_ascii_alphanumeric()) {
                bail!("key `methods.mcq.option_labels[{i}]`: expected a non-empty ASCII letter/digit label, got {l:?}");
            }
            if self.option_labels[..i]
                .iter()
                .any(|o| o.eq_ignore_ascii_case(l))
            {
                bail!("key `methods.mcq.option_labels[{i}]`: label {l:?} is repeated");
            }
        }
        if !(0.0..=2.0).contains(&self.temperature) {
            bail!(
                "key `methods.mcq.temperature`: expected a value in [0, 2], got {}",
                self.temperature
            );
        }
        if self.max_tokens == 0 {
            bail!("key `methods.mcq.max_tokens`: expected a positive number");
        }
        if let Some(t) = &self.context {
            crate::chat_templates::ScoringTemplate::parse(t)
                .map_err(|e| anyhow::anyhow!("key `methods.mcq.context`: {e}"))?;
        }
        Ok(())
    }

    /// The prompt template id in effect.
    pub fn prompt_id(&self) -> &str {
        match (&self.prompt, &self.context) {
            (Some(p), _) => p,
            (None, None) => "builtin:mcq_v1",
            (None, Some(_)) => "builtin:mcq_context_v1",
        }
    }
}

impl Default for McqConfig {
    fn default() -> Self {
        McqConfig {
            option_labels: default_option_labels(),
            order: default_order(),
            show_behavior_names: false,
            temperature: 0.0,
            max_tokens: default_mcq_max_tokens(),
            prompt: None,
            context: None,
        }
    }
}

fn default_option_labels() -> Vec<String> {
    ["A", "B", "C", "D"].iter().map(|s| s.to_string()).collect()
}

fn default_order() -> OptionOrder {
    OptionOrder::Fixed
}

fn default_mcq_max_tokens() -> u32 {
    32
}

/// A config file that has been read, parsed, validated and path-resolved.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The file it came from.
    pub path: PathBuf,
    /// The config with every relative path made absolute.
    pub config: Config,
}

/// Reads, parses and validates a config file; relative paths are resolved
/// against the file's directory.
pub fn load(path: &Path) -> Result<LoadedConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    // `{e:#}`: the whole chain (e.g. "key `models.target`: provider `x` is
    // not defined ..."), not only its outermost context.
    let mut config = parse(&text).map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))?;
    let base = path
        .canonicalize()
        .with_context(|| format!("cannot resolve config path {}", path.display()))?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    config.resolve_paths(&base);
    if !config.targets.is_empty() && config.run.campaign.is_none() {
        config.run.campaign = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    }
    Ok(LoadedConfig {
        path: path.to_path_buf(),
        config,
    })
}

/// Parses and validates TOML text. Errors name the key and what was expected.
pub fn parse(text: &str) -> Result<Config> {
    let config: Config = toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e))?;
    config.validate()?;
    Ok(config)
}

impl Config {
    /// The session configs this config describes: itself, or one per
    /// `[[targets]]` entry (its model, provider and template in place of
    /// `models.target`, the campaign's name recorded).
    pub fn sessions(&self) -> Vec<Config> {
        if self.targets.is_empty() {
            return vec![self.clone()];
        }
        self.targets
            .iter()
            .map(|t| {
                let mut c = self.clone();
                c.targets = Vec::new();
                c.models.target = t.model.clone();
                c.models.target_provider = t.provider.clone();
                if let Some(template) = &t.template {
                    c.methods.mcq_logprob.template = Some(template.clone());
                }
                c
            })
            .collect()
    }

    /// A campaign: `models.target` left out, distinct models, and every
    /// target's session config valid (errors name the target).
    fn validate_campaign(&self) -> Result<()> {
        if !self.models.target.is_empty() || self.models.target_provider.is_some() {
            bail!("key `models.target`: a config with `[[targets]]` names its models there; leave `models.target` and `models.target_provider` out");
        }
        for (i, t) in self.targets.iter().enumerate() {
            if t.model.trim().is_empty() {
                bail!("key `targets[{i}].model`: expected a model name, got an empty string");
            }
            if let Some(j) = self.targets[..i].iter().position(|o| o.model == t.model) {
                bail!(
                    "key `targets[{i}].model`: `{}` is also `targets[{j}]` (one session per model)",
                    t.model
                );
            }
        }
        for (i, session) in self.sessions().iter().enumerate() {
            session
                .validate()
                .with_context(|| format!("target `{}` (`targets[{i}]`)", self.targets[i].model))?;
        }
        Ok(())
    }

    /// Makes every relative path absolute against `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        let abs = |p: &Path| {
            normalize(&if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            })
        };
        self.run.runs_dir = abs(&self.run.runs_dir);
        self.dataset.path = abs(&self.dataset.path);
        let j = &mut self.methods.llm_judge;
        for prompt in [
            self.methods.mcq.prompt.as_mut(),
            j.target_prompt.as_mut(),
            j.judge_prompt.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            if let Some(file) = prompt.strip_prefix("file:") {
                *prompt = format!("file:{}", abs(Path::new(file)).display());
            }
        }
    }

    /// Checks the rules TOML types cannot express; each error names its key.
    pub fn validate(&self) -> Result<()> {
        if !self.targets.is_empty() {
            return self.validate_campaign();
        }
        if self.methods.enabled.is_empty() {
            let known: Vec<&str> = MethodKind::ALL.iter().map(|m| m.as_str()).collect();
            bail!("key `methods.enabled`: expected at least one method (known: {known:?})");
        }
        for (i, m) in self.methods.enabled.iter().enumerate() {
            if self.methods.enabled[..i].contains(m) {
                bail!("key `methods.enabled[{i}]`: method `{m}` is listed twice");
            }
        }
        if self.dataset.n_per_label == Some(0) {
            bail!("key `dataset.n_per_label`: expected a positive number (leave it out to use the whole file)");
        }
        if let Some(sel) = &self.tracking.trace_examples {
            crate::tracking::traces::TraceSelection::parse(sel)
                .map_err(|e| anyhow::anyhow!("key `tracking.trace_examples`: {e}"))?;
        }
        if let Some(n) = self.run.shards {
            if !(1..=crate::shard::MAX_SHARDS).contains(&n) {
                bail!(
                    "key `run.shards`: expected a value in [1, {}]",
                    crate::shard::MAX_SHARDS
                );
            }
        }
        if self.models.target.trim().is_empty() {
            bail!("key `models.target`: expected a model name (or a campaign's models in `[[targets]]`)");
        }
        self.methods.mcq.validate()?;
        self.methods.mcq_logprob.validate()?;
        self.methods
            .llm_judge
            .validate(self.methods.mcq.prompt_id())?;
        self.methods.stability.validate()?;
        if self.methods.enabled.iter().any(|m| m.uses_judge()) {
            if self.models.judge.as_deref().unwrap_or("").trim().is_empty() {
                bail!("key `models.judge`: required when `llm_judge` is enabled");
            }
            self.judge_provider()?;
        }
        for (name, p) in &self.providers {
            p.validate(name)?;
        }
        for (model, price) in &self.prices {
            for (key, v) in [
                ("prompt_per_mtok", price.prompt_per_mtok),
                ("completion_per_mtok", price.completion_per_mtok),
            ] {
                if !PRICE_RANGE.contains(&v) {
                    bail!(
                        "key `prices.\"{model}\".{key}`: expected USD per million tokens in [{}, {}], got {v}",
                        PRICE_RANGE.start(),
                        PRICE_RANGE.end()
                    );
                }
            }
        }
        self.target_provider()?;
        Ok(())
    }

    /// The provider the target model is routed to: the explicit
    /// `models.target_provider`, else the single provider whose
    /// `model_prefixes` match. A mock provider is never chosen implicitly.
    pub fn target_provider(&self) -> Result<(&str, &ProviderConfig)> {
        route(
            &self.providers,
            &self.models.target,
            self.models.target_provider.as_deref(),
        )
        .context("key `models.target`")
    }

    /// The judge model and its provider.
    pub fn judge_provider(&self) -> Result<(&str, &str, &ProviderConfig)> {
        let judge = self
            .models
            .judge
            .as_deref()
            .context("key `models.judge`: required by `llm_judge`")?;
        let (name, p) = route(
            &self.providers,
            judge,
            self.models.judge_provider.as_deref(),
        )
        .context("key `models.judge`")?;
        Ok((judge, name, p))
    }
}

/// Checks an `openai` provider's `base_url`: an absolute `http(s)` URL with a
/// host, without credentials (keys go in `api_key_env`), query or fragment.
pub fn check_base_url(raw: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(raw.trim()).map_err(|e| {
        format!(
            "`{}` is not a URL ({e}); expected e.g. `https://api.openai.com/v1`",
            crate::redact::url_without_credentials(raw)
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "`{}` is not an http(s) URL (scheme `{}`)",
            crate::redact::url_without_credentials(raw),
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{raw}` has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "`{}` must not hold credentials (they would be stored in the manifest); name the key's environment variable in `api_key_env`",
            crate::redact::url_without_credentials(raw)
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "`{raw}` must not have a query or fragment (paths such as `/chat/completions` are appended to it)"
        ));
    }
    Ok(())
}

/// Removes `.` and resolves `..` components lexically (no symlink lookups).
pub fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Routes `model` to a provider: explicit name first, else a unique prefix
/// match, else the only provider when it is an HTTP one without prefixes
/// (the built-in mock is never chosen unnamed: a dry run is asked for).
pub fn route<'a>(
    providers: &'a BTreeMap<String, ProviderConfig>,
    model: &str,
    explicit: Option<&str>,
) -> Result<(&'a str, &'a ProviderConfig)> {
    if let Some(name) = explicit {
        return providers
            .get_key_value(name)
            .map(|(k, v)| (k.as_str(), v))
            .with_context(|| {
                format!(
                    "provider `{name}` is not defined (defined: {:?})",
                    providers.keys().collect::<Vec<_>>()
                )
            });
    }
    let matches: Vec<_> = providers
        .iter()
        .filter(|(_, p)| {
            p.model_prefixes
                .iter()
                .any(|pre| model.starts_with(pre.as_str()))
        })
        .collect();
    let only_http = match providers.iter().collect::<Vec<_>>().as_slice() {
        [(k, v)] if v.kind == ProviderKind::Openai && v.model_prefixes.is_empty() => Some((*k, *v)),
        _ => None,
    };
    match (matches.as_slice(), only_http) {
        ([(k, v)], _) => Ok((k.as_str(), v)),
        ([], Some((k, v))) => Ok((k.as_str(), v)),
        ([], None) => bail!(
            "no provider routes model `{model}`: set `models.target_provider` or a provider's `model_prefixes`"
        ),
        (many, _) => bail!(
            "model `{model}` matches the prefixes of several providers ({:?}); set `models.target_provider`",
            many.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>()
        ),
    }
}

/// Replaces every maximal run of characters outside `[A-Za-z0-9_-]` with `_`
/// and trims surrounding whitespace.
pub fn sanitize_run_key(raw: &str) -> String {
    let mut out = String::new();
    let mut in_bad_run = false;
    for c in raw.trim().chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            out.push(c);
            in_bad_run = false;
        } else if !in_bad_run {
            out.push('_');
            in_bad_run = true;
        }
    }
    out
}

/// Where the RUN_KEY came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKeySource {
    /// `--run-key` on the command line.
    Cli,
    /// `W2C_RUN_KEY` in the environment.
    Env,
    /// `run.run_key` in the config.
    Config,
    /// Nothing given: a fresh key was generated.
    Generated,
}

impl RunKeySource {
    /// Where to look for the value, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            RunKeySource::Cli => "--run-key",
            RunKeySource::Env => "W2C_RUN_KEY",
            RunKeySource::Config => "key `run.run_key`",
            RunKeySource::Generated => "generated run key",
        }
    }
}

/// A resolved RUN_KEY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunKey {
    /// The folder name used.
    pub key: String,
    /// Where it came from.
    pub source: RunKeySource,
    /// The value as given, when sanitizing changed it.
    pub given: Option<String>,
}

/// Resolves the RUN_KEY: `--run-key`, then `W2C_RUN_KEY`, then the config;
/// the first one that is not blank wins and is sanitized
/// ([`sanitize_run_key`]). A value with no letter or digit (`..`, `/`) is an
/// error naming where it came from, never silently replaced. Nothing given
/// means a generated key (`run-<utc timestamp>-<random>`); never an
/// interactive prompt.
pub fn resolve_run_key(
    cli: Option<&str>,
    env: Option<&str>,
    config: Option<&str>,
) -> Result<RunKey> {
    let candidates = [
        (cli, RunKeySource::Cli),
        (env, RunKeySource::Env),
        (config, RunKeySource::Config),
    ];
    for (value, source) in candidates {
        let Some(v) = value.filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        let key = sanitize_run_key(v);
        if !key.chars().any(|c| c.is_ascii_alphanumeric()) {
            bail!(
                "{}: {v:?} cannot name a run folder: it has no letter or digit (a run key keeps A-Z, a-z, 0-9, `_` and `-`)",
                source.describe()
            );
        }
        let given = (key != v).then(|| v.to_string());
        return Ok(RunKey { key, source, given });
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let suffix: u32 = rand::random::<u32>() & 0xffff;
    Ok(RunKey {
        key: format!("run-{stamp}-{suffix:04x}"),
        source: RunKeySource::Generated,
        given: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[dataset]
path = "data.jsonl"
[models]
target = "m"
target_provider = "mock"
[providers.mock]
kind = "mock"
[methods]
enabled = ["mcq"]
"#;

    #[test]
    fn minimal_config_parses_with_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.run.seed, 42);
        assert_eq!(c.methods.mcq.option_labels, vec!["A", "B", "C", "D"]);
        assert_eq!(c.target_provider().unwrap().0, "mock");
    }

    #[test]
    fn scoring_templates_default_to_the_official_task_and_are_checked() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.methods.mcq_logprob.template.as_deref(), Some("when2call"));
        assert_eq!(c.methods.mcq.prompt_id(), "builtin:mcq_v1");
        for ok in ["when2call-xlam", "w2c-hermes", "hermes"] {
            let text = format!("{MINIMAL}[methods.mcq_logprob]\ntemplate = \"{ok}\"\n");
            assert!(parse(&text).is_ok(), "{ok}");
        }
        let err = parse(&format!(
            "{MINIMAL}[methods.mcq_logprob]\ntemplate = \"llama\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("methods.mcq_logprob.template") && err.contains("when2call-llama3_2"),
            "{err}"
        );
        let c = parse(&format!(
            "{MINIMAL}[methods.mcq]\ncontext = \"when2call-hermes\"\n"
        ))
        .unwrap();
        assert_eq!(c.methods.mcq.prompt_id(), "builtin:mcq_context_v1");
        let err = parse(&format!("{MINIMAL}[methods.mcq]\ncontext = \"x\"\n")).unwrap_err();
        assert!(err.to_string().contains("methods.mcq.context"), "{err}");
        // A stored config of a session from before the official prompts: null.
        let mut v = serde_json::to_value(parse(MINIMAL).unwrap()).unwrap();
        v["methods"]["mcq_logprob"]["template"] = serde_json::Value::Null;
        let back: Config = serde_json::from_value(v).unwrap();
        assert_eq!(back.methods.mcq_logprob.template, None);
    }

    #[test]
    fn judge_protocols_default_to_nvidias_and_check_their_keys() {
        let c = parse(MINIMAL).unwrap();
        let j = &c.methods.llm_judge;
        assert_eq!(j.protocol(), JudgeProtocol::When2call);
        // NVIDIA's scripts send no sampling parameters.
        assert_eq!(
            (
                j.target_temperature(),
                j.target_max_tokens(),
                j.judge_max_tokens()
            ),
            (None, None, None)
        );
        let with = |extra: &str| parse(&format!("{MINIMAL}[methods.llm_judge]\n{extra}\n"));
        for (extra, key) in [
            ("judge_prompt = \"builtin:judge_v1\"", "judge_prompt"),
            ("tools_mode = \"native\"", "tools_mode"),
            ("target_max_tokens = 24", "target_max_tokens"),
            ("judge_temperature = 0.5", "judge_temperature"),
        ] {
            let err = with(extra).unwrap_err().to_string();
            assert!(
                err.contains(&format!("methods.llm_judge.{key}")) && err.contains("when2call"),
                "{extra}: {err}"
            );
        }
        // The suite's protocol takes sampling, with the suite's defaults,
        // but not w2c's prompts.
        let c = with("protocol = \"python-suite\"\ntarget_temperature = 0.3").unwrap();
        let j = &c.methods.llm_judge;
        assert_eq!(j.target_temperature(), Some(0.3));
        assert_eq!(
            (j.target_max_tokens(), j.judge_max_tokens()),
            (Some(512), Some(256))
        );
        assert!(
            with("protocol = \"python-suite\"\ntarget_prompt = \"builtin:target_v1\"").is_err()
        );
        // w2c's protocol takes everything, with its defaults.
        let c = with("protocol = \"w2c\"\ntools_mode = \"native\"").unwrap();
        let j = &c.methods.llm_judge;
        assert_eq!(j.tools_mode(), ToolsMode::Native);
        assert_eq!(j.target_prompt_id(), "builtin:target_v1");
        assert_eq!(j.target_temperature(), Some(0.0));
        let err = with("protocol = \"official\"").unwrap_err().to_string();
        assert!(err.contains("protocol"), "{err}");
        assert!(with("protocol = \"w2c\"\njudge_max_tokens = 0").is_err());
    }

    #[test]
    fn a_stored_config_without_a_protocol_keeps_w2cs_prompts() {
        // A config stored before protocols: its llm_judge section has none.
        let mut v = serde_json::to_value(parse(MINIMAL).unwrap()).unwrap();
        let judge = v["methods"]["llm_judge"].as_object_mut().unwrap();
        judge.remove("protocol");
        judge.insert("target_prompt".into(), "builtin:target_v1".into());
        judge.insert("target_max_tokens".into(), 512.into());
        upgrade_stored_config(&mut v);
        let back: Config = serde_json::from_value(v).unwrap();
        back.validate().unwrap();
        assert_eq!(back.methods.llm_judge.protocol, None);
        assert_eq!(back.methods.llm_judge.protocol(), JudgeProtocol::W2c);
        // A stored config that names its protocol keeps it; one written
        // today round-trips (null included).
        let mut v = serde_json::to_value(parse(MINIMAL).unwrap()).unwrap();
        assert_eq!(v["methods"]["llm_judge"]["protocol"], "when2call");
        upgrade_stored_config(&mut v);
        let back: Config = serde_json::from_value(v).unwrap();
        assert_eq!(back.methods.llm_judge.protocol(), JudgeProtocol::When2call);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = parse(&MINIMAL.replace("[methods]", "[methods]\nbogus = 1")).unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    #[test]
    fn wrong_type_names_key() {
        let err = parse(&MINIMAL.replace("target = \"m\"", "target = 3")).unwrap_err();
        assert!(err.to_string().contains("target"), "{err}");
    }

    #[test]
    fn unknown_method_rejected() {
        let err = parse(&MINIMAL.replace("[\"mcq\"]", "[\"nope\"]")).unwrap_err();
        assert!(err.to_string().contains("methods.enabled[0]"), "{err}");
    }

    #[test]
    fn routing_errors_name_the_key_and_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let unknown = write(
            "unknown.toml",
            &MINIMAL.replace("target_provider = \"mock\"", "target_provider = \"nope\""),
        );
        let err = format!("{:#}", load(&unknown).unwrap_err());
        assert!(
            err.contains("key `models.target`") && err.contains("provider `nope` is not defined"),
            "{err}"
        );
        let two = MINIMAL.replace("target_provider = \"mock\"\n", "").replace(
            "kind = \"mock\"",
            "kind = \"mock\"\nmodel_prefixes = [\"m\"]",
        ) + "[providers.other]\nkind = \"mock\"\nmodel_prefixes = [\"m\"]\n";
        let err = format!("{:#}", load(&write("two.toml", &two)).unwrap_err());
        assert!(
            err.contains("key `models.target`") && err.contains("several providers"),
            "{err}"
        );
        let none = MINIMAL.replace("target_provider = \"mock\"\n", "");
        let err = format!("{:#}", load(&write("none.toml", &none)).unwrap_err());
        assert!(err.contains("no provider routes model `m`"), "{err}");
        // The top-level message alone (as `{err}` prints it) says it too.
        let err = load(&unknown).unwrap_err().to_string();
        assert!(err.contains("is not defined"), "{err}");
    }

    #[test]
    fn prices_outside_their_range_are_named() {
        for (key, value) in [
            ("prompt_per_mtok", "inf"),
            ("completion_per_mtok", "1e300"),
            ("prompt_per_mtok", "-1.0"),
            ("completion_per_mtok", "nan"),
        ] {
            let other = if key == "prompt_per_mtok" {
                "completion_per_mtok"
            } else {
                "prompt_per_mtok"
            };
            let text = format!("{MINIMAL}[prices.\"m\"]\n{key} = {value}\n{other} = 1.0\n");
            let err = format!("{:#}", parse(&text).unwrap_err());
            assert!(
                err.contains(&format!("prices.\"m\".{key}")) && err.contains("[0, 10000]"),
                "{err}"
            );
        }
        let ok =
            format!("{MINIMAL}[prices.\"m\"]\nprompt_per_mtok = 10000\ncompletion_per_mtok = 0\n");
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn each_judge_budget_is_named() {
        for key in ["target_max_tokens", "judge_max_tokens"] {
            let text = format!("{MINIMAL}[methods.llm_judge]\n{key} = 0\n");
            let err = format!("{:#}", parse(&text).unwrap_err());
            assert!(err.contains(&format!("methods.llm_judge.{key}")), "{err}");
        }
    }

    #[test]
    fn the_only_http_provider_serves_a_model_it_is_not_told_about() {
        let one = MINIMAL
            .replace("target_provider = \"mock\"\n", "")
            .replace("[providers.mock]", "[providers.local]")
            .replace(
                "kind = \"mock\"",
                "kind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"",
            );
        let c = parse(&one).unwrap();
        assert_eq!(c.target_provider().unwrap().0, "local");
        // Two, or one with prefixes that do not match: the user must say.
        let two = format!(
            "{one}[providers.other]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n"
        );
        let err = format!("{:#}", parse(&two).unwrap_err());
        assert!(err.contains("no provider routes model `m`"), "{err}");
        let prefixed = one.replace(
            "kind = \"openai\"",
            "kind = \"openai\"\nmodel_prefixes = [\"gpt-\"]",
        );
        let err = format!("{:#}", parse(&prefixed).unwrap_err());
        assert!(err.contains("no provider routes model `m`"), "{err}");
    }

    #[test]
    fn mock_is_never_chosen_by_default() {
        let text = MINIMAL.replace("target_provider = \"mock\"\n", "");
        let err = parse(&text).unwrap_err();
        assert!(
            format!("{err:#}").contains("no provider routes model"),
            "{err:#}"
        );
    }

    #[test]
    fn prefix_routing() {
        let text = MINIMAL.replace("target_provider = \"mock\"\n", "").replace(
            "kind = \"mock\"",
            "kind = \"mock\"\nmodel_prefixes = [\"m\"]",
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.target_provider().unwrap().0, "mock");
    }

    #[test]
    fn provider_numbers_and_urls_are_checked_with_their_key() {
        let openai = MINIMAL.replace(
            "kind = \"mock\"",
            "kind = \"openai\"\nbase_url = \"http://127.0.0.1:8000/v1\"",
        );
        assert!(parse(&openai).is_ok());
        for (extra, needle) in [
            ("timeout_secs = 1e300", "providers.mock.timeout_secs"),
            ("timeout_secs = -1.0", "providers.mock.timeout_secs"),
            ("timeout_secs = nan", "providers.mock.timeout_secs"),
            (
                "requests_per_minute = 0",
                "providers.mock.requests_per_minute",
            ),
            ("tokens_per_minute = 0", "providers.mock.tokens_per_minute"),
            (
                "max_response_bytes = 10",
                "providers.mock.max_response_bytes",
            ),
            ("max_concurrency = 100000", "providers.mock.max_concurrency"),
            ("max_attempts = 0", "providers.mock.max_attempts"),
        ] {
            let text = openai.replace("[methods]", &format!("{extra}\n[methods]"));
            let err = format!("{:#}", parse(&text).unwrap_err());
            assert!(err.contains(needle), "{extra}: {err}");
        }
        for url in [
            "not a url",
            "ftp://h/v1",
            "http://u:p@h/v1",
            "http://h/v1?x=1",
            "file:///v1",
        ] {
            let text = openai.replace("http://127.0.0.1:8000/v1", url);
            let err = format!("{:#}", parse(&text).unwrap_err());
            assert!(err.contains("providers.mock.base_url"), "{url}: {err}");
            assert!(!err.contains(":p@"), "{err}");
        }
    }

    #[test]
    fn a_mock_latency_beyond_a_day_is_refused_with_its_range() {
        let text = MINIMAL.replace(
            "kind = \"mock\"",
            "kind = \"mock\"\nlatency_ms = 9223372036854775807",
        );
        let err = format!("{:#}", parse(&text).unwrap_err());
        assert!(
            err.contains("providers.mock.latency_ms") && err.contains("86400000"),
            "{err}"
        );
        let ok = MINIMAL.replace("kind = \"mock\"", "kind = \"mock\"\nlatency_ms = 86400000");
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn paths_resolve_against_the_config_dir() {
        let mut c = parse(MINIMAL).unwrap();
        c.run.runs_dir = PathBuf::from("../runs");
        c.resolve_paths(Path::new("/repo/configs"));
        assert_eq!(c.run.runs_dir, PathBuf::from("/repo/runs"));
        assert_eq!(c.dataset.path, PathBuf::from("/repo/configs/data.jsonl"));
    }

    #[test]
    fn run_key_sanitizing_and_precedence() {
        assert_eq!(sanitize_run_key(" my run/1 "), "my_run_1");
        assert_eq!(sanitize_run_key("a..b"), "a_b");
        assert_eq!(sanitize_run_key("ok-key_2"), "ok-key_2");
        let rk = |c, e, f| {
            let r = resolve_run_key(c, e, f).unwrap();
            (r.key, r.source)
        };
        assert_eq!(
            rk(Some("cli"), Some("env"), Some("cfg")),
            ("cli".into(), RunKeySource::Cli)
        );
        assert_eq!(
            rk(Some("  "), Some("env"), Some("cfg")),
            ("env".into(), RunKeySource::Env)
        );
        assert_eq!(
            rk(None, None, Some("cfg")),
            ("cfg".into(), RunKeySource::Config)
        );
        let (k, s) = rk(None, Some(""), None);
        assert_eq!(s, RunKeySource::Generated);
        assert!(k.starts_with("run-"));
        assert_eq!(sanitize_run_key(&k), k);
        let changed = resolve_run_key(Some("my run/1"), None, None).unwrap();
        assert_eq!(changed.given.as_deref(), Some("my run/1"));
        assert_eq!(changed.key, "my_run_1");
    }

    #[test]
    fn a_run_key_without_letters_or_digits_is_refused() {
        for bad in ["..", "/", "._.", "-"] {
            let err = resolve_run_key(Some(bad), Some("env"), None).unwrap_err();
            assert!(err.to_string().contains("--run-key"), "{err}");
        }
        let err = resolve_run_key(None, Some(".."), None).unwrap_err();
        assert!(err.to_string().contains("W2C_RUN_KEY"), "{err}");
        let err = resolve_run_key(None, None, Some("//")).unwrap_err();
        assert!(err.to_string().contains("run.run_key"), "{err}");
    }
}
