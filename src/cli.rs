//! Command-line interface: argument parsing, dispatch, printing and exit codes.
//! Library modules return errors; only this module talks to the user.

use crate::config;
use crate::engine::Cancel;
use crate::fingerprint::short;
use crate::official_task::OfficialVariant;
use crate::outcome::RunStatus;
use crate::report;
use crate::runner::{self, RunRequest};
use crate::store::{layout, session, NamespaceDir};
use crate::tracking;
use anyhow::Result;
use clap::{Parser, Subcommand};
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
/// Exit code: interrupted by Ctrl-C (progress saved).
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
    Run {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Name of the run folder (else W2C_RUN_KEY, else `run.run_key`, else generated).
        #[arg(long)]
        run_key: Option<String>,
        /// Do not track in MLflow even if MLFLOW_TRACKING_URI is set (the
        /// session is recorded as offline; `w2c sync` sends it later).
        #[arg(long)]
        no_tracking: bool,
    },
    /// Continue a session from its fingerprint alone (the manifest holds the config).
    #[command(after_help = "Example:\n  w2c resume 3f2a9c1d")]
    Resume {
        /// Fingerprint of the session (a unique prefix of at least 4 hex characters).
        fingerprint: String,
        /// Directory holding the run folders.
        #[arg(long, env = "W2C_RUNS_DIR", default_value = "runs")]
        runs_dir: PathBuf,
        /// Restrict the search to one run key.
        #[arg(long)]
        run_key: Option<String>,
        /// Do not track in MLflow even if MLFLOW_TRACKING_URI is set.
        #[arg(long)]
        no_tracking: bool,
    },
    /// Send a stopped session (offline, or partly tracked) to MLflow.
    #[command(
        after_help = "Example:\n  MLFLOW_TRACKING_URI=http://127.0.0.1:5000 w2c sync 3f2a9c1d\n\nReconnects to the session's runs (by stored id, else by tags) or creates them, logs\nparams and final metrics, uploads artifacts missing or changed remotely, and sets each\nrun's status from the local record. Safe to repeat."
    )]
    Sync {
        /// Fingerprint (prefix) of the session.
        fingerprint: String,
        /// Directory holding the run folders.
        #[arg(long, env = "W2C_RUNS_DIR", default_value = "runs")]
        runs_dir: PathBuf,
        /// Restrict the search to one run key.
        #[arg(long)]
        run_key: Option<String>,
        /// Experiment name (else MLFLOW_EXPERIMENT_NAME, else the config's, else `when2call`).
        #[arg(long)]
        experiment: Option<String>,
    },
    /// Cross-check sessions' checkpoints, markers, artifacts and metrics.
    #[command(
        after_help = "Examples:\n  w2c verify 3f2a9c1d\n  w2c verify 3f2a9c1d --deep        # also download every MLflow artifact and compare sha256\n  w2c verify --all --json > report.json\n\nTracked sessions are checked against the server in mlflow_ids.json (or MLFLOW_TRACKING_URI).\nExit codes: 0 everything matches; 5 a mismatch or a missing file; 6 something could not be\nchecked (tracking server unreachable or credentials refused) and nothing mismatched; 1 error."
    )]
    Verify {
        /// Fingerprint (prefix) of the session to check, or its directory
        /// (also a session directory written by the Python suite).
        fingerprint: Option<String>,
        /// Check every session under the runs directory.
        #[arg(long, conflicts_with = "fingerprint")]
        all: bool,
        /// Only sessions of this run key.
        #[arg(long)]
        run_key: Option<String>,
        /// Emit a machine-readable JSON report.
        #[arg(long)]
        json: bool,
        /// Download every MLflow artifact and compare its sha256 (not just its size).
        #[arg(long)]
        deep: bool,
        /// Only check the local record (skip MLflow).
        #[arg(long, conflicts_with = "deep")]
        local_only: bool,
        /// Directory holding the run folders.
        #[arg(long, env = "W2C_RUNS_DIR", default_value = "runs")]
        runs_dir: PathBuf,
    },
    /// Report the metrics of one or more sessions side by side.
    #[command(
        after_help = "Examples:\n  w2c report 3f2a9c1d\n  w2c report 3f2a9c1d 9b1e7a20 --format html --out compare.html"
    )]
    Report {
        /// Fingerprints (prefixes) of the sessions; none = every session.
        fingerprints: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: report::Format,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Directory holding the run folders.
        #[arg(long, env = "W2C_RUNS_DIR", default_value = "runs")]
        runs_dir: PathBuf,
    },
    /// List sessions grouped by run key.
    #[command(after_help = "Example:\n  w2c ls --run-key demo")]
    Ls {
        /// Only this run key.
        #[arg(long)]
        run_key: Option<String>,
        /// Directory holding the run folders.
        #[arg(long, env = "W2C_RUNS_DIR", default_value = "runs")]
        runs_dir: PathBuf,
    },
    /// Print a session's resolved config and where everything is.
    #[command(after_help = "Example:\n  w2c show 3f2a9c1d")]
    Show {
        /// Fingerprint (prefix) of the session.
        fingerprint: String,
        /// Directory holding the run folders.
        #[arg(long, env = "W2C_RUNS_DIR", default_value = "runs")]
        runs_dir: PathBuf,
        /// Restrict the search to one run key.
        #[arg(long)]
        run_key: Option<String>,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Example:\n  w2c completions bash > ~/.local/share/bash-completion/completions/w2c"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// List sessions with their progress.
    #[command(after_help = "Example:\n  w2c status --runs-dir runs")]
    Status {
        /// Directory holding the run folders.
        #[arg(long, env = "W2C_RUNS_DIR", default_value = "runs")]
        runs_dir: PathBuf,
    },
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
    /// Validate a config and print its session fingerprint, without running anything.
    #[command(after_help = "Example:\n  w2c config check configs/demo.toml")]
    Check {
        /// The TOML config file.
        file: PathBuf,
    },
}

/// Parses arguments, runs the command and returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
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
        Command::Run { .. } | Command::Resume { .. } | Command::MockServer(_)
    ) {
        exit_quietly_on_closed_pipe();
    }
    match cli.command {
        Command::Run {
            config,
            run_key,
            no_tracking,
        } => {
            let loaded = config::load(&config)?;
            let config::RunKey { key, source, given } =
                runner::run_key_for(&loaded.config, run_key.as_deref())?;
            if source == config::RunKeySource::Generated {
                eprintln!(
                    "run key: {key} (generated; pass --run-key or set W2C_RUN_KEY to choose one)"
                );
            }
            if let Some(given) = given {
                eprintln!(
                    "note: run key {given:?} ({}) is used as `{key}` (a run key keeps A-Z, a-z, 0-9, `_` and `-`)",
                    source.describe()
                );
            }
            let tracking = tracking_for(&loaded.config, no_tracking)?;
            execute(
                RunRequest {
                    config: loaded.config,
                    run_key: key,
                    resuming: None,
                },
                tracking,
            )
        }
        Command::Resume {
            fingerprint,
            runs_dir,
            run_key,
            no_tracking,
        } => {
            let found = session::find(&runs_dir, &fingerprint, run_key.as_deref())?;
            let mut config = runner::config_from_manifest(&found)?;
            // The session lives where it was found, even if the folder moved.
            if let Some(rk_dir) = found.dir.parent().and_then(|p| p.parent()) {
                if let Some(runs) = rk_dir.parent() {
                    config.run.runs_dir = runs.to_path_buf();
                }
            }
            let tracking = tracking_for(&config, no_tracking)?;
            execute(
                RunRequest {
                    config,
                    run_key: found.manifest.run_key.clone(),
                    resuming: Some(found.manifest),
                },
                tracking,
            )
        }
        Command::Sync {
            fingerprint,
            runs_dir,
            run_key,
            experiment,
        } => {
            let found = session::find(&runs_dir, &fingerprint, run_key.as_deref())?;
            let config = runner::config_from_manifest(&found)?;
            let ids = tracking::ids::MlflowIds::load(&found.dir)?;
            let Some(mut target) =
                tracking::resolve_for_session(&config.tracking, &ids, &tracking::process_env)?
            else {
                anyhow::bail!(
                    "no tracking server to sync to: the session records none and MLFLOW_TRACKING_URI is not set (e.g. http://127.0.0.1:5000)"
                );
            };
            if let Some(name) = experiment {
                target.experiment = name;
            }
            let _lock = session::lock(&found.dir)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let synced =
                runtime.block_on(tracking::sync_session(&target, &found.dir, &found.manifest))?;
            println!(
                "synced session {} to {} (experiment {} id {})",
                short(&found.manifest.fingerprint),
                target.uri,
                target.experiment,
                synced.experiment_id
            );
            println!("  parent run  {}", synced.parent_run_id);
            for (ns, id, status, sent) in &synced.namespaces {
                println!("  {ns:<32} {id}  {status:<8} {sent} file(s) uploaded");
            }
            Ok(EXIT_OK)
        }
        Command::Status { runs_dir } => {
            let rows: Vec<report::StatusRow> = session::list(&runs_dir)
                .into_iter()
                .map(|s| {
                    let total = s.manifest.n_examples;
                    let methods = session::namespaces(&s.dir)
                        .into_iter()
                        .map(|(ns, _)| {
                            let dir = NamespaceDir::new(&s.dir, &ns);
                            let done = count_results(&dir);
                            let finished = dir.is_done();
                            (ns, done.min(total), total, finished)
                        })
                        .collect();
                    let running_pid = session::holder(&s.dir);
                    report::StatusRow {
                        session: s,
                        methods,
                        running_pid,
                    }
                })
                .collect();
            if rows.is_empty() {
                println!("no sessions under {}", runs_dir.display());
            } else {
                print!("{}", report::status_table(&rows));
            }
            Ok(EXIT_OK)
        }
        Command::Verify {
            fingerprint,
            all,
            run_key,
            json,
            deep,
            local_only,
            runs_dir,
        } => {
            // Sessions written by the Python suite are checked by their own rules.
            let mut python_dirs: Vec<PathBuf> = Vec::new();
            let sessions = match (&fingerprint, all) {
                (Some(fp), _) if layout::manifest(std::path::Path::new(fp)).is_file() => {
                    let dir = PathBuf::from(fp);
                    if crate::verify::python_suite::is_python_session(&dir) {
                        python_dirs.push(dir);
                        Vec::new()
                    } else {
                        vec![session::FoundSession {
                            manifest: crate::store::read_json(&layout::manifest(&dir))?,
                            dir,
                        }]
                    }
                }
                (Some(fp), _) if looks_like_path(fp) => anyhow::bail!("{}", not_a_session(fp)),
                (Some(fp), _) => vec![session::find(&runs_dir, fp, run_key.as_deref())?],
                (None, true) => {
                    python_dirs = python_session_dirs(&runs_dir, run_key.as_deref());
                    session::list(&runs_dir)
                        .into_iter()
                        .filter(|s| run_key.as_deref().is_none_or(|k| s.manifest.run_key == k))
                        .collect()
                }
                (None, false) => {
                    anyhow::bail!("name a session (fingerprint prefix or directory), or pass --all")
                }
            };
            if sessions.is_empty() && python_dirs.is_empty() {
                anyhow::bail!("no sessions under {}", runs_dir.display());
            }
            let mut checks: Vec<crate::verify::Check> = python_dirs
                .iter()
                .flat_map(|d| crate::verify::python_suite::verify_python_session(d))
                .collect();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            for s in &sessions {
                checks.extend(crate::verify::verify_local(s));
                if !local_only {
                    checks.extend(
                        runtime.block_on(crate::verify::tracking::verify_tracking(s, deep)),
                    );
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&checks)?);
            } else {
                print!("{}", report::verify_table(&checks));
            }
            Ok(if crate::verify::all_ok(&checks) {
                EXIT_OK
            } else if crate::verify::any_mismatch(&checks) {
                EXIT_MISMATCH
            } else {
                EXIT_CANNOT_CHECK
            })
        }
        Command::Report {
            fingerprints,
            format,
            out,
            runs_dir,
        } => {
            let sessions = if fingerprints.is_empty() {
                session::list(&runs_dir)
            } else {
                fingerprints
                    .iter()
                    .map(|fp| session::find(&runs_dir, fp, None))
                    .collect::<Result<Vec<_>>>()?
            };
            let entries: Vec<report::ReportEntry> =
                sessions.iter().flat_map(report::collect).collect();
            if entries.is_empty() {
                anyhow::bail!("no finished methods to report under {}", runs_dir.display());
            }
            let text = report::render(&entries, format)?;
            match out {
                Some(path) => {
                    crate::store::write_bytes_atomic(&path, text.as_bytes())?;
                    eprintln!("wrote {}", path.display());
                }
                None => print!("{text}"),
            }
            Ok(EXIT_OK)
        }
        Command::Ls { run_key, runs_dir } => {
            let sessions: Vec<_> = session::list(&runs_dir)
                .into_iter()
                .filter(|s| run_key.as_deref().is_none_or(|k| s.manifest.run_key == k))
                .collect();
            if sessions.is_empty() {
                println!("no sessions under {}", runs_dir.display());
                return Ok(EXIT_OK);
            }
            let mut current = String::new();
            for s in sessions {
                if s.manifest.run_key != current {
                    current = s.manifest.run_key.clone();
                    println!("{current}");
                }
                let namespaces: Vec<String> = session::namespaces(&s.dir)
                    .into_iter()
                    .map(|(ns, _)| {
                        let done = NamespaceDir::new(&s.dir, &ns).is_done();
                        format!("{ns}{}", if done { "" } else { "*" })
                    })
                    .collect();
                println!(
                    "  {}  {}  {} examples  {}",
                    short(&s.manifest.fingerprint),
                    s.manifest.created_at,
                    s.manifest.n_examples,
                    namespaces.join(" ")
                );
            }
            println!("(* = not finished)");
            Ok(EXIT_OK)
        }
        Command::Show {
            fingerprint,
            runs_dir,
            run_key,
        } => {
            let found = session::find(&runs_dir, &fingerprint, run_key.as_deref())?;
            let m = &found.manifest;
            println!("session      {}", found.dir.display());
            println!("run key      {}", m.run_key);
            println!("fingerprint  {}", m.fingerprint);
            println!("created      {}  (w2c {})", m.created_at, m.w2c_version);
            println!("updated      {}", m.updated_at);
            println!("examples     {}", m.n_examples);
            println!(
                "fingerprint payload:\n{}",
                serde_json::to_string_pretty(&m.fingerprint_payload)?
            );
            println!(
                "resolved config:\n{}",
                serde_json::to_string_pretty(&m.config)?
            );
            match crate::tracking::ids::MlflowIds::load(&found.dir) {
                Ok(ids) if ids.mode == crate::tracking::ids::Mode::Online => {
                    println!(
                        "mlflow       {} experiment {} ({}), parent run {}; {}",
                        ids.tracking_uri.as_deref().unwrap_or("?"),
                        ids.experiment_name.as_deref().unwrap_or("?"),
                        ids.experiment_id.as_deref().unwrap_or("?"),
                        ids.parent_run_id.as_deref().unwrap_or("none"),
                        report::tracking_state(&found.dir)
                    );
                    for p in &ids.pending {
                        println!("  pending: {p}");
                    }
                }
                _ => println!("mlflow       offline (`w2c sync` sends the session to MLflow)"),
            }
            println!("namespaces:");
            for (ns, settings) in session::namespaces(&found.dir) {
                let dir = NamespaceDir::new(&found.dir, &ns);
                let child = crate::tracking::ids::MlflowIds::load(&found.dir)
                    .ok()
                    .and_then(|ids| ids.child_run_ids.get(&ns).cloned());
                println!(
                    "  {ns}  ({}, settings {})\n    checkpoints {}\n    artifacts   {}",
                    if dir.is_done() {
                        "done"
                    } else {
                        "not finished"
                    },
                    crate::fingerprint::prefix(&settings.settings_hash, 12),
                    dir.checkpoints.display(),
                    dir.artifacts.display()
                );
                if let Some(id) = child {
                    println!("    mlflow run  {id}");
                }
            }
            Ok(EXIT_OK)
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "w2c", &mut std::io::stdout());
            Ok(EXIT_OK)
        }
        Command::MockServer(opts) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(crate::mock_server::run(opts))?;
            Ok(EXIT_OK)
        }
        Command::Debug(DebugCommand::RenderOfficial { variant, dataset }) => {
            render_official(&dataset, &variant)
        }
        Command::Config(ConfigCommand::Check { file }) => {
            let loaded = config::load(&file)?;
            let prepared = runner::prepare(&loaded.config)?;
            if let Some(short) = prepared.short_labels {
                anyhow::bail!("{short}");
            }
            println!("{}: ok", file.display());
            println!("fingerprint: {}", prepared.fingerprint);
            println!(
                "examples: {} selected of {} in {}",
                prepared.n_selected,
                prepared.dataset.n_examples,
                prepared.dataset.path.display()
            );
            let methods: Vec<&str> = loaded
                .config
                .methods
                .enabled
                .iter()
                .map(|m| m.as_str())
                .collect();
            println!("methods: {}", methods.join(", "));
            Ok(EXIT_OK)
        }
    }
}

/// `w2c debug render-official`: every row of `dataset` rendered with each
/// variant (all when none given), as JSON lines on standard output. A row a
/// variant cannot render gets an `error` line; the exit code is then 1.
fn render_official(dataset: &std::path::Path, variants: &[OfficialVariant]) -> Result<i32> {
    use std::io::Write as _;
    let ds = crate::dataset::load(dataset)?;
    let variants = if variants.is_empty() {
        &OfficialVariant::ALL[..]
    } else {
        variants
    };
    let hashes: Vec<String> = variants.iter().map(|v| v.template_sha256()).collect();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let (mut failed, mut first) = (0usize, None);
    for ex in &ds.examples {
        for (v, sha) in variants.iter().zip(&hashes) {
            let line = match v.render_example(ex) {
                Ok(p) => serde_json::json!({
                    "uuid": ex.uuid,
                    "variant": v,
                    "template_sha256": sha,
                    "context": p.context,
                    "choices": p.choices,
                    "target_index": ex.gold.index(),
                }),
                Err(e) => {
                    failed += 1;
                    first.get_or_insert_with(|| format!("row uuid {}: {e}", ex.uuid));
                    serde_json::json!({
                        "uuid": ex.uuid,
                        "variant": v,
                        "error": e.to_string(),
                        "python_raises": e.python_raises(),
                    })
                }
            };
            writeln!(out, "{line}")?;
        }
    }
    out.flush()?;
    if let Some(first) = first {
        eprintln!(
            "error: {}: {failed} of {} renderings failed; first: {first}",
            dataset.display(),
            ds.examples.len() * variants.len()
        );
        return Ok(EXIT_ERROR);
    }
    Ok(EXIT_OK)
}

/// Whether a `verify` argument names a path rather than a fingerprint prefix.
fn looks_like_path(arg: &str) -> bool {
    let hex = arg.len() >= 4 && arg.chars().all(|c| c.is_ascii_hexdigit());
    arg.contains('/')
        || arg.contains(std::path::MAIN_SEPARATOR)
        || (!hex && std::path::Path::new(arg).exists())
}

/// Why a path given to `verify` is not a session it can check.
fn not_a_session(arg: &str) -> String {
    let p = std::path::Path::new(arg);
    if !p.exists() {
        format!("`{arg}`: no such directory (give a session directory or a fingerprint prefix)")
    } else if !p.is_dir() {
        format!("`{arg}` is a file, not a session directory")
    } else {
        format!(
            "`{arg}` is not a session directory: it has no manifest.json (a session lives in <runs>/<run key>/sessions/<fingerprint16>; `w2c status` lists them)"
        )
    }
}

/// Session directories under `runs_dir` written by the Python suite.
fn python_session_dirs(runs_dir: &std::path::Path, run_key: Option<&str>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for rk in std::fs::read_dir(runs_dir).into_iter().flatten().flatten() {
        if run_key.is_some_and(|k| rk.file_name().to_string_lossy() != k) {
            continue;
        }
        for s in std::fs::read_dir(rk.path().join("sessions"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if crate::verify::python_suite::is_python_session(&s.path()) {
                out.push(s.path());
            }
        }
    }
    out.sort();
    out
}

/// Where a run is tracked, and why not when it is offline.
fn tracking_for(
    config: &config::Config,
    no_tracking: bool,
) -> Result<(Option<tracking::Target>, String)> {
    let target = tracking::resolve(&config.tracking, no_tracking, &tracking::process_env)?;
    let reason = tracking::offline_reason(no_tracking, &tracking::process_env);
    Ok((target, reason.to_string()))
}

/// Items with a result in a namespace: for a finished one, the count its
/// `_DONE.json` recorded (`w2c verify` checks it against the file); else
/// the distinct keys of its `results.jsonl`, streamed.
fn count_results(dir: &NamespaceDir) -> usize {
    #[derive(serde::Deserialize)]
    struct KeyOnly {
        key: String,
    }
    if let Ok(done) = crate::store::read_json::<crate::store::DoneMarker>(&dir.done_marker()) {
        return done.n_items;
    }
    let mut keys = std::collections::HashSet::new();
    match crate::store::read_jsonl(&dir.results(), |k: KeyOnly| {
        keys.insert(k.key);
    }) {
        Ok(_) => keys.len(),
        Err(_) => 0,
    }
}

/// Runs a request: opens the session, connects its tracker (or records it
/// offline), runs every method with Ctrl-C handling, prints the summary and
/// returns the exit code.
fn execute(req: RunRequest, tracking: (Option<tracking::Target>, String)) -> Result<i32> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let cancel = Cancel::default();
        let on_signal = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\ninterrupt: finishing requests in flight and saving progress (Ctrl-C again to exit now)");
                on_signal.cancel();
                if tokio::signal::ctrl_c().await.is_ok() {
                    // Every checkpoint line is written with one write call, so
                    // the session is consistent on disk even now.
                    std::process::exit(EXIT_INTERRUPTED);
                }
            }
        });
        let opened = runner::open(req)?;
        let s = &opened.session;
        eprintln!(
            "{} session {} (run key {}) at {}",
            if s.created { "new" } else { "resuming" },
            short(&s.manifest.fingerprint),
            s.manifest.run_key,
            s.dir.display()
        );
        let (target, offline_reason) = tracking;
        let tracker =
            tracking::Tracker::for_session(target.as_ref(), &offline_reason, &s.dir, &s.manifest)
                .await?;
        let report = opened.execute(&tracker, &cancel).await?;
        for note in &report.notes {
            eprintln!("note: {note}");
        }
        print!("{}", report::run_summary(&report));
        println!("{}", report::run_status_line(&report));
        Ok(match report.status {
            RunStatus::Complete => EXIT_OK,
            RunStatus::Incomplete => EXIT_INCOMPLETE,
            RunStatus::Interrupted => EXIT_INTERRUPTED,
        })
    })
}
