//! Session addresses: how a command names one session.
//!
//! The address of a session is `RUN_KEY/FINGERPRINT`: its run key, a slash
//! and its fingerprint — any prefix of at least [`MIN_PREFIX`] hex
//! characters, up to all 64. What w2c prints is [`display`]: the run key
//! and the 16 hex characters that name the session's directory, so it can
//! never match a second session, whatever is added later. A command also
//! accepts a bare fingerprint prefix (when one session matches it) and the
//! session's directory.
//!
//! Which run key a bare prefix is looked for under: the address's own
//! `RUN_KEY/` first, then `--run-key`, then `W2C_RUN_KEY` ([`RunKeyScope`]).
//! An address and `--run-key` that name different run keys are refused (the
//! command line contradicts itself); `W2C_RUN_KEY`, set once for a shell or
//! a job, gives way to an address that names its run key.
//!
//! Everything here is pure: parsing an argument and choosing among the
//! sessions found; [`super::session::resolve`] reads the disk.

use crate::config::{self, RunKeySource};
use crate::fingerprint::short;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// The fewest hex characters a fingerprint prefix may have.
pub const MIN_PREFIX: usize = 4;

/// The address w2c prints for a session: `RUN_KEY/` and the first 16 hex
/// characters of its fingerprint (its directory's name, unique under the
/// run key).
pub fn display(run_key: &str, fingerprint: &str) -> String {
    format!("{run_key}/{}", short(fingerprint))
}

/// The address of the session in directory `dir`
/// (`<runs>/<RUN_KEY>/sessions/<FP16>`), from its path alone.
pub fn of_dir(dir: &Path) -> Option<String> {
    let name = dir.file_name()?.to_str()?;
    let run_key = run_key_of_dir(dir)?;
    (is_run_key(run_key) && is_prefix(name)).then(|| display(run_key, name))
}

/// The run key folder a session directory is in
/// (`<runs>/<RUN_KEY>/sessions/<FP16>`); `None` outside that layout.
pub fn run_key_of_dir(dir: &Path) -> Option<&str> {
    let sessions = dir.parent()?;
    if sessions.file_name()? != "sessions" {
        return None;
    }
    sessions.parent()?.file_name()?.to_str()
}

/// What a command-line argument naming a session says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionRef {
    /// `RUN_KEY/PREFIX`, or a bare `PREFIX` (`run_key` is then `None`).
    Address {
        /// The run key the address names.
        run_key: Option<String>,
        /// The fingerprint prefix, lowercase.
        prefix: String,
    },
    /// Anything else: a path, which must be a session directory.
    Dir(PathBuf),
}

impl SessionRef {
    /// Reads a command-line argument: `RUN_KEY/PREFIX` (a run key as w2c
    /// writes them, `[A-Za-z0-9_-]`, and 4 to 64 hex characters) or a bare
    /// prefix is an address; anything else a path (`./abcd` is the path of
    /// a directory named like a prefix).
    pub fn parse(arg: &str) -> SessionRef {
        let address = match arg.split_once('/') {
            Some((key, prefix)) if is_run_key(key) => Some((Some(key), prefix)),
            Some(_) => None,
            None => Some((None, arg)),
        };
        match address {
            Some((run_key, prefix)) if is_prefix(prefix) => SessionRef::Address {
                run_key: run_key.map(str::to_string),
                prefix: prefix.to_ascii_lowercase(),
            },
            _ => SessionRef::Dir(PathBuf::from(arg)),
        }
    }
}

fn is_run_key(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn is_prefix(s: &str) -> bool {
    (MIN_PREFIX..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// The run key a command's bare fingerprint prefixes are looked for under,
/// from `--run-key` or `W2C_RUN_KEY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunKeyScope {
    /// The run key, sanitized as `w2c run` sanitizes it.
    pub key: String,
    /// Where it came from: [`RunKeySource::Cli`] or [`RunKeySource::Env`].
    pub source: RunKeySource,
}

impl RunKeyScope {
    /// The scope `--run-key` (`flag`), else `W2C_RUN_KEY` (`env`), give;
    /// `None` when neither is set (or both are blank). The value is
    /// sanitized like `w2c run`'s, so `W2C_RUN_KEY="pilot 2"` finds the
    /// sessions `w2c run` put under `pilot_2`.
    pub fn from(flag: Option<&str>, env: Option<&str>) -> Result<Option<RunKeyScope>> {
        let blank = |v: Option<&str>| v.is_none_or(|v| v.trim().is_empty());
        if blank(flag) && blank(env) {
            return Ok(None);
        }
        let resolved = config::resolve_run_key(flag, env, None)?;
        Ok(Some(RunKeyScope {
            key: resolved.key,
            source: resolved.source,
        }))
    }
}

/// A session as [`choose`] sees it.
#[derive(Debug, Clone, Copy)]
pub struct Listed<'a> {
    /// The run key it lives under.
    pub run_key: &'a str,
    /// Its full fingerprint.
    pub fingerprint: &'a str,
}

/// Why an argument names no session, or more than one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// No session matches.
    #[error("no session with fingerprint {prefix} {where_}{}{}", elsewhere_text(.elsewhere), dir_text(.arg, .is_dir))]
    NotFound {
        /// The argument as given.
        arg: String,
        /// The prefix looked for.
        prefix: String,
        /// Where it was looked for (`under runs`, `under run key ...`).
        where_: String,
        /// Addresses of sessions with that prefix under other run keys
        /// (when a run key narrowed the search).
        elsewhere: Vec<String>,
        /// Whether a directory of that name is where the user stands (set
        /// by the caller that looked).
        is_dir: bool,
    },
    /// Several sessions match.
    #[error("{}", ambiguous_text(.arg, .addresses, *.same_session))]
    Ambiguous {
        /// The argument as given.
        arg: String,
        /// The address of each session matched.
        addresses: Vec<String>,
        /// Whether they are all the same fingerprint (one config run under
        /// several run keys): more characters cannot tell them apart.
        same_session: bool,
    },
    /// The address names one run key and `--run-key` another.
    #[error(
        "`{arg}` names run key `{address_key}` but --run-key says `{flag_key}`: give one of them"
    )]
    RunKeyConflict {
        /// The argument as given.
        arg: String,
        /// The run key in the address (or the session directory's).
        address_key: String,
        /// The run key of `--run-key`.
        flag_key: String,
    },
}

fn elsewhere_text(elsewhere: &[String]) -> String {
    match elsewhere {
        [] => " (`w2c status` lists the sessions)".to_string(),
        [one] => format!("; it exists as {one}: use that address"),
        many => format!(
            "; it exists as {}: use one of these addresses",
            many.join(", ")
        ),
    }
}

fn dir_text(arg: &str, is_dir: &bool) -> String {
    if *is_dir {
        format!(" (for the directory `{arg}` here, give it as `./{arg}`)")
    } else {
        String::new()
    }
}

fn ambiguous_text(arg: &str, addresses: &[String], same_session: bool) -> String {
    if same_session {
        format!(
            "`{arg}` is one fingerprint run under {} run keys, so more characters cannot tell them apart: give the address, {} (or --run-key / W2C_RUN_KEY)",
            addresses.len(),
            addresses.join(" or ")
        )
    } else {
        format!(
            "`{arg}` matches {} sessions: give the address of the one you mean: {}",
            addresses.len(),
            addresses.join(", ")
        )
    }
}

/// The run key an address is to be found under: its own, else the scope's.
/// An address (or a session directory's run key, `own`) that contradicts an
/// explicit `--run-key` is refused; `W2C_RUN_KEY` gives way.
pub fn effective_run_key<'a>(
    arg: &str,
    own: Option<&'a str>,
    scope: Option<&'a RunKeyScope>,
) -> Result<Option<&'a str>, AddressError> {
    match (own, scope) {
        (Some(own), Some(s)) if s.source == RunKeySource::Cli && s.key != own => {
            Err(AddressError::RunKeyConflict {
                arg: arg.to_string(),
                address_key: own.to_string(),
                flag_key: s.key.clone(),
            })
        }
        (Some(own), _) => Ok(Some(own)),
        (None, s) => Ok(s.map(|s| s.key.as_str())),
    }
}

/// The one session of `sessions` that `run_key` (when given) and the
/// fingerprint `prefix` name, as an index into `sessions`. `arg` is the
/// argument as given, `scope` where a run key not in the address came from
/// and `runs_dir` where the sessions are, for the errors.
pub fn choose(
    arg: &str,
    prefix: &str,
    run_key: Option<&str>,
    scope: Option<&RunKeyScope>,
    runs_dir: &Path,
    sessions: &[Listed<'_>],
) -> Result<usize, AddressError> {
    let prefix = prefix.to_ascii_lowercase();
    let by_prefix: Vec<usize> = (0..sessions.len())
        .filter(|&i| sessions[i].fingerprint.starts_with(&prefix))
        .collect();
    let (matches, others): (Vec<usize>, Vec<usize>) = by_prefix
        .into_iter()
        .partition(|&i| run_key.is_none_or(|k| sessions[i].run_key == k));
    let address = |i: usize| display(sessions[i].run_key, sessions[i].fingerprint);
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(AddressError::NotFound {
            arg: arg.to_string(),
            prefix,
            where_: match run_key {
                None => format!("under {}", runs_dir.display()),
                Some(k) => {
                    let how = match scope {
                        Some(s) if s.key == k => format!(" ({})", s.source.describe()),
                        _ => String::new(),
                    };
                    format!("under run key `{k}`{how} in {}", runs_dir.display())
                }
            },
            elsewhere: others.into_iter().map(address).collect(),
            is_dir: false,
        }),
        many => {
            let first = sessions[many[0]].fingerprint;
            Err(AddressError::Ambiguous {
                arg: arg.to_string(),
                same_session: many.iter().all(|&i| sessions[i].fingerprint == first),
                addresses: many.iter().map(|&i| address(i)).collect(),
            })
        }
    }
}

/// Why a path given for a session is not one: it does not exist, is a
/// file, or has no manifest. Names the forms a session can be given in.
pub fn not_a_session_dir(arg: &str, exists: bool, is_dir: bool) -> String {
    const FORMS: &str =
        "a session is RUN_KEY/FINGERPRINT (a prefix of at least 4 hex characters), a fingerprint prefix, or its directory";
    if !exists {
        format!("`{arg}` is not a session: no such directory ({FORMS}; `w2c status` lists them)")
    } else if !is_dir {
        format!("`{arg}` is a file, not a session directory ({FORMS})")
    } else {
        format!(
            "`{arg}` is not a session directory: it has no manifest.json (a session lives in <runs>/<run key>/sessions/<fingerprint16>; `w2c status` lists them)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "583c6056b2452be29106089c983cd5e9ebc7858120cf9a358994724784035dca";
    const B: &str = "583c77aa00000000000000000000000000000000000000000000000000000000";
    const C: &str = "9b1e000000000000000000000000000000000000000000000000000000000000";

    fn addr(run_key: Option<&str>, prefix: &str) -> SessionRef {
        SessionRef::Address {
            run_key: run_key.map(String::from),
            prefix: prefix.into(),
        }
    }

    fn scope(key: &str, source: RunKeySource) -> RunKeyScope {
        RunKeyScope {
            key: key.into(),
            source,
        }
    }

    /// main/A, pilot/A (the same config under two run keys), main/B, pilot/C.
    fn sessions() -> Vec<Listed<'static>> {
        [("main", A), ("pilot", A), ("main", B), ("pilot", C)]
            .into_iter()
            .map(|(run_key, fingerprint)| Listed {
                run_key,
                fingerprint,
            })
            .collect()
    }

    fn pick(arg: &str, s: Option<&RunKeyScope>) -> Result<usize, AddressError> {
        let SessionRef::Address { run_key, prefix } = SessionRef::parse(arg) else {
            panic!("{arg} is an address");
        };
        let key = effective_run_key(arg, run_key.as_deref(), s)?;
        choose(arg, &prefix, key, s, Path::new("runs"), &sessions())
    }

    #[test]
    fn arguments_parse_as_addresses_prefixes_or_paths() {
        assert_eq!(SessionRef::parse("main/583C"), addr(Some("main"), "583c"));
        assert_eq!(SessionRef::parse("583c"), addr(None, "583c"));
        assert_eq!(SessionRef::parse(A), addr(None, A));
        assert_eq!(
            SessionRef::parse(&format!("run-20260101T000000Z-0a1b/{A}")),
            addr(Some("run-20260101T000000Z-0a1b"), A)
        );
        for path in [
            "runs/main/sessions/583c6056b2452be2",
            "./583c",
            "/abs/583c",
            "583",
            "main/583",
            "main/zzzz",
            "my run/583c",
            "main/583c/",
            "/583c",
            "",
        ] {
            assert_eq!(
                SessionRef::parse(path),
                SessionRef::Dir(path.into()),
                "{path}"
            );
        }
        let long = format!("{A}0");
        assert_eq!(
            SessionRef::parse(&long),
            SessionRef::Dir(long.clone().into())
        );
    }

    #[test]
    fn a_unique_prefix_or_an_address_finds_one_session() {
        assert_eq!(pick("9b1e", None), Ok(3));
        assert_eq!(pick("583c77", None), Ok(2));
        assert_eq!(pick("main/583c60", None), Ok(0));
        assert_eq!(pick(&format!("pilot/{A}"), None), Ok(1));
        // Run keys are case-sensitive, as their folders are.
        assert!(matches!(
            pick("MAIN/583c60", None),
            Err(AddressError::NotFound { .. })
        ));
        // The run key narrows a bare prefix: from --run-key or W2C_RUN_KEY.
        assert_eq!(
            pick("583c60", Some(&scope("pilot", RunKeySource::Env))),
            Ok(1)
        );
        assert_eq!(
            pick("583c60", Some(&scope("main", RunKeySource::Cli))),
            Ok(0)
        );
    }

    #[test]
    fn the_same_fingerprint_under_two_run_keys_lists_their_addresses() {
        let err = pick(A, None).unwrap_err();
        assert_eq!(
            err,
            AddressError::Ambiguous {
                arg: A.into(),
                addresses: vec![
                    "main/583c6056b2452be2".into(),
                    "pilot/583c6056b2452be2".into()
                ],
                same_session: true,
            }
        );
        let text = err.to_string();
        assert!(
            text.contains("more characters cannot tell them apart"),
            "{text}"
        );
        assert!(!text.contains("pass more characters"), "{text}");
        // A prefix of two fingerprints lists every address too.
        let err = pick("583c", None).unwrap_err();
        assert_eq!(
            err,
            AddressError::Ambiguous {
                arg: "583c".into(),
                addresses: vec![
                    "main/583c6056b2452be2".into(),
                    "pilot/583c6056b2452be2".into(),
                    "main/583c77aa00000000".into()
                ],
                same_session: false,
            }
        );
        assert!(pick("main/583c", None)
            .unwrap_err()
            .to_string()
            .contains("matches 2 sessions"));
    }

    #[test]
    fn the_address_comes_before_the_flag_and_the_flag_before_the_environment() {
        // W2C_RUN_KEY gives way to the address's run key.
        assert_eq!(
            pick("main/583c60", Some(&scope("pilot", RunKeySource::Env))),
            Ok(0)
        );
        // --run-key contradicting the address is refused.
        let err = pick("main/583c60", Some(&scope("pilot", RunKeySource::Cli))).unwrap_err();
        assert_eq!(
            err,
            AddressError::RunKeyConflict {
                arg: "main/583c60".into(),
                address_key: "main".into(),
                flag_key: "pilot".into()
            }
        );
        // ...and agreeing with it is fine.
        assert_eq!(
            pick("main/583c60", Some(&scope("main", RunKeySource::Cli))),
            Ok(0)
        );
    }

    #[test]
    fn not_found_says_where_it_looked_and_where_the_session_is() {
        let err = pick("9b1e", Some(&scope("main", RunKeySource::Env))).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("no session with fingerprint 9b1e under run key `main` (W2C_RUN_KEY) in runs; it exists as pilot/9b1e000000000000: use that address"),
            "{text}"
        );
        let text = pick("ffff", None).unwrap_err().to_string();
        assert!(
            text.contains("no session with fingerprint ffff under runs"),
            "{text}"
        );
        assert!(text.contains("`w2c status`"), "{text}");
    }

    #[test]
    fn a_scope_comes_from_the_flag_then_the_environment_sanitized() {
        assert_eq!(RunKeyScope::from(None, None).unwrap(), None);
        assert_eq!(RunKeyScope::from(Some(" "), Some("")).unwrap(), None);
        assert_eq!(
            RunKeyScope::from(Some("a"), Some("b")).unwrap(),
            Some(scope("a", RunKeySource::Cli))
        );
        assert_eq!(
            RunKeyScope::from(None, Some("pilot 2")).unwrap(),
            Some(scope("pilot_2", RunKeySource::Env))
        );
        assert!(RunKeyScope::from(None, Some("..")).is_err());
    }

    #[test]
    fn the_printed_address_is_the_run_key_and_the_directory_name() {
        assert_eq!(display("main", A), "main/583c6056b2452be2");
        assert_eq!(
            of_dir(Path::new("/x/runs/main/sessions/583c6056b2452be2")).as_deref(),
            Some("main/583c6056b2452be2")
        );
        // Outside the layout, or a directory no address can name: none.
        assert_eq!(of_dir(Path::new("/x/runs/main/583c6056b2452be2")), None);
        assert_eq!(of_dir(Path::new("/x/runs/main/sessions/notes")), None);
        assert_eq!(
            SessionRef::parse(&display("main", A)),
            addr(Some("main"), "583c6056b2452be2")
        );
    }
}
