//! One function per subcommand (and their helpers): each reads its
//! arguments, calls the library and prints; the exit code goes back to
//! [`super::main`].

use super::{
    Cli, CompletionsArgs, LsArgs, ReportArgs, ResumeArgs, RunArgs, ShowArgs, StatusArgs, SyncArgs,
    VerifyArgs, EXIT_CANNOT_CHECK, EXIT_ERROR, EXIT_INCOMPLETE, EXIT_INTERRUPTED, EXIT_MISMATCH,
    EXIT_OK,
};
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
use std::path::PathBuf;

/// `w2c mock-server`: serves until killed.
pub(super) fn mock_server(opts: crate::mock_server::MockServerOptions) -> Result<i32> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(crate::mock_server::run(opts))?;
    Ok(EXIT_OK)
}

/// `w2c config check`.
pub(super) fn config_check(file: &std::path::Path) -> Result<i32> {
    let loaded = config::load(file)?;
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

/// `w2c run`.
pub(super) fn run(
    RunArgs {
        config,
        run_key,
        no_tracking,
    }: RunArgs,
) -> Result<i32> {
    let loaded = config::load(&config)?;
    let config::RunKey { key, source, given } =
        runner::run_key_for(&loaded.config, run_key.as_deref())?;
    if source == config::RunKeySource::Generated {
        eprintln!("run key: {key} (generated; pass --run-key or set W2C_RUN_KEY to choose one)");
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

/// `w2c resume`.
pub(super) fn resume(
    ResumeArgs {
        session,
        no_tracking,
    }: ResumeArgs,
) -> Result<i32> {
    let found = session.find()?;
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

/// `w2c sync`.
pub(super) fn sync(
    SyncArgs {
        session,
        experiment,
    }: SyncArgs,
) -> Result<i32> {
    let found = session.find()?;
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
    let synced = runtime.block_on(tracking::sync_session(&target, &found.dir, &found.manifest))?;
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
    println!("  traces sent {}", synced.traces);
    Ok(EXIT_OK)
}

/// `w2c status`.
pub(super) fn status(StatusArgs { runs_dir }: StatusArgs) -> Result<i32> {
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

/// `w2c verify`.
pub(super) fn verify(
    VerifyArgs {
        fingerprint,
        all,
        run_key,
        json,
        deep,
        local_only,
        runs_dir,
    }: VerifyArgs,
) -> Result<i32> {
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
            checks.extend(runtime.block_on(crate::verify::tracking::verify_tracking(s, deep)));
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

/// `w2c report`.
pub(super) fn report(
    ReportArgs {
        fingerprints,
        format,
        out,
        runs_dir,
    }: ReportArgs,
) -> Result<i32> {
    let sessions = if fingerprints.is_empty() {
        session::list(&runs_dir)
    } else {
        fingerprints
            .iter()
            .map(|fp| session::find(&runs_dir, fp, None))
            .collect::<Result<Vec<_>>>()?
    };
    let entries: Vec<report::ReportEntry> = sessions.iter().flat_map(report::collect).collect();
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

/// `w2c ls`.
pub(super) fn ls(LsArgs { run_key, runs_dir }: LsArgs) -> Result<i32> {
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

/// `w2c show`.
pub(super) fn show(ShowArgs { session }: ShowArgs) -> Result<i32> {
    let found = session.find()?;
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

/// `w2c completions`.
pub(super) fn completions(CompletionsArgs { shell }: CompletionsArgs) -> Result<i32> {
    use clap::CommandFactory;
    clap_complete::generate(shell, &mut Cli::command(), "w2c", &mut std::io::stdout());
    Ok(EXIT_OK)
}

/// `w2c debug render-official`: every row of `dataset` rendered with each
/// variant (all when none given), as JSON lines on standard output. A row a
/// variant cannot render gets an `error` line; the exit code is then 1.
pub(super) fn render_official(
    dataset: &std::path::Path,
    variants: &[OfficialVariant],
) -> Result<i32> {
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
