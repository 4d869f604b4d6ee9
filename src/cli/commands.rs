//! One function per subcommand (and their helpers): each reads its
//! arguments, calls the library and prints; the exit code goes back to
//! [`super::main`].

use super::{
    Cli, CompareArgs, CompletionsArgs, FinalizeArgs, LsArgs, PlanArgs, ReportArgs, ResumeArgs,
    RunArgs, ShardArgs, ShowArgs, StatusArgs, SyncArgs, VerifyArgs, EXIT_CANNOT_CHECK, EXIT_ERROR,
    EXIT_INCOMPLETE, EXIT_MISMATCH, EXIT_OK,
};
use crate::config;
use crate::engine::Cancel;
use crate::official_task::OfficialVariant;
use crate::outcome::RunStatus;
use crate::report;
use crate::runner::{self, RunRequest, Slice, SliceRequest};
use crate::store::{layout, session, NamespaceDir};
use crate::tracking;
use anyhow::{Context as _, Result};
use std::path::PathBuf;
use std::sync::Arc;

/// `w2c mock-server`: serves until killed.
pub(super) fn mock_server(opts: crate::mock_server::MockServerOptions) -> Result<i32> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(crate::mock_server::run(opts))?;
    Ok(EXIT_OK)
}

/// `w2c config check`: validates the config, then says what a run would
/// do: for its one session, or each session of a campaign (one per
/// target), the fingerprint and address it would have (and whether it
/// exists), its plan, the requests per model and an estimate of tokens and
/// cost; a campaign's totals last.
pub(super) fn config_check(
    super::ConfigCheckArgs {
        file,
        run_key,
        runs_dir,
    }: super::ConfigCheckArgs,
) -> Result<i32> {
    let config = load_for_run(&file, runs_dir)?;
    let key = runner::run_key_for(&config, run_key.as_deref())?;
    // Every session's inputs first: an error comes before any output.
    let sessions = config
        .sessions()
        .into_iter()
        .map(|c| {
            let prepared = runner::prepare(&c)?;
            if let Some(short) = &prepared.short_labels {
                anyhow::bail!("{short}");
            }
            let estimates = runner::estimate::estimate(&c, prepared.examples.get()?)?;
            Ok((c, prepared, estimates))
        })
        .collect::<Result<Vec<_>>>()?;
    let campaign = !config.targets.is_empty();
    match &config.run.campaign {
        Some(name) if campaign => println!(
            "{}: ok: campaign {name}, {} targets, one session each",
            file.display(),
            sessions.len()
        ),
        _ => println!("{}: ok", file.display()),
    }
    let (_, first, _) = &sessions[0];
    println!(
        "examples: {} selected of {} in {}",
        first.n_selected,
        first.dataset.n_examples,
        first.dataset.path.display()
    );
    if config.methods.enabled.iter().any(|m| m.uses_judge()) {
        println!("judge: {}", config.judge_provider()?.0);
    }
    println!(
        "run key: {}",
        match key.source {
            config::RunKeySource::Generated => {
                "generated when it runs (set --run-key, W2C_RUN_KEY or `run.run_key` to choose one)"
                    .to_string()
            }
            config::RunKeySource::Config
                if config.run.campaign == config.run.run_key && campaign =>
            {
                format!("{} (the campaign's name)", key.key)
            }
            source => format!("{} ({})", key.key, source.describe()),
        }
    );
    let known_key = (key.source != config::RunKeySource::Generated).then_some(key.key.as_str());
    let (existing, _) = sessions_of(&config.run.runs_dir, None);
    for (c, prepared, estimates) in &sessions {
        println!();
        if campaign {
            println!("== {}", c.models.target);
        } else {
            println!("target: {}", c.models.target);
        }
        println!("fingerprint: {}", prepared.fingerprint);
        let same: Vec<&session::FoundSession> = existing
            .iter()
            .filter(|s| s.manifest.fingerprint == prepared.fingerprint)
            .collect();
        let (this, others): (Vec<_>, Vec<_>) = same
            .into_iter()
            .partition(|s| known_key.is_some_and(|k| s.run_key() == k));
        match (known_key, this.first()) {
            (Some(k), found) => {
                println!(
                    "session: {}",
                    crate::store::address::display(k, &prepared.fingerprint)
                );
                match found {
                    Some(s) => {
                        let counts = crate::store::census(&s.dir, &s.manifest);
                        let done = counts
                            .iter()
                            .filter(|c| c.state == crate::store::NamespaceState::Done)
                            .count();
                        println!(
                            "  exists at {} ({done} of {} namespaces done); `w2c run` continues it",
                            s.dir.display(),
                            counts.len()
                        );
                    }
                    None => println!(
                        "  new: `w2c run` creates it at {}",
                        session::session_dir(&c.run.runs_dir, k, &prepared.fingerprint).display()
                    ),
                }
            }
            (None, _) => println!(
                "session: new, under {} (in the run key generated when it runs)",
                c.run.runs_dir.display()
            ),
        }
        if !others.is_empty() {
            println!(
                "  the same inputs also under another run key: {}",
                others
                    .iter()
                    .map(|s| s.address())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        println!(
            "plan (prompt tokens estimated as characters / 4; completions at most max_tokens):"
        );
        print!("{}", report::estimate_table(estimates));
    }
    if campaign {
        let all: Vec<_> = sessions.iter().flat_map(|(_, _, e)| e.clone()).collect();
        println!("\ncampaign total ({} targets):", sessions.len());
        print!("{}", report::estimate_totals(&all));
    }
    Ok(EXIT_OK)
}

/// A config as `run`, `plan` and `config check` use it: loaded, with
/// `--runs-dir` (or W2C_RUNS_DIR) applied, and a campaign's name as its
/// run key unless one is set.
fn load_for_run(config: &std::path::Path, runs_dir: Option<PathBuf>) -> Result<config::Config> {
    let mut loaded = config::load(config)?;
    if let Some(dir) = runs_dir {
        // Like every other command's --runs-dir / W2C_RUNS_DIR: relative to
        // where the user stands, not to the config file.
        loaded.config.run.runs_dir =
            std::path::absolute(&dir).with_context(|| format!("--runs-dir {}", dir.display()))?;
    }
    if loaded.config.run.run_key.is_none() && !loaded.config.targets.is_empty() {
        // A campaign is run again to continue it: its run key must not be
        // generated anew each time.
        loaded.config.run.run_key = loaded.config.run.campaign.clone();
    }
    Ok(loaded.config)
}

/// The config of `run` and `plan` ([`load_for_run`]) and its run key
/// resolved (said on stderr when generated or sanitized).
fn config_and_key(
    config: &std::path::Path,
    run_key: Option<&str>,
    runs_dir: Option<PathBuf>,
) -> Result<(config::Config, String)> {
    let config = load_for_run(config, runs_dir)?;
    let config::RunKey { key, source, given } = runner::run_key_for(&config, run_key)?;
    if source == config::RunKeySource::Generated {
        eprintln!("run key: {key} (generated; pass --run-key or set W2C_RUN_KEY to choose one)");
    }
    if let Some(given) = given {
        eprintln!(
            "note: run key {given:?} ({}) is used as `{key}` (a run key keeps A-Z, a-z, 0-9, `_` and `-`)",
            source.describe()
        );
    }
    Ok((config, key))
}

/// What `--shard`/`--shards` ask for.
fn slice_request(shard: ShardArgs) -> SliceRequest {
    if shard.shard.is_none() && shard.shards.is_none() {
        SliceRequest::All
    } else {
        SliceRequest::Shard {
            flag: shard.shard,
            shards: shard.shards,
        }
    }
}

/// `w2c run`: one session, or one per target of a campaign (each run as
/// its whole, or as the shard asked for).
pub(super) fn run(
    RunArgs {
        config,
        run_key,
        runs_dir,
        no_tracking,
        shard,
    }: RunArgs,
) -> Result<i32> {
    let (config, key) = config_and_key(&config, run_key.as_deref(), runs_dir)?;
    let tracking = tracking_for(&config, no_tracking)?;
    let slice = slice_request(shard);
    let requests = config
        .sessions()
        .into_iter()
        .map(|config| RunRequest {
            config,
            run_key: key.clone(),
            resuming: None,
            slice: slice.clone(),
        })
        .collect();
    execute(requests, tracking)
}

/// `w2c plan`: the session created (or found) alone, its plan and shard
/// count recorded, its MLflow runs opened; the fingerprint on stdout.
pub(super) fn plan(
    PlanArgs {
        config,
        run_key,
        runs_dir,
        no_tracking,
        shards,
    }: PlanArgs,
) -> Result<i32> {
    let (config, key) = config_and_key(&config, run_key.as_deref(), runs_dir)?;
    if !config.targets.is_empty() {
        anyhow::bail!(
            "`w2c plan` prepares one session; a campaign ([[targets]]) has one per model: plan each with a config naming that model in `models.target`"
        );
    }
    if let Some(n) = shards {
        crate::shard::Shard::new(0, n).map_err(|e| anyhow::anyhow!("--shards: {e}"))?;
    }
    let (target, offline_reason) = tracking_for(&config, no_tracking)?;
    let shards = shards.or(config.run.shards);
    let opened = runner::open(RunRequest {
        config,
        run_key: key,
        resuming: None,
        slice: SliceRequest::All,
    })?;
    let planned = runner::plan(&opened.config)?;
    let recorded = runner::claim_plan(&opened.session, &planned)?;
    let dir = opened.session.dir.clone();
    if let Some(n) = shards {
        if opened.session.manifest.shards != Some(n) {
            session::record_shards(&dir, n)?;
        }
    }
    let manifest: session::Manifest = crate::store::read_json(&layout::manifest(&dir))?;
    let namespaces: Vec<String> = recorded.iter().map(|p| p.namespace.clone()).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let notes = match &target {
        Some(t) => {
            runtime.block_on(tracking::shards::open_runs(t, &dir, &manifest, &namespaces))?
        }
        None => {
            tracking::Tracker::offline(&dir, &offline_reason)?;
            Vec::new()
        }
    };
    for note in notes {
        eprintln!("note: {note}");
    }
    let items: usize = recorded.iter().map(|p| p.items).sum();
    eprintln!(
        "{} session {} at {}: {} namespaces, {items} items{}",
        if opened.session.created {
            "planned new"
        } else {
            "planned"
        },
        opened.session.address(),
        dir.display(),
        recorded.len(),
        match manifest.shards {
            Some(n) => format!(", {n} shards"),
            None => String::new(),
        }
    );
    if let Some(url) = crate::tracking::ids::MlflowIds::load(&dir)
        .ok()
        .and_then(|ids| report::mlflow_run_url(&ids, ids.parent_run_id.as_deref()))
    {
        eprintln!("mlflow: {url}");
    }
    let here = crate::command_hint::Here::current();
    let command = |verb: &str| crate::command_hint::for_session(verb, &dir, &here);
    match manifest.shards {
        Some(n) => eprintln!(
            "next: run each shard with `{} --shard I/{n}` (or `--shard` in a Slurm array / Kubernetes Indexed Job); the last one finalizes, or `{}`",
            command("resume"),
            command("finalize")
        ),
        None => eprintln!(
            "next: `{resume}`, or shards with `{resume} --shard I/N`",
            resume = command("resume")
        ),
    }
    // The address with the whole fingerprint, for scripts: `w2c resume
    // "$SESSION" --shard` finds this session whatever else the runs
    // directory holds.
    println!(
        "{}/{}",
        crate::store::address::run_key_of_dir(&dir).unwrap_or(&manifest.run_key),
        manifest.fingerprint
    );
    Ok(EXIT_OK)
}

/// `w2c finalize`.
pub(super) fn finalize(
    FinalizeArgs {
        session,
        no_tracking,
    }: FinalizeArgs,
) -> Result<i32> {
    let (config, found) = resumed_config(&session)?;
    let tracking = tracking_for(&config, no_tracking)?;
    execute(
        vec![RunRequest {
            config,
            run_key: found.run_key(),
            resuming: Some(found.manifest),
            slice: SliceRequest::Finalize,
        }],
        tracking,
    )
}

/// The stored config of the session `session` names, with its runs dir
/// where the session was found.
fn resumed_config(session: &super::SessionArgs) -> Result<(config::Config, session::FoundSession)> {
    let found = session.find()?;
    let mut config = runner::config_from_manifest(&found)?;
    // The session lives where it was found, even if the folder moved.
    if let Some(rk_dir) = found.dir.parent().and_then(|p| p.parent()) {
        if let Some(runs) = rk_dir.parent() {
            config.run.runs_dir = runs.to_path_buf();
        }
    }
    Ok((config, found))
}

/// `w2c resume`.
pub(super) fn resume(
    ResumeArgs {
        session,
        no_tracking,
        shard,
        check,
    }: ResumeArgs,
) -> Result<i32> {
    let (config, found) = resumed_config(&session)?;
    let tracking = tracking_for(&config, no_tracking)?;
    let address = found.address();
    let req = RunRequest {
        config,
        run_key: found.run_key(),
        resuming: Some(found.manifest),
        slice: slice_request(shard),
    };
    if check {
        let part = match runner::check(&req)? {
            Slice::Shard(r) => format!("shard {} (from {})", r.shard, r.source.describe()),
            _ => "the whole session".into(),
        };
        eprintln!(
            "check: session {address} at {}: a resume would run {part}",
            found.dir.display()
        );
        return Ok(EXIT_OK);
    }
    execute(vec![req], tracking)
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
    // Plain lines as it goes: a sync of thousands of traces takes minutes.
    let mut started = std::time::Instant::now();
    let mut last_line = std::time::Instant::now();
    let mut progress = |step: tracking::SyncStep<'_>| match step {
        tracking::SyncStep::Namespace(ns) => {
            started = std::time::Instant::now();
            eprintln!("sync: {ns}");
        }
        tracking::SyncStep::Traces(ns, sent) => {
            if sent.left == 0 || last_line.elapsed() >= std::time::Duration::from_secs(5) {
                last_line = std::time::Instant::now();
                eprintln!("{}", sync_progress_line(ns, sent, started.elapsed()));
            }
        }
    };
    let synced = runtime.block_on(tracking::sync_session(
        &target,
        &found.dir,
        &found.manifest,
        &mut progress,
    ))?;
    println!(
        "synced session {} to {} (experiment {} id {})",
        found.address(),
        target.uri,
        target.experiment,
        synced.experiment_id
    );
    println!("  parent run  {}", synced.parent_run_id);
    for (ns, id, status, sent) in &synced.namespaces {
        println!("  {ns:<32} {id}  {status:<8} {sent} file(s) uploaded");
    }
    println!("  traces sent {}", synced.traces);
    if synced.failures.is_empty() {
        return Ok(EXIT_OK);
    }
    for f in &synced.failures {
        eprintln!("not sent: {f}");
    }
    anyhow::bail!(
        "{} item(s) could not be sent (listed above and in mlflow_ids.json); everything else is in MLflow — run `w2c sync` again once the cause is fixed",
        synced.failures.len()
    )
}

/// One progress line of `w2c sync`: traces sent and left in a namespace,
/// the rate so far and the time left at that rate.
fn sync_progress_line(
    ns: &str,
    sent: tracking::trace_sender::Sent,
    elapsed: std::time::Duration,
) -> String {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let rate = sent.sent as f64 / secs;
    let eta = if sent.left == 0 {
        "done".to_string()
    } else if rate > 0.0 {
        format!("about {:.0} s left", sent.left as f64 / rate)
    } else {
        "time left unknown".to_string()
    };
    format!(
        "sync: {ns}: {} trace(s) sent, {} pending ({rate:.1}/s, {eta})",
        sent.sent, sent.left
    )
}

/// `w2c status`.
pub(super) fn status(
    StatusArgs {
        sessions: named,
        run_key,
        runs_dir,
    }: StatusArgs,
) -> Result<i32> {
    let (sessions, unreadable) = if named.is_empty() {
        sessions_of(&runs_dir, run_key.listing()?.as_deref())
    } else {
        let scope = run_key.scope()?;
        let (mut found, mut bad) = (Vec::new(), Vec::new());
        for arg in &named {
            match session::resolve(&runs_dir, arg, scope.as_ref()) {
                Ok(s) => found.push(s),
                Err(e) => bad.push(e.downcast::<session::UnreadableSessionError>()?.0),
            }
        }
        (found, bad)
    };
    let mut rows: Vec<report::StatusRow> = sessions
        .into_iter()
        .map(|s| report::StatusRow {
            namespaces: crate::store::census(&s.dir, &s.manifest),
            running_pid: session::holder(&s.dir),
            running_shards: session::shard_holders(&s.dir),
            session: s,
        })
        .collect();
    // A campaign's sessions together (stable: run key, then creation time).
    rows.sort_by(|a, b| {
        report::session_campaign(&a.session.manifest)
            .cmp(&report::session_campaign(&b.session.manifest))
    });
    if rows.is_empty() && unreadable.is_empty() {
        println!("no sessions under {}", runs_dir.display());
    } else {
        print!("{}", report::status_table(&rows, &unreadable));
    }
    Ok(EXIT_OK)
}

/// `w2c verify`.
pub(super) fn verify(
    VerifyArgs {
        session: named,
        all: _,
        run_key,
        json,
        verbose,
        deep,
        local_only,
        runs_dir,
    }: VerifyArgs,
) -> Result<i32> {
    // Sessions written by the Python suite are checked by their own rules.
    let mut python_dirs: Vec<PathBuf> = Vec::new();
    let mut unreadable: Vec<session::UnreadableSession> = Vec::new();
    let mut sessions: Vec<session::FoundSession> = Vec::new();
    match &named {
        Some(arg) => match crate::store::address::SessionRef::parse(arg) {
            crate::store::address::SessionRef::Dir(dir)
                if crate::verify::python_suite::is_python_session(&dir) =>
            {
                python_dirs.push(dir)
            }
            _ => match session::resolve(&runs_dir, arg, run_key.scope()?.as_ref()) {
                Ok(found) => sessions.push(found),
                Err(e) => match e.downcast::<session::UnreadableSessionError>() {
                    Ok(bad) => unreadable.push(bad.0),
                    Err(e) => return Err(e),
                },
            },
        },
        None => {
            let run_key = run_key.listing()?;
            python_dirs = python_session_dirs(&runs_dir, run_key.as_deref());
            (sessions, unreadable) = sessions_of(&runs_dir, run_key.as_deref());
        }
    };
    if sessions.is_empty() && python_dirs.is_empty() && unreadable.is_empty() {
        anyhow::bail!("no sessions under {}", runs_dir.display());
    }
    let mut checks: Vec<crate::verify::Check> = python_dirs
        .iter()
        .flat_map(|d| crate::verify::python_suite::verify_python_session(d))
        .collect();
    checks.extend(unreadable.iter().map(crate::verify::unreadable_session));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    for s in &sessions {
        checks.extend(crate::verify::verify_local(s));
        if deep {
            checks.extend(crate::verify::rescore::verify_rescore(s));
        }
        if !local_only {
            checks.extend(runtime.block_on(crate::verify::tracking::verify_tracking(s, deep)));
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        print!("{}", report::verify_table(&checks, verbose));
    }
    Ok(if crate::verify::all_ok(&checks) {
        EXIT_OK
    } else if crate::verify::any_mismatch(&checks) {
        EXIT_MISMATCH
    } else if crate::verify::any_cannot_check(&checks) || !crate::verify::any_pending(&checks) {
        EXIT_CANNOT_CHECK
    } else {
        super::EXIT_PENDING
    })
}

/// `w2c report`.
pub(super) fn report(
    ReportArgs {
        sessions: named,
        run_key,
        format,
        wide,
        out,
        bootstrap,
        allow_differences,
        runs_dir,
    }: ReportArgs,
) -> Result<i32> {
    let sessions = if named.is_empty() {
        sessions_of(&runs_dir, run_key.listing()?.as_deref()).0
    } else {
        super::resolve_sessions(&runs_dir, &named, &run_key)?
    };
    let mut entries: Vec<report::ReportEntry> = sessions.iter().flat_map(report::collect).collect();
    if entries.is_empty() {
        anyhow::bail!("no finished methods to report under {}", runs_dir.display());
    }
    // How far each session's methods agree (and its sweeps' repeats).
    let mut agreement = Vec::new();
    for s in &sessions {
        agreement.extend(crate::comparison::session_agreement(
            s,
            bootstrap.seed,
            bootstrap.resamples as usize,
        )?);
    }
    for e in &mut entries {
        e.agreement = agreement
            .iter()
            .filter(|a| {
                a.session == e.session && (a.a == e.namespace || a.b.as_ref() == Some(&e.namespace))
            })
            .cloned()
            .collect();
    }
    let text = match format {
        report::Format::Html => crate::html_report::render(
            &sessions,
            crate::html_report::CompareOptions {
                resamples: bootstrap.resamples as usize,
                stratified: bootstrap.stratify_by_gold,
                seed: bootstrap.seed,
                allow_differences,
            },
        )?,
        report::Format::Json => report::render(&entries, format, wide)?,
        _ => {
            report::render(&entries, format, wide)?
                + &crate::comparison::agreement_text(&agreement, format == report::Format::Md)
        }
    };
    match out {
        Some(path) => {
            crate::store::write_user_file(&path, text.as_bytes())?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(EXIT_OK)
}

/// `w2c compare`.
pub(super) fn compare(
    CompareArgs {
        sessions: named,
        run_key,
        methods,
        intersection,
        allow_differences,
        format,
        out,
        disagreements,
        mlflow,
        bootstrap,
        runs_dir,
    }: CompareArgs,
) -> Result<i32> {
    let sessions = super::resolve_sessions(&runs_dir, &named, &run_key)?;
    let comparison = crate::comparison::build(&crate::comparison::Request {
        sessions: &sessions,
        methods: &methods,
        alignment: if intersection {
            crate::comparison::Alignment::Intersection
        } else {
            crate::comparison::Alignment::Same
        },
        allow_differences,
        resamples: bootstrap.resamples as usize,
        seed: bootstrap.seed,
        stratified: bootstrap.stratify_by_gold,
    })?;
    if let Some(path) = &disagreements {
        let mut bytes = Vec::new();
        for d in &comparison.disagreements {
            serde_json::to_writer(&mut bytes, d)?;
            bytes.push(b'\n');
        }
        crate::store::write_user_file(path, &bytes)?;
        eprintln!(
            "wrote {} ({} examples where the models disagree)",
            path.display(),
            comparison.disagreements.len()
        );
    }
    let text = match format {
        report::Format::Json => serde_json::to_string_pretty(&comparison)? + "\n",
        report::Format::Html => crate::comparison::render_html(&comparison),
        report::Format::Md => crate::comparison::render_text(&comparison, true, 20),
        report::Format::Text => crate::comparison::render_text(&comparison, false, 10),
    };
    match out {
        Some(path) => {
            crate::store::write_user_file(&path, text.as_bytes())?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    if mlflow {
        publish_comparison(&sessions, &comparison)?;
    }
    Ok(EXIT_OK)
}

/// Files a comparison on the MLflow parent run of each tracked session
/// compared (an offline session is named and skipped).
fn publish_comparison(
    sessions: &[session::FoundSession],
    comparison: &crate::comparison::Comparison,
) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let files: Vec<(String, PathBuf)> = [
        (
            "compare.json",
            serde_json::to_string_pretty(comparison)? + "\n",
        ),
        (
            "compare.md",
            crate::comparison::render_text(comparison, true, 20),
        ),
        ("compare.html", crate::comparison::render_html(comparison)),
    ]
    .into_iter()
    .map(|(name, text)| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        Ok((name.to_string(), path))
    })
    .collect::<Result<_>>()?;
    let tag = crate::comparison::tag(sessions);
    let labels = crate::comparison::labels(sessions);
    let differences = comparison
        .differences
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    for (s, label) in sessions.iter().zip(&labels) {
        let config = runner::config_from_manifest(s)?;
        let ids = tracking::ids::MlflowIds::load(&s.dir)?;
        let target = match tracking::resolve_for_session(
            &config.tracking,
            &ids,
            &tracking::process_env,
        )? {
            Some(t) if ids.mode == tracking::ids::Mode::Online => t,
            _ => {
                eprintln!(
                    "{label}: offline session, the comparison is not filed in MLflow (`{}` it first)",
                    crate::command_hint::for_session("sync", &s.dir, &crate::command_hint::Here::current())
                );
                continue;
            }
        };
        let metrics = crate::comparison::metrics_for(comparison, label);
        let url = runtime.block_on(tracking::publish_comparison(
            &target,
            &s.dir,
            &s.manifest,
            &tag,
            &files,
            &metrics,
            &differences,
        ))?;
        eprintln!(
            "{label}: comparison filed in MLflow ({} metrics, compare/{tag}/): {url}",
            metrics.len()
        );
    }
    Ok(())
}

/// `w2c ls`.
pub(super) fn ls(LsArgs { run_key, runs_dir }: LsArgs) -> Result<i32> {
    let only = crate::store::address::RunKeyScope::from(run_key.as_deref(), None)?;
    let (sessions, unreadable) = sessions_of(&runs_dir, only.map(|s| s.key).as_deref());
    if sessions.is_empty() && unreadable.is_empty() {
        println!("no sessions under {}", runs_dir.display());
        return Ok(EXIT_OK);
    }
    let rows: Vec<report::StatusRow> = sessions
        .into_iter()
        .map(|s| report::StatusRow {
            namespaces: crate::store::census(&s.dir, &s.manifest),
            running_pid: None,
            running_shards: Vec::new(),
            session: s,
        })
        .collect();
    print!("{}", report::ls_listing(&rows, &unreadable));
    Ok(EXIT_OK)
}

/// `w2c show`.
pub(super) fn show(ShowArgs { session }: ShowArgs) -> Result<i32> {
    let found = session.find()?;
    let m = &found.manifest;
    let here = crate::command_hint::Here::current();
    let command = |verb: &str| crate::command_hint::for_session(verb, &found.dir, &here);
    println!("session      {}", found.address());
    println!("directory    {}", found.dir.display());
    println!("run key      {}", m.run_key);
    println!("fingerprint: {}", m.fingerprint);
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
    let ids = crate::tracking::ids::MlflowIds::load(&found.dir).ok();
    match &ids {
        Some(ids) if ids.mode == crate::tracking::ids::Mode::Online => {
            println!(
                "mlflow       {} experiment {} ({}), parent run {}; {}",
                ids.tracking_uri.as_deref().unwrap_or("?"),
                ids.experiment_name.as_deref().unwrap_or("?"),
                ids.experiment_id.as_deref().unwrap_or("?"),
                ids.parent_run_id.as_deref().unwrap_or("none"),
                report::tracking_state(&found.dir)
            );
            if let Some(url) = report::mlflow_run_url(ids, ids.parent_run_id.as_deref()) {
                println!("             {url}");
            }
            for p in &ids.pending {
                println!("  pending: {p}");
            }
            if !ids.pending.is_empty() {
                println!("  `{}` sends what is pending", command("sync"));
            }
        }
        _ => println!(
            "mlflow       offline (`{}` sends the session to MLflow)",
            command("sync")
        ),
    }
    println!("namespaces:");
    let settings: std::collections::BTreeMap<String, crate::store::MethodSettings> =
        session::namespaces(&found.dir).into_iter().collect();
    for count in crate::store::census(&found.dir, m) {
        let ns = &count.namespace;
        let dir = NamespaceDir::new(&found.dir, ns);
        let state = match count.state {
            crate::store::NamespaceState::Done => "done",
            crate::store::NamespaceState::Partial => "not finished",
            crate::store::NamespaceState::NotStarted => "not started",
        };
        println!(
            "  {ns}  {} items, {state}, settings {}\n    checkpoints {}\n    artifacts   {}",
            count.progress_text(),
            settings
                .get(ns)
                .map_or("?", |s| crate::fingerprint::prefix(&s.settings_hash, 12)),
            dir.checkpoints.display(),
            dir.artifacts.display()
        );
        let child = ids
            .as_ref()
            .and_then(|ids| ids.child_run_ids.get(ns).cloned());
        if let Some(id) = child {
            match ids
                .as_ref()
                .and_then(|i| report::mlflow_run_url(i, Some(&id)))
            {
                Some(url) => println!("    mlflow run  {url}"),
                None => println!("    mlflow run  {id}"),
            }
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

/// The w2c sessions under `runs_dir` (of `run_key` alone, when given) and
/// the session directories that cannot be read; the Python suite's
/// sessions are left out.
fn sessions_of(
    runs_dir: &std::path::Path,
    run_key: Option<&str>,
) -> (Vec<session::FoundSession>, Vec<session::UnreadableSession>) {
    let (found, bad) = session::scan(runs_dir, crate::verify::python_suite::is_python_session);
    let in_key = |k: &str| run_key.is_none_or(|want| want == k);
    (
        found
            .into_iter()
            .filter(|s| in_key(&s.manifest.run_key))
            .collect(),
        bad.into_iter().filter(|u| in_key(&u.run_key)).collect(),
    )
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

/// Runs the requests (one session, or a campaign's sessions at once,
/// sharing their providers' clients; each whole, or the shard asked for):
/// opens each session, connects its observer (the MLflow tracker, a
/// shard's tracker, or the session recorded offline), runs every method,
/// pausing on SIGINT, SIGTERM or SIGHUP ([`crate::stop`]), prints the
/// summaries and returns the exit code (the worst of the sessions').
fn execute(reqs: Vec<RunRequest>, tracking: (Option<tracking::Target>, String)) -> Result<i32> {
    use std::io::IsTerminal as _;
    let progress_style =
        super::progress::style_from_env(std::io::stderr().is_terminal(), crate::env_vars::var)?;
    crate::env_vars::check_unicode(&[crate::stop::GRACE_VAR, crate::stop::TIMEOUT_VAR])?;
    let stop_times = crate::stop::StopTimes::from_env(&|k| crate::env_vars::var(k).ok().flatten())
        .map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let cancel = Cancel::with_grace(stop_times.grace);
        let continue_with = Arc::new(std::sync::OnceLock::new());
        super::signals::pause_on_signals(cancel.clone(), stop_times, continue_with.clone())?;
        let campaign = reqs.len() > 1;
        let opened = open_sessions(reqs, campaign)?;
        let _ = continue_with.set(continue_commands(&opened));
        let mut observers = Vec::new();
        for o in &opened {
            observers.push(Observer::connect(o, &tracking).await?);
        }
        let labels: Vec<String> = opened
            .iter()
            .map(|o| o.config.models.target.clone())
            .collect();
        let view = super::progress::ProgressView::start(
            labels
                .iter()
                .cloned()
                .zip(observers.iter().map(crate::outcome::RunObserver::progress))
                .collect(),
            progress_style,
        );
        let pool = runner::ClientPool::default();
        let reports = futures::future::join_all(
            opened
                .into_iter()
                .zip(&observers)
                .map(|(o, t)| o.execute_with(t, &cancel, &pool)),
        )
        .await;
        view.finish().await;
        print_reports(&labels, reports, campaign)
    })
}

/// Who watches one session's run: its MLflow tracker (online, or recording
/// the session as offline), or, for a shard or `w2c finalize`, a shard's
/// tracker, which pushes only the namespaces its process finalizes.
enum Observer {
    Whole(Box<tracking::Tracker>),
    Shard(Box<tracking::shards::ShardTracker>),
}

impl Observer {
    async fn connect(
        opened: &runner::Opened,
        (target, offline_reason): &(Option<tracking::Target>, String),
    ) -> Result<Observer> {
        let s = &opened.session;
        if opened.slice == Slice::All {
            return Ok(Observer::Whole(Box::new(
                tracking::Tracker::for_session(
                    target.as_ref(),
                    offline_reason,
                    &s.dir,
                    &s.manifest,
                )
                .await?,
            )));
        }
        // Shards (and `w2c finalize`) share the session: MLflow hears only
        // of the namespaces this process finalizes — on the server the
        // session records when the environment names none (a job's
        // environment may lack it; `--no-tracking` still means none).
        let target = match target {
            Some(t) => Some(t.clone()),
            None if *offline_reason == tracking::offline_reason(false, &|_| None) => {
                let ids = tracking::ids::MlflowIds::load(&s.dir)?;
                if ids.mode == tracking::ids::Mode::Online {
                    tracking::resolve_for_session(
                        &opened.config.tracking,
                        &ids,
                        &tracking::process_env,
                    )?
                } else {
                    None
                }
            }
            None => None,
        };
        Ok(Observer::Shard(Box::new(
            tracking::shards::ShardTracker::start(
                target.as_ref(),
                offline_reason,
                &s.dir,
                &s.manifest,
            )
            .await?,
        )))
    }
}

impl crate::outcome::RunObserver for Observer {
    fn progress(&self) -> std::sync::Arc<crate::outcome::Progress> {
        match self {
            Observer::Whole(t) => t.progress(),
            Observer::Shard(t) => t.progress(),
        }
    }

    async fn namespace_started(&self, ns: &str) {
        match self {
            Observer::Whole(t) => t.namespace_started(ns).await,
            Observer::Shard(t) => t.namespace_started(ns).await,
        }
    }

    async fn namespace_stopped(&self, ns: &str, cancelled: bool) {
        match self {
            Observer::Whole(t) => t.namespace_stopped(ns, cancelled).await,
            Observer::Shard(t) => t.namespace_stopped(ns, cancelled).await,
        }
    }

    async fn namespace_finalized(&self, ns: &str) {
        match self {
            Observer::Whole(t) => t.namespace_finalized(ns).await,
            Observer::Shard(t) => t.namespace_finalized(ns).await,
        }
    }

    async fn run_failed(&self, err: &anyhow::Error) {
        match self {
            Observer::Whole(t) => t.run_failed(err).await,
            Observer::Shard(t) => t.run_failed(err).await,
        }
    }

    async fn run_finished(&self, report: &crate::outcome::RunReport) -> Vec<String> {
        match self {
            Observer::Whole(t) => t.run_finished(report).await,
            Observer::Shard(t) => t.run_finished(report).await,
        }
    }
}

/// The commands that continue what the opened sessions run, for the
/// interrupt messages: `w2c resume <address>` (with this process's
/// `--shard`), or `w2c finalize <address>`; in backticks, comma-separated.
fn continue_commands(opened: &[runner::Opened]) -> String {
    let here = crate::command_hint::Here::current();
    opened
        .iter()
        .map(|o| {
            let dir = &o.session.dir;
            let command = match &o.slice {
                Slice::All => crate::command_hint::resume(dir, None, &here),
                Slice::Shard(r) => crate::command_hint::resume(dir, Some(r.shard), &here),
                Slice::Finalize => crate::command_hint::for_session("finalize", dir, &here),
            };
            format!("`{command}`")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Opens (creating where needed) and locks every requested session, saying
/// which (and which part of it this process runs).
fn open_sessions(reqs: Vec<RunRequest>, campaign: bool) -> Result<Vec<runner::Opened>> {
    let mut opened = Vec::new();
    for req in reqs {
        let o = runner::open(req)?;
        let s = &o.session;
        let part = match &o.slice {
            Slice::All => String::new(),
            Slice::Shard(r) => format!(", shard {} (from {})", r.shard, r.source.describe()),
            Slice::Finalize => ", finalizing".into(),
        };
        eprintln!(
            "{} session {}{} at {}{part}",
            if s.created { "new" } else { "resuming" },
            s.address(),
            if campaign {
                format!(" (model {})", o.config.models.target)
            } else {
                String::new()
            },
            s.dir.display()
        );
        opened.push(o);
    }
    Ok(opened)
}

/// Prints each session's notes, summary, MLflow address and status line
/// (under its model's name in a campaign, then the `w2c compare` command);
/// returns the worst exit code, or the first error.
fn print_reports(
    labels: &[String],
    reports: Vec<Result<crate::outcome::RunReport>>,
    campaign: bool,
) -> Result<i32> {
    let here = crate::command_hint::Here::current();
    let mut code = EXIT_OK;
    let mut first_error = None;
    let mut finished: Vec<(String, std::path::PathBuf)> = Vec::new();
    for (label, report) in labels.iter().zip(reports) {
        let report = match report {
            Ok(r) => r,
            Err(e) if campaign => {
                eprintln!("error: {label}: {e:#}");
                first_error.get_or_insert(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        if campaign {
            println!("\n== {label}");
        }
        for note in &report.notes {
            eprintln!("note: {note}");
        }
        print!("{}", report::run_summary(&report));
        if let Some(url) = crate::tracking::ids::MlflowIds::load(&report.session_dir)
            .ok()
            .and_then(|ids| report::mlflow_run_url(&ids, ids.parent_run_id.as_deref()))
        {
            println!("mlflow: {url}");
        }
        println!("{}", report::run_status_line(&report, &here));
        code = code.max(match report.status {
            RunStatus::Complete => EXIT_OK,
            RunStatus::Incomplete => EXIT_INCOMPLETE,
            RunStatus::Interrupted => super::signals::exit_code(report.stopped_by),
        });
        finished.push((
            crate::store::address::display(&report.run_key, &report.fingerprint),
            report.session_dir,
        ));
    }
    if campaign && finished.len() > 1 {
        let runs = crate::command_hint::runs_dir_of(&finished[0].1)
            .unwrap_or(std::path::Path::new("runs"));
        let addresses: Vec<&str> = finished.iter().map(|(a, _)| a.as_str()).collect();
        println!(
            "\ncompare the models: `{}`",
            crate::command_hint::session_command("compare", &addresses.join(" "), runs, &here)
        );
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(code),
    }
}

#[cfg(test)]
mod sync_progress_tests {
    use super::sync_progress_line;
    use crate::tracking::trace_sender::Sent;
    use std::time::Duration;

    #[test]
    fn a_progress_line_says_sent_pending_rate_and_time_left() {
        let line = sync_progress_line(
            "mcq",
            Sent {
                sent: 100,
                left: 300,
            },
            Duration::from_secs(10),
        );
        assert_eq!(
            line,
            "sync: mcq: 100 trace(s) sent, 300 pending (10.0/s, about 30 s left)"
        );
        let done = sync_progress_line("mcq", Sent { sent: 5, left: 0 }, Duration::from_secs(1));
        assert!(done.ends_with("(5.0/s, done)"), "{done}");
    }
}
