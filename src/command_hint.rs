//! The `w2c` commands that messages suggest (`w2c resume <address>`, `w2c
//! sync <address>`), written so that they work from where the user stands
//! and keep working: a session is named by its address (`RUN_KEY/FP16`,
//! [`crate::store::address::display`]), which no later session can make
//! ambiguous, and a session whose runs directory is not the one a command
//! would search by default (`W2C_RUNS_DIR`, else `./runs`) gets an explicit
//! `--runs-dir`.

use std::path::{Path, PathBuf};

/// Where the process stands and what its environment says, for
/// [`session_command`].
#[derive(Debug, Clone)]
pub struct Here {
    /// The current directory.
    pub cwd: PathBuf,
    /// `W2C_RUNS_DIR`, when set.
    pub runs_dir_env: Option<PathBuf>,
}

impl Here {
    /// The current process's directory and environment.
    pub fn current() -> Here {
        Here {
            cwd: std::env::current_dir().unwrap_or_default(),
            runs_dir_env: std::env::var_os("W2C_RUNS_DIR").map(PathBuf::from),
        }
    }

    /// The runs directory a command searches without `--runs-dir`.
    fn default_runs_dir(&self) -> PathBuf {
        let d = self
            .runs_dir_env
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs"));
        self.cwd.join(d)
    }
}

/// The runs directory holding a session directory
/// (`<runs>/<run key>/sessions/<fp16>`).
pub fn runs_dir_of(session_dir: &Path) -> Option<&Path> {
    session_dir.parent()?.parent()?.parent()
}

/// `w2c <verb> <sessions>` (one or more session addresses), with
/// `--runs-dir` when `runs_dir` is not where the command would look from
/// `here`.
pub fn session_command(verb: &str, sessions: &str, runs_dir: &Path, here: &Here) -> String {
    let base = format!("w2c {verb} {sessions}");
    let absolute = here.cwd.join(runs_dir);
    if same_dir(&absolute, &here.default_runs_dir()) {
        return base;
    }
    let shown = match absolute.strip_prefix(&here.cwd) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel.to_path_buf(),
        _ => std::fs::canonicalize(&absolute).unwrap_or(absolute),
    };
    format!("{base} --runs-dir {}", shell_word(&shown.to_string_lossy()))
}

/// `w2c <verb> <address>` for the session in `session_dir`
/// (`<runs>/<RUN_KEY>/sessions/<FP16>`), as it works from `here`.
pub fn for_session(verb: &str, session_dir: &Path, here: &Here) -> String {
    match (
        crate::store::address::of_dir(session_dir),
        runs_dir_of(session_dir),
    ) {
        (Some(address), Some(runs)) => session_command(verb, &address, runs, here),
        // A directory outside the layout is named by its path.
        _ => format!("w2c {verb} {}", shell_word(&session_dir.to_string_lossy())),
    }
}

/// The command that continues the session in `session_dir`: `w2c resume
/// <address>`, with `--shard I/N` for a shard's process.
pub fn resume(session_dir: &Path, shard: Option<crate::shard::Shard>, here: &Here) -> String {
    let resume = for_session("resume", session_dir, here);
    match shard {
        Some(shard) => format!("{resume} --shard {shard}"),
        None => resume,
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// `s` quoted for a POSIX shell when it holds anything but plain path
/// characters.
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%,=".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn here(cwd: &Path, env: Option<&str>) -> Here {
        Here {
            cwd: cwd.to_path_buf(),
            runs_dir_env: env.map(PathBuf::from),
        }
    }

    #[test]
    fn the_default_runs_dir_needs_no_flag() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("runs")).unwrap();
        let h = here(tmp.path(), None);
        assert_eq!(
            session_command("resume", "abcd", &tmp.path().join("runs"), &h),
            "w2c resume abcd"
        );
        assert_eq!(
            session_command("resume", "abcd", Path::new("runs"), &h),
            "w2c resume abcd"
        );
    }

    #[test]
    fn another_runs_dir_is_named_relative_when_below_and_absolute_otherwise() {
        let tmp = tempfile::tempdir().unwrap();
        let cwd = tmp.path().join("work");
        std::fs::create_dir_all(cwd.join("exp/runs")).unwrap();
        std::fs::create_dir_all(tmp.path().join("elsewhere dir/runs")).unwrap();
        let h = here(&cwd, None);
        assert_eq!(
            session_command("resume", "abcd", &cwd.join("exp/runs"), &h),
            "w2c resume abcd --runs-dir exp/runs"
        );
        let other = tmp.path().join("elsewhere dir/runs");
        let canonical = std::fs::canonicalize(&other).unwrap();
        assert_eq!(
            session_command("sync", "abcd", &other, &h),
            format!("w2c sync abcd --runs-dir '{}'", canonical.to_string_lossy())
        );
    }

    #[test]
    fn w2c_runs_dir_is_the_default_when_set() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("shared/runs")).unwrap();
        let env = tmp.path().join("shared/runs");
        let h = here(Path::new("/"), Some(env.to_str().unwrap()));
        assert_eq!(
            session_command("resume", "abcd", &env, &h),
            "w2c resume abcd"
        );
    }

    #[test]
    fn a_session_is_named_by_its_address() {
        let tmp = tempfile::tempdir().unwrap();
        let session = tmp.path().join("runs/main/sessions/583c6056b2452be2");
        std::fs::create_dir_all(&session).unwrap();
        let h = here(tmp.path(), None);
        assert_eq!(
            for_session("resume", &session, &h),
            "w2c resume main/583c6056b2452be2"
        );
        let h = here(&tmp.path().join("runs"), None);
        assert_eq!(
            for_session("finalize", &session, &h),
            format!(
                "w2c finalize main/583c6056b2452be2 --runs-dir {}",
                std::fs::canonicalize(tmp.path().join("runs"))
                    .unwrap()
                    .display()
            )
        );
    }

    #[test]
    fn a_session_dir_sits_three_levels_below_its_runs_dir() {
        assert_eq!(
            runs_dir_of(Path::new("/x/runs/demo/sessions/0123456789abcdef")),
            Some(Path::new("/x/runs"))
        );
    }
}
