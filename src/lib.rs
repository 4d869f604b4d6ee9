//! w2c: resumable, auditable LLM evaluation sessions for the When2Call
//! benchmark. The binary is a thin wrapper over [`cli::main`].

pub mod audit;
pub mod charts;
pub mod chat_templates;
pub mod cli;
pub mod command_hint;
pub mod config;
pub mod dataset;
pub mod engine;
pub mod export;
pub mod fingerprint;
pub mod floats;
pub mod http_body;
pub mod json_scan;
pub mod labels;
pub mod llm;
pub mod long_text;
pub mod methods;
pub mod metrics;
pub mod mock_server;
pub mod official_task;
pub mod outcome;
pub mod prompts;
pub mod redact;
pub mod report;
pub mod runner;
pub mod secs;
pub mod shard;
pub mod stability;
pub mod store;
pub mod tracking;
pub mod verify;
