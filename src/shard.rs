//! Shards of one session: which slice of the work a process does, and where
//! its index and count come from (a `--shard I/N` flag, a Slurm job array,
//! a Kubernetes Indexed Job). Pure logic: no file, no process.
//!
//! A shard owns the examples whose position in the session's selection is
//! congruent to its index modulo the count, in every namespace, with all of
//! an example's repeats: so `llm_judge`'s judge stream of a shard needs only
//! the target answers of the same shard, and the slices interleave labels
//! the way the selection does.

use std::fmt;

/// Shard `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shard {
    /// 0-based index, below `count`.
    pub index: usize,
    /// Number of shards, at least 1.
    pub count: usize,
}

/// Most shards a session can be split into.
pub const MAX_SHARDS: usize = 100_000;

impl Shard {
    /// Shard `index` of `count`; refuses an index out of range or a count of 0.
    pub fn new(index: usize, count: usize) -> Result<Shard, String> {
        if count == 0 || count > MAX_SHARDS {
            return Err(format!(
                "a shard count must be in [1, {MAX_SHARDS}], got {count}"
            ));
        }
        if index >= count {
            return Err(format!(
                "shard index {index} is out of range for {count} shards (indices are 0..{})",
                count - 1
            ));
        }
        Ok(Shard { index, count })
    }

    /// Parses `I/N` (e.g. `2/4`).
    pub fn parse(text: &str) -> Result<Shard, String> {
        let (i, n) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not a shard: expected I/N, e.g. 0/4"))?;
        let num = |s: &str, what: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{text}`: the shard {what} `{s}` is not a whole number"))
        };
        Shard::new(num(i, "index")?, num(n, "count")?)
    }

    /// Whether the example at `position` in the selection is in this shard.
    pub fn owns(&self, position: usize) -> bool {
        position % self.count == self.index
    }

    /// Examples of a selection of `n_examples` in this shard.
    pub fn examples_of(&self, n_examples: usize) -> usize {
        n_examples / self.count + usize::from(n_examples % self.count > self.index)
    }

    /// The name of this shard's directories and lock file: `shard-I-of-N`.
    pub fn dir_name(&self) -> String {
        format!("shard-{}-of-{}", self.index, self.count)
    }

    /// The shard a directory name of [`Shard::dir_name`] names.
    pub fn from_dir_name(name: &str) -> Option<Shard> {
        let rest = name.strip_prefix("shard-")?;
        let (i, n) = rest.split_once("-of-")?;
        let shard = Shard::new(i.parse().ok()?, n.parse().ok()?).ok()?;
        (shard.dir_name() == name).then_some(shard)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// What the command line asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardFlag {
    /// `--shard I/N`.
    Explicit(Shard),
    /// `--shard` (or `--shard auto`): from the job engine's environment.
    Auto,
}

impl std::str::FromStr for ShardFlag {
    type Err = String;
    fn from_str(s: &str) -> Result<ShardFlag, String> {
        if s.trim().eq_ignore_ascii_case("auto") {
            Ok(ShardFlag::Auto)
        } else {
            Shard::parse(s).map(ShardFlag::Explicit)
        }
    }
}

/// Where a shard's index and count came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--shard I/N`.
    Flag,
    /// A Slurm job array task.
    Slurm {
        /// `SLURM_ARRAY_JOB_ID`, when set.
        job_id: Option<String>,
        /// `SLURM_ARRAY_TASK_ID`.
        task_id: usize,
        /// `SLURM_ARRAY_TASK_COUNT`.
        task_count: usize,
    },
    /// A Kubernetes Indexed Job pod (`JOB_COMPLETION_INDEX`).
    Kubernetes,
}

impl Source {
    /// How the source reads in messages.
    pub fn describe(&self) -> String {
        match self {
            Source::Flag => "--shard".into(),
            Source::Slurm {
                task_id,
                task_count,
                ..
            } => format!("Slurm array task {task_id} (SLURM_ARRAY_TASK_COUNT={task_count})"),
            Source::Kubernetes => "Kubernetes Indexed Job (JOB_COMPLETION_INDEX)".into(),
        }
    }
}

/// A shard and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The shard.
    pub shard: Shard,
    /// Where its index and count came from.
    pub source: Source,
}

/// Environment variables of the job engines (Slurm first).
pub const SLURM_TASK_ID: &str = "SLURM_ARRAY_TASK_ID";
/// Tasks in the Slurm array.
pub const SLURM_TASK_COUNT: &str = "SLURM_ARRAY_TASK_COUNT";
/// Lowest task id of the Slurm array.
pub const SLURM_TASK_MIN: &str = "SLURM_ARRAY_TASK_MIN";
/// Highest task id of the Slurm array.
pub const SLURM_TASK_MAX: &str = "SLURM_ARRAY_TASK_MAX";
/// Step between task ids of the Slurm array.
pub const SLURM_TASK_STEP: &str = "SLURM_ARRAY_TASK_STEP";
/// The Slurm array's job id.
pub const SLURM_JOB_ID: &str = "SLURM_ARRAY_JOB_ID";
/// A Kubernetes Indexed Job pod's index.
pub const K8S_INDEX: &str = "JOB_COMPLETION_INDEX";

/// The shard a process runs: `None` for an unsharded run (no flag), else
/// the flag's, or (with `--shard` alone or `--shards N`) the job engine's:
/// a Slurm array task (`SLURM_ARRAY_TASK_ID` − `SLURM_ARRAY_TASK_MIN` of
/// `SLURM_ARRAY_TASK_COUNT`; arrays with a step other than 1 are refused),
/// else a Kubernetes Indexed Job pod (`JOB_COMPLETION_INDEX` of the count
/// from `--shards`, else `count_from_config`). A count given beside the
/// engine's must agree with it.
pub fn resolve(
    flag: Option<ShardFlag>,
    count_flag: Option<usize>,
    count_from_config: Option<usize>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Resolved>, String> {
    let flag = match (flag, count_flag) {
        (None, None) => return Ok(None),
        (None, Some(_)) => ShardFlag::Auto,
        (Some(f), _) => f,
    };
    if let Some(n) = count_flag {
        Shard::new(0, n).map_err(|e| format!("--shards: {e}"))?;
    }
    if let ShardFlag::Explicit(shard) = flag {
        if let Some(n) = count_flag.filter(|&n| n != shard.count) {
            return Err(format!(
                "--shard {shard} and --shards {n} disagree on the shard count"
            ));
        }
        return Ok(Some(Resolved {
            shard,
            source: Source::Flag,
        }));
    }
    let var = |name: &str| {
        env(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let number = |name: &str| -> Result<Option<usize>, String> {
        match var(name) {
            None => Ok(None),
            Some(v) => v
                .parse::<usize>()
                .map(Some)
                .map_err(|_| format!("{name}: {} is not a whole number", crate::redact::shown(&v))),
        }
    };
    if let Some(task_id) = number(SLURM_TASK_ID)? {
        let required = |name: &str| -> Result<usize, String> {
            number(name)?.ok_or_else(|| {
                format!("{SLURM_TASK_ID} is set but {name} is not: not a Slurm job array task?")
            })
        };
        let task_count = required(SLURM_TASK_COUNT)?;
        let min = required(SLURM_TASK_MIN)?;
        let step = number(SLURM_TASK_STEP)?.unwrap_or(1);
        let max = number(SLURM_TASK_MAX)?;
        let stepped = step != 1
            || max.is_some_and(|max| max.checked_sub(min).map(|d| d + 1) != Some(task_count));
        if stepped {
            return Err(format!(
                "the Slurm array has a step ({SLURM_TASK_STEP}={step}, ids {min}..={}), so its task ids are not the shard indices: submit a contiguous array such as --array=0-{}",
                max.map_or("?".into(), |m| m.to_string()),
                task_count.saturating_sub(1)
            ));
        }
        let index = task_id
            .checked_sub(min)
            .ok_or_else(|| format!("{SLURM_TASK_ID}={task_id} is below {SLURM_TASK_MIN}={min}"))?;
        let source = Source::Slurm {
            job_id: var(SLURM_JOB_ID),
            task_id,
            task_count,
        };
        let asked = count_flag.or(count_from_config);
        if let Some(n) = asked.filter(|&n| n != task_count) {
            return Err(mismatch(
                &Resolved {
                    shard: Shard {
                        index,
                        count: task_count,
                    },
                    source,
                },
                n,
            ));
        }
        let shard =
            Shard::new(index, task_count).map_err(|e| format!("{}: {e}", source.describe()))?;
        return Ok(Some(Resolved { shard, source }));
    }
    if let Some(index) = number(K8S_INDEX)? {
        let count = count_flag.or(count_from_config).ok_or_else(|| {
            format!(
                "{K8S_INDEX}={index} (a Kubernetes Indexed Job) gives the shard index but not the count: pass --shards N (the Job's `completions`) or set `run.shards` in the config"
            )
        })?;
        let shard = Shard::new(index, count).map_err(|e| format!("{K8S_INDEX}: {e}"))?;
        return Ok(Some(Resolved {
            shard,
            source: Source::Kubernetes,
        }));
    }
    Err(format!(
        "--shard without I/N takes the shard from a job engine's environment, but neither {SLURM_TASK_ID} (a Slurm job array) nor {K8S_INDEX} (a Kubernetes Indexed Job) is set: pass --shard I/N"
    ))
}

/// Refuses a shard whose count differs from the one the session is planned
/// for (`planned`); none planned yet accepts any.
pub fn check_against_plan(resolved: &Resolved, planned: Option<usize>) -> Result<(), String> {
    match planned {
        Some(n) if n != resolved.shard.count => Err(mismatch(resolved, n)),
        _ => Ok(()),
    }
}

/// Why a shard count is refused, with what to do instead.
fn mismatch(resolved: &Resolved, planned: usize) -> String {
    match &resolved.source {
        Source::Slurm {
            task_id,
            task_count: 1,
            job_id,
        } if planned > 1 => format!(
            "this Slurm task says SLURM_ARRAY_TASK_COUNT=1 (one array index resubmitted with `sbatch --array={task_id}`?) but the session is planned for {planned} shards, so the shard index cannot be known from the environment: requeue the original task instead (`scontrol requeue {}_{task_id}`), or run it explicitly with `--shard {task_id}/{planned}` if {task_id} is its index",
            job_id.as_deref().unwrap_or("<job>")
        ),
        source => format!(
            "{} gives {} shards but the session is planned for {planned}: run {planned} shards, or change the plan with `w2c plan --shards {}` while no shard runs",
            source.describe(),
            resolved.shard.count,
            resolved.shard.count
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn slurm(id: &str, count: &str, min: &str, max: &str) -> Vec<(&'static str, String)> {
        vec![
            (SLURM_TASK_ID, id.into()),
            (SLURM_TASK_COUNT, count.into()),
            (SLURM_TASK_MIN, min.into()),
            (SLURM_TASK_MAX, max.into()),
            (SLURM_JOB_ID, "77".into()),
        ]
    }

    fn resolve_env(
        flag: Option<ShardFlag>,
        n: Option<usize>,
        cfg: Option<usize>,
        vars: &[(&str, String)],
    ) -> Result<Option<Resolved>, String> {
        let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        resolve(flag, n, cfg, &env(&pairs))
    }

    #[test]
    fn slices_partition_every_selection() {
        for count in 1..7 {
            for n in 0..20 {
                let mut owners = vec![0; n];
                let mut sizes = 0;
                for index in 0..count {
                    let s = Shard::new(index, count).unwrap();
                    sizes += s.examples_of(n);
                    assert_eq!(s.examples_of(n), (0..n).filter(|&p| s.owns(p)).count());
                    for (p, o) in owners.iter_mut().enumerate() {
                        *o += usize::from(s.owns(p));
                    }
                }
                assert!(owners.iter().all(|&o| o == 1));
                assert_eq!(sizes, n);
            }
        }
    }

    #[test]
    fn parse_and_names_round_trip() {
        assert_eq!(Shard::parse("2/4").unwrap(), Shard { index: 2, count: 4 });
        assert_eq!(Shard::parse(" 0 / 1 ").unwrap().to_string(), "0/1");
        for bad in ["4/4", "1/0", "x/2", "3", "-1/2", "1/2/3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let s = Shard::new(3, 12).unwrap();
        assert_eq!(s.dir_name(), "shard-3-of-12");
        assert_eq!(Shard::from_dir_name("shard-3-of-12"), Some(s));
        for bad in ["shard-4-of-4", "shard-03-of-12", "shard-1-of", "x"] {
            assert_eq!(Shard::from_dir_name(bad), None, "{bad}");
        }
        assert_eq!("auto".parse::<ShardFlag>(), Ok(ShardFlag::Auto));
    }

    #[test]
    fn no_flag_is_unsharded_even_inside_an_array() {
        let vars = slurm("1", "4", "0", "3");
        assert_eq!(resolve_env(None, None, Some(4), &vars), Ok(None));
    }

    #[test]
    fn slurm_arrays_give_id_minus_min_of_count() {
        let r = resolve_env(
            Some(ShardFlag::Auto),
            None,
            None,
            &slurm("3", "4", "1", "4"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.shard, Shard { index: 2, count: 4 });
        assert!(matches!(r.source, Source::Slurm { task_id: 3, .. }));
        // --shards alone means "from the environment" too.
        let r = resolve_env(None, Some(4), None, &slurm("0", "4", "0", "3")).unwrap();
        assert_eq!(r.unwrap().shard, Shard { index: 0, count: 4 });
    }

    #[test]
    fn slurm_steps_and_disagreeing_counts_are_refused() {
        let mut stepped = slurm("2", "4", "0", "6");
        let e = resolve_env(Some(ShardFlag::Auto), None, None, &stepped).unwrap_err();
        assert!(e.contains("step"), "{e}");
        stepped.push((SLURM_TASK_STEP, "2".into()));
        assert!(resolve_env(Some(ShardFlag::Auto), None, None, &stepped).is_err());
        let e = resolve_env(None, Some(8), None, &slurm("1", "4", "0", "3")).unwrap_err();
        assert!(e.contains("planned for 8"), "{e}");
        // A resubmitted single index: COUNT=1 while 4 are asked for.
        let e = resolve_env(None, Some(4), None, &slurm("2", "1", "2", "2")).unwrap_err();
        assert!(e.contains("scontrol requeue 77_2"), "{e}");
        assert!(e.contains("--shard 2/4"), "{e}");
    }

    #[test]
    fn a_resubmitted_index_is_refused_against_the_plan() {
        let r = resolve_env(
            Some(ShardFlag::Auto),
            None,
            None,
            &slurm("2", "1", "2", "2"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.shard, Shard { index: 0, count: 1 });
        let e = check_against_plan(&r, Some(4)).unwrap_err();
        assert!(e.contains("SLURM_ARRAY_TASK_COUNT=1"), "{e}");
        assert!(check_against_plan(&r, Some(1)).is_ok());
        assert!(check_against_plan(&r, None).is_ok());
        let flag = Resolved {
            shard: Shard::new(0, 2).unwrap(),
            source: Source::Flag,
        };
        let e = check_against_plan(&flag, Some(4)).unwrap_err();
        assert!(e.contains("w2c plan --shards 2"), "{e}");
    }

    #[test]
    fn kubernetes_needs_a_count() {
        let vars = vec![(K8S_INDEX, "3".to_string())];
        let e = resolve_env(Some(ShardFlag::Auto), None, None, &vars).unwrap_err();
        assert!(e.contains("--shards N"), "{e}");
        let r = resolve_env(Some(ShardFlag::Auto), None, Some(4), &vars)
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.shard, r.source),
            (Shard::new(3, 4).unwrap(), Source::Kubernetes)
        );
        let e = resolve_env(None, Some(3), None, &vars).unwrap_err();
        assert!(e.contains("out of range"), "{e}");
        let e = resolve_env(Some(ShardFlag::Auto), None, None, &[]).unwrap_err();
        assert!(e.contains("--shard I/N"), "{e}");
        let bad = vec![(K8S_INDEX, "two".to_string())];
        assert!(resolve_env(Some(ShardFlag::Auto), None, Some(4), &bad)
            .unwrap_err()
            .contains("JOB_COMPLETION_INDEX: `two`"));
    }

    #[test]
    fn explicit_flags_win_and_must_agree_with_shards() {
        let flag = Some(ShardFlag::Explicit(Shard::new(1, 4).unwrap()));
        let r = resolve_env(flag, None, None, &slurm("0", "2", "0", "1"))
            .unwrap()
            .unwrap();
        assert_eq!((r.shard.index, r.source), (1, Source::Flag));
        assert!(resolve_env(flag, Some(3), None, &[]).is_err());
        assert!(resolve_env(None, Some(0), None, &[]).is_err());
    }
}
