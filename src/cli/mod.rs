//! Command-line interface: argument parsing, dispatch, printing and exit codes.
//! Library modules return errors; only this module talks to the user.

mod commands;
mod progress;
mod signals;

use crate::official_task::OfficialVariant;
use crate::report;
use crate::store::address::RunKeyScope;
use crate::store::session;
use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Exit code: everything finished.
pub const EXIT_OK: i32 = 0;
/// Exit code: an error (bad config, dataset, I/O...).
pub const EXIT_ERROR: i32 = 1;
/// Exit code: some items failed after their retries; resume retries them.
pub const EXIT_INCOMPLETE: i32 = 3;
/// Exit code: the session is held by another process.
pub const EXIT_BUSY: i32 = 4;
/// Exit code: `verify` found a mismatch or a missing file.
pub const EXIT_MISMATCH: i32 = 5;
/// Exit code: `verify` could not check something (tracking server
/// unreachable, credentials refused) and found no mismatch.
pub const EXIT_CANNOT_CHECK: i32 = 6;
/// Exit code: `verify` found everything it checked right, and only work
/// not sent to MLflow yet (traces pending for `w2c sync`).
pub const EXIT_PENDING: i32 = 7;
/// Exit code: paused by Ctrl-C (SIGINT; progress saved). SIGTERM gives 143
/// and SIGHUP 129 (128 + the signal's number, as shells report them).
pub const EXIT_INTERRUPTED: i32 = 130;

/// Resumable, auditable LLM evaluation sessions for When2Call.
#[derive(Debug, Parser)]
#[command(name = "w2c", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run (or continue) the evaluation a config describes.
    #[command(after_help = "Example:\n  w2c run --config configs/demo.toml --run-key demo")]
    Run(RunArgs),
    /// Continue a session from its address alone (the manifest holds the config).
    #[command(
        after_help = "Examples:\n  w2c resume demo/3f2a9c1d\n  w2c resume demo/3f2a9c1d --shard 2/4   # one shard of a session split in 4\n\nA session is named by its address, RUN_KEY/FINGERPRINT (a prefix of at least 4 hex\ncharacters; `w2c status` lists them), by a bare fingerprint prefix when one session has\nit (looked for under --run-key, else W2C_RUN_KEY, when set), or by its directory."
    )]
    Resume(ResumeArgs),
    /// Create a session and record its plan without running anything; print its address.
    #[command(
        after_help = "Example:\n  SESSION=$(w2c plan --config eval.toml --shards 4)   # RUN_KEY/FINGERPRINT\n  sbatch --array=0-3 deploy/slurm/w2c-shard.sbatch \"$SESSION\"\n\nPrints the session's address with the whole fingerprint (RUN_KEY/FINGERPRINT) on stdout.\nOpens the MLflow parent run and one child per namespace when tracking is configured.\nShards then run with `w2c resume \"$SESSION\" --shard` (see docs/cluster.md)."
    )]
    Plan(PlanArgs),
    /// Finalize the namespaces of a sharded session whose items are all done.
    #[command(
        after_help = "Example:\n  w2c finalize demo/3f2a9c1d\n\nThe last shard to finish a namespace finalizes it by itself; this does the same for\nevery namespace that is complete (metrics, artifacts, _DONE.json, MLflow FINISHED) and\nsays which shards still lack items (exit 3). Safe to repeat and to run beside shards."
    )]
    Finalize(FinalizeArgs),
    /// Send a stopped session (offline, or partly tracked) to MLflow.
    #[command(
        after_help = "Example:\n  MLFLOW_TRACKING_URI=http://127.0.0.1:5000 w2c sync demo/3f2a9c1d\n\nReconnects to the session's runs (by stored id, else by tags) or creates them, logs\nparams and final metrics, uploads artifacts missing or changed remotely, and sets each\nrun's status from the local record. Safe to repeat."
    )]
    Sync(SyncArgs),
    /// Cross-check sessions' checkpoints, markers, artifacts and metrics.
    #[command(
        after_help = "Examples:\n  w2c verify demo/3f2a9c1d\n  w2c verify demo/3f2a9c1d --deep   # also re-score from raw output, download every MLflow artifact and compare sha256\n  w2c verify --all --json > report.json\n\nTracked sessions are checked against the server in mlflow_ids.json (or MLFLOW_TRACKING_URI).\nExit codes: 0 everything matches; 5 a mismatch or a missing file; 6 something could not be\nchecked (tracking server unreachable or credentials refused) and nothing mismatched; 1 error."
    )]
    Verify(VerifyArgs),
    /// Report the metrics of one or more sessions side by side.
    #[command(
        after_help = "Examples:\n  w2c report demo/3f2a9c1d\n  w2c report acme/3f2a9c1d acme/9b1e7a20 --format html --out compare.html\n  w2c report --run-key acme          # every session of one run key"
    )]
    Report(ReportArgs),
    /// Compare models evaluated on the same examples: metrics with
    /// intervals, paired differences, McNemar's test, where they disagree.
    #[command(
        after_help = "Examples:\n  w2c compare acme/3f2a9c1d acme/9b1e7a20\n  w2c compare --run-key acme 3f2a 9b1e 77c0 --method mcq --format md --out compare.md --disagreements diff.jsonl\n\nEach session's target model names it. Sessions must have evaluated the same examples\n(--intersection compares the ones they share), of the same dataset file with the same gold\nlabels, with the same method settings (--allow-differences compares them anyway, saying\nwhat differs). A judge under NVIDIA's protocol is compared on the paper's LLM-as-judge\ncolumns; the other methods on the multiple-choice table's definitions. Intervals: 95%\npercentile bootstrap (seeded, reproducible); differences: paired bootstrap; McNemar's\nexact test on per-example correctness with Holm's adjustment over all pairs of a method."
    )]
    Compare(CompareArgs),
    /// List sessions grouped by run key.
    #[command(after_help = "Example:\n  w2c ls --run-key demo")]
    Ls(LsArgs),
    /// Print a session's resolved config and where everything is.
    #[command(after_help = "Example:\n  w2c show demo/3f2a9c1d")]
    Show(ShowArgs),
    /// Print a shell completion script.
    #[command(
        after_help = "Example:\n  w2c completions bash > ~/.local/share/bash-completion/completions/w2c"
    )]
    Completions(CompletionsArgs),
    /// List sessions with their progress.
    #[command(
        after_help = "Examples:\n  w2c status --runs-dir runs\n  w2c status demo/3f2a9c1d       # one session\n  w2c status --run-key demo      # the sessions of one run key"
    )]
    Status(StatusArgs),
    /// Work with config files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Serve an OpenAI-compatible test endpoint with latency and fault injection.
    #[command(
        after_help = "Example:\n  w2c mock-server --port 8089 --latency-ms 200 --rate-429 0.1 --rate-5xx 0.05\n  # then point a provider at base_url = \"http://127.0.0.1:8089/v1\""
    )]
    MockServer(crate::mock_server::MockServerOptions),
    /// Developer tools.
    #[command(subcommand, hide = true)]
    Debug(DebugCommand),
}

/// The arguments of `w2c run`.
#[derive(Debug, Args)]
struct RunArgs {
    /// The TOML config file.
    #[arg(long, short)]
    config: PathBuf,
    /// Name of the run folder (else W2C_RUN_KEY, else `run.run_key`, else generated).
    #[arg(long)]
    run_key: Option<String>,
    /// Directory holding the run folders (else W2C_RUNS_DIR, else the
    /// config's `run.runs_dir`, else `runs` beside the config).
    #[arg(long, env = "W2C_RUNS_DIR")]
    runs_dir: Option<PathBuf>,
    /// Do not track in MLflow even if MLFLOW_TRACKING_URI is set (the
    /// session is recorded as offline; `w2c sync` sends it later).
    #[arg(long)]
    no_tracking: bool,
    #[command(flatten)]
    shard: ShardArgs,
}

/// Which shard of a session a process runs.
#[derive(Debug, Args)]
struct ShardArgs {
    /// Run one shard of the session: `I/N` (0-based), or with no value
    /// (or `auto`) the job engine's index: a Slurm array task
    /// (SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN of SLURM_ARRAY_TASK_COUNT)
    /// or a Kubernetes Indexed Job pod (JOB_COMPLETION_INDEX).
    #[arg(long, value_name = "I/N", num_args = 0..=1, default_missing_value = "auto")]
    shard: Option<crate::shard::ShardFlag>,
    /// The number of shards, when the job engine gives only the index (a
    /// Kubernetes Indexed Job's `completions`); implies --shard.
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
}

/// The arguments of `w2c plan`.
#[derive(Debug, Args)]
struct PlanArgs {
    /// The TOML config file.
    #[arg(long, short)]
    config: PathBuf,
    /// Name of the run folder (else W2C_RUN_KEY, else `run.run_key`, else generated).
    #[arg(long)]
    run_key: Option<String>,
    /// Directory holding the run folders (else W2C_RUNS_DIR, else the
    /// config's `run.runs_dir`).
    #[arg(long, env = "W2C_RUNS_DIR")]
    runs_dir: Option<PathBuf>,
    /// Do not open MLflow runs even if MLFLOW_TRACKING_URI is set.
    #[arg(long)]
    no_tracking: bool,
    /// Split the session into N shards (else `run.shards`, else the first
    /// shard to run decides); changing it is allowed while no shard runs.
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
}

/// The arguments of `w2c finalize`.
#[derive(Debug, Args)]
struct FinalizeArgs {
    #[command(flatten)]
    session: SessionArgs,
    /// Do not push to MLflow even if MLFLOW_TRACKING_URI is set.
    #[arg(long)]
    no_tracking: bool,
}

/// How a command names one session: its address (`RUN_KEY/FINGERPRINT`),
/// a bare fingerprint prefix, or its directory.
#[derive(Debug, Args)]
struct SessionArgs {
    /// The session: RUN_KEY/FINGERPRINT (a prefix of at least 4 hex
    /// characters, as `w2c status` prints it), a fingerprint prefix alone
    /// when one session has it, or the session's directory.
    #[arg(value_name = "SESSION")]
    session: String,
    /// Directory holding the run folders.
    #[arg(long, env = "W2C_RUNS_DIR", default_value = "runs")]
    runs_dir: PathBuf,
    #[command(flatten)]
    run_key: RunKeyArg,
}

impl SessionArgs {
    /// The session these arguments name.
    fn find(&self) -> Result<session::FoundSession> {
        session::resolve(
            &self.runs_dir,
            &self.session,
            self.run_key.scope()?.as_ref(),
        )
    }
}

/// `--run-key` of the commands that take sessions.
#[derive(Debug, Args)]
struct RunKeyArg {
    /// Look for a bare fingerprint prefix under this run key only (else
    /// under W2C_RUN_KEY; an address's own RUN_KEY/ comes first); with no
    /// session named, only this run key's sessions.
    #[arg(long = "run-key", value_name = "RUN_KEY")]
    key: Option<String>,
}

impl RunKeyArg {
    /// The run key bare prefixes are looked for under: `--run-key`, else
    /// `W2C_RUN_KEY`.
    fn scope(&self) -> Result<Option<RunKeyScope>> {
        let env = crate::env_vars::var("W2C_RUN_KEY")?;
        RunKeyScope::from(self.key.as_deref(), env.as_deref())
    }

    /// The one run key a listing is limited to: `--run-key` alone (a
    /// listing shows every run key whatever `W2C_RUN_KEY` says).
    fn listing(&self) -> Result<Option<String>> {
        Ok(RunKeyScope::from(self.key.as_deref(), None)?.map(|s| s.key))
    }
}

/// The sessions `args` name, in order (under `runs_dir`, bare prefixes
/// under the run key of `run_key`).
fn resolve_sessions(
    runs_dir: &std::path::Path,
    args: &[String],
    run_key: &RunKeyArg,
) -> Result<Vec<session::FoundSession>> {
    let scope = run_key.scope()?;
    args.iter()
        .map(|a| session::resolve(runs_dir, a, scope.as_ref()))
        .collect()
}

/// The arguments of `w2c resume`.
#[derive(Debug, Args)]
struct ResumeArgs {
    #[command(flatten)]
    session: SessionArgs,
    /// Do not track in MLflow even if MLFLOW_TRACKING_URI is set.
    #[arg(long)]
    no_tracking: bool,
    #[command(flatten)]
    shard: ShardArgs,
    /// Check without running: the session's inputs are unchanged and the
    /// shard (from the flags or the job engine) agrees with its plan; exit 0
    /// if a resume would start (a job checks this before starting its
    /// model server).
    #[arg(long)]
    check: bool,
}

/// The arguments of `w2c sync`.
#[derive(Debug, Args)]
struct SyncArgs {
    #[command(flatten)]
    session: SessionArgs,
    /// Experiment name (else MLFLOW_EXPERIMENT_NAME, else the config's, else `when2call`).
    #[arg(long)]
    experiment: Option<String>,
}

/// The arguments of `w2c verify`.
#[derive(Debug, Args)]
struct VerifyArgs {
    /// The session to check: RUN_KEY/FINGERPRINT, a fingerprint prefix, or
    /// its directory (also a session directory written by the Python suite).
    #[arg(required_unless_present = "all", value_name = "SESSION")]
    session: Option<String>,
    /// Check every session under the runs directory (with --run-key: every
    /// session of that run key).
    #[arg(long, conflicts_with = "session")]
    all: bool,
    #[command(flatten)]
    run_key: RunKeyArg,
    /// Emit a machine-readable JSON report (every check).
    #[arg(long)]
    json: bool,
    /// List every check, OK ones included (default: a summary, then only
    /// what is not OK).
    #[arg(long, short)]
    verbose: bool,
    /// Re-score every prediction from its raw output, and download every
    /// MLflow artifact and compare its sha256 (not just its size).
    #[arg(long)]
    deep: bool,
    /// Only check the local record (skip MLflow).
    #[arg(long)]
    local_only: bool,
    /// Directory holding the run folders.
    #[arg(long, env = "W2C_RUNS_DIR", default_value = "runs")]
    runs_dir: PathBuf,
}

/// The arguments of `w2c report`.
#[derive(Debug, Args)]
struct ReportArgs {
    /// The sessions: RUN_KEY/FINGERPRINT, a fingerprint prefix or a
    /// session directory each; none = every session (of --run-key, when
    /// given).
    #[arg(value_name = "SESSION")]
    sessions: Vec<String>,
    #[command(flatten)]
    run_key: RunKeyArg,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: report::Format,
    /// Text: w2c's own metrics too, and the confusion matrices (the default
    /// shows the headline: accuracy, F1 and ToolHall as the paper's table
    /// in `table` defines them — NVIDIA's aggregate for a judge under
    /// protocol `when2call` — with the rows it leaves out, invalid, cost).
    #[arg(long)]
    wide: bool,
    /// Write to this file instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The bootstrap draws of the agreement rows and (HTML) the comparison,
    /// as `w2c compare` makes them.
    #[command(flatten)]
    bootstrap: BootstrapArgs,
    /// HTML: compare sessions whose dataset file, gold labels or method
    /// settings differ, saying what differs (else the page says why they
    /// are not compared).
    #[arg(long)]
    allow_differences: bool,
    /// Directory holding the run folders.
    #[arg(long, env = "W2C_RUNS_DIR", default_value = "runs")]
    runs_dir: PathBuf,
}

/// The bootstrap draws of a comparison, the same in `w2c compare` and the
/// HTML report.
#[derive(Debug, Args)]
struct BootstrapArgs {
    /// Bootstrap resamples of the comparison (100-100000).
    #[arg(long, default_value_t = crate::compare::RESAMPLES as u32, value_parser = clap::value_parser!(u32).range(100..=100_000))]
    resamples: u32,
    /// Seed of the comparison's bootstrap draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Resample the comparison within each gold label (the label mix kept,
    /// as the When2Call file is balanced by design); default: over all
    /// examples.
    #[arg(long)]
    stratify_by_gold: bool,
}

/// The arguments of `w2c compare`.
#[derive(Debug, Args)]
struct CompareArgs {
    /// The sessions, two or more: RUN_KEY/FINGERPRINT, a fingerprint
    /// prefix or a session directory each.
    #[arg(num_args = 2.., required = true, value_name = "SESSION")]
    sessions: Vec<String>,
    #[command(flatten)]
    run_key: RunKeyArg,
    /// Only this method namespace (repeatable; default: every finished one they share).
    #[arg(long = "method")]
    methods: Vec<String>,
    /// Compare the examples every session has when they differ (else refuse).
    #[arg(long)]
    intersection: bool,
    /// Compare sessions whose dataset file, gold labels or method settings
    /// (judge model, protocol, prompts, option order...) differ; every
    /// output then says what differs (else refuse, naming it).
    #[arg(long)]
    allow_differences: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: report::Format,
    /// Write to this file instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write every example where the models disagree to this JSONL file.
    #[arg(long)]
    disagreements: Option<PathBuf>,
    /// Also file the comparison in MLflow: on the parent run of every
    /// tracked session compared, its tables as artifacts (`compare/<fps>/`)
    /// and its differences and tests as metrics (`compare.<method>...`).
    #[arg(long)]
    mlflow: bool,
    /// The bootstrap's draws.
    #[command(flatten)]
    bootstrap: BootstrapArgs,
    /// Directory holding the run folders.
    #[arg(long, env = "W2C_RUNS_DIR", default_value = "runs")]
    runs_dir: PathBuf,
}

/// The arguments of `w2c ls`.
#[derive(Debug, Args)]
struct LsArgs {
    /// Only the sessions of this run key.
    #[arg(long = "run-key", value_name = "RUN_KEY")]
    run_key: Option<String>,
    /// Directory holding the run folders.
    #[arg(long, env = "W2C_RUNS_DIR", default_value = "runs")]
    runs_dir: PathBuf,
}

/// The arguments of `w2c show`.
#[derive(Debug, Args)]
struct ShowArgs {
    #[command(flatten)]
    session: SessionArgs,
}

/// The arguments of `w2c completions`.
#[derive(Debug, Args)]
struct CompletionsArgs {
    /// The shell.
    shell: clap_complete::Shell,
}

/// The arguments of `w2c status`.
#[derive(Debug, Args)]
struct StatusArgs {
    /// Only these sessions: RUN_KEY/FINGERPRINT, a fingerprint prefix or a
    /// session directory each (default: every session).
    #[arg(value_name = "SESSION")]
    sessions: Vec<String>,
    #[command(flatten)]
    run_key: RunKeyArg,
    /// Directory holding the run folders.
    #[arg(long, env = "W2C_RUNS_DIR", default_value = "runs")]
    runs_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum DebugCommand {
    /// Print the official lm-eval When2Call prompt (context) and choices of
    /// every dataset row, one JSON line per row and variant.
    RenderOfficial {
        /// Only this task variant (repeatable); every variant when left out.
        #[arg(long)]
        variant: Vec<OfficialVariant>,
        /// The When2Call JSONL file.
        #[arg(long)]
        dataset: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a config and say what a run would do: each session's
    /// fingerprint and address, its plan, requests and estimated cost.
    #[command(
        after_help = "Example:\n  w2c config check configs/demo.toml\n\nA campaign ([[targets]]) gets one block per target: the session `w2c run` creates for it,\nits plan and cost, then the campaign's totals. The run key is resolved as `w2c run`\nresolves it (--run-key, W2C_RUN_KEY, `run.run_key`, a campaign's name)."
    )]
    Check(ConfigCheckArgs),
}

/// The arguments of `w2c config check`.
#[derive(Debug, Args)]
struct ConfigCheckArgs {
    /// The TOML config file.
    file: PathBuf,
    /// The run key `w2c run` would be given (else W2C_RUN_KEY, else
    /// `run.run_key`, else a campaign's name).
    #[arg(long)]
    run_key: Option<String>,
    /// Directory holding the run folders (else W2C_RUNS_DIR, else the
    /// config's `run.runs_dir`).
    #[arg(long, env = "W2C_RUNS_DIR")]
    runs_dir: Option<PathBuf>,
}

/// Parses arguments, runs the command and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            if let Some(name) = empty_path_variable(&e) {
                eprintln!(
                    "error: environment variable `{name}` is set but empty: set it to a directory or unset it"
                );
                return EXIT_ERROR;
            }
            e.exit()
        }
    };
    match dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            if err.downcast_ref::<session::SessionBusy>().is_some() {
                EXIT_BUSY
            } else {
                EXIT_ERROR
            }
        }
    }
}

/// The variable behind a parse error that is an environment problem, not
/// a command-line one: `W2C_RUNS_DIR` set to nothing, which clap reads as
/// an empty `--runs-dir` (exit 1 naming the variable, not exit 2 naming a
/// flag the user did not type).
fn empty_path_variable(e: &clap::Error) -> Option<&'static str> {
    // A path, read as it is (not text: see `env_vars::READ_AS_TEXT`).
    let empty = std::env::var_os("W2C_RUNS_DIR").is_some_and(|v| v.is_empty());
    let typed = std::env::args_os()
        .skip(1)
        .any(|a| a.to_string_lossy().starts_with("--runs-dir"));
    let about_it = e.to_string().contains("--runs-dir");
    (empty && !typed && about_it).then_some("W2C_RUNS_DIR")
}

/// Lets a printing command end quietly when its output pipe closes
/// (`w2c ls | head`), as Unix tools do, instead of failing on a write.
fn exit_quietly_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread
    // is started; no handler is installed.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn dispatch(cli: Cli) -> Result<i32> {
    if !matches!(
        cli.command,
        Command::Run(_) | Command::Resume(_) | Command::Finalize(_) | Command::MockServer(_)
    ) {
        exit_quietly_on_closed_pipe();
    }
    if matches!(
        cli.command,
        Command::Run(_) | Command::Resume(_) | Command::Sync(_) | Command::Verify(_)
    ) {
        // These read the run key and MLflow settings from the environment.
        crate::env_vars::check_unicode(crate::env_vars::READ_AS_TEXT)?;
    }
    match cli.command {
        Command::Run(args) => commands::run(args),
        Command::Resume(args) => commands::resume(args),
        Command::Plan(args) => commands::plan(args),
        Command::Finalize(args) => commands::finalize(args),
        Command::Sync(args) => commands::sync(args),
        Command::Status(args) => commands::status(args),
        Command::Verify(args) => commands::verify(args),
        Command::Report(args) => commands::report(args),
        Command::Compare(args) => commands::compare(args),
        Command::Ls(args) => commands::ls(args),
        Command::Show(args) => commands::show(args),
        Command::Completions(args) => commands::completions(args),
        Command::MockServer(opts) => commands::mock_server(opts),
        Command::Debug(DebugCommand::RenderOfficial { variant, dataset }) => {
            commands::render_official(&dataset, &variant)
        }
        Command::Config(ConfigCommand::Check(args)) => commands::config_check(args),
    }
}
