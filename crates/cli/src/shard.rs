//! `--shard I/N` and resumable runs.
//!
//! A command over K inputs (or K sample indices) with `--shard I/N` runs
//! the contiguous slice `[⌊I·K/N⌋, ⌊(I+1)·K/N⌋)` (0-based I): the N slices
//! are disjoint, cover every input, and depend only on K and N, so N jobs
//! that see the same inputs split them without talking to each other. Each
//! input keeps its global index, and everything random about an input
//! (`denoise --add-noise`, a sample's noise) depends on that index only,
//! so a sharded run writes byte for byte what a single run writes.
//!
//! `--shard auto` takes I and N from the scheduler:
//! * Slurm job arrays: `SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_COUNT`
//!   (I = (ID − `SLURM_ARRAY_TASK_MIN`) / `SLURM_ARRAY_TASK_STEP`, so
//!   `--array=1-8` works too);
//! * Kubernetes Indexed Jobs: `JOB_COMPLETION_INDEX` for I; Kubernetes does
//!   not export the completion count, so N comes from `--shard-count N` or
//!   the `PRIOR_SHARD_COUNT` variable (set it to `.spec.completions`).
//!
//! **Resuming**: outputs are written atomically (a temporary file renamed
//! into place), so an output that exists is complete. A directory run
//! records the settings that determine its outputs in
//! `OUTDIR/.prior-run.json`; rerunning the same command (same settings)
//! skips the outputs already there, while a run with other settings
//! recomputes and overwrites them (and records its own settings).

use std::ops::Range;
use std::path::{Path, PathBuf};

use clap::Args;

/// The `--shard` flags.
#[derive(Args, Debug, Clone, Default)]
pub struct ShardArgs {
    /// Run only slice I (0-based) of N disjoint, deterministic slices of the
    /// inputs (sample indices for `sample`/`solve`), e.g. `--shard 3/16`;
    /// `auto` reads SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT (Slurm job
    /// arrays) or JOB_COMPLETION_INDEX (Kubernetes Indexed Jobs, with
    /// --shard-count or PRIOR_SHARD_COUNT). Outputs match a single run's.
    #[arg(long, value_name = "I/N|auto", value_parser = parse_shard_spec)]
    pub shard: Option<ShardSpec>,
    /// Number of shards for `--shard auto` on Kubernetes (default: env
    /// PRIOR_SHARD_COUNT; Slurm's count comes from SLURM_ARRAY_TASK_COUNT).
    #[arg(long = "shard-count", value_name = "N", requires = "shard")]
    pub shard_count: Option<usize>,
}

/// What `--shard` said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardSpec {
    /// `--shard I/N`: slice I of N, already checked by [`Shard::new`].
    Fixed(Shard),
    /// `--shard auto`: I and N come from the scheduler's environment
    /// (see [`ShardArgs::resolve`]).
    Auto,
}

/// Slice `index` of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// The 0-based slice index, below `count`.
    pub index: usize,
    /// The number of slices, at least 1.
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Checks `0 ≤ index < count`.
    pub fn new(index: usize, count: usize) -> Result<Shard, String> {
        if count == 0 {
            return Err(format!(
                "shard {index}/{count}: the number of shards must be at least 1"
            ));
        }
        if index >= count {
            return Err(format!(
                "shard {index}/{count}: the index is 0-based and must be below the count {count}"
            ));
        }
        Ok(Shard { index, count })
    }

    /// The global indices of this slice of `total` items.
    pub fn range(&self, total: usize) -> Range<usize> {
        let at = |i: usize| (i as u128 * total as u128 / self.count as u128) as usize;
        at(self.index)..at(self.index + 1)
    }

    /// True for the whole run (1 shard).
    pub fn is_whole(&self) -> bool {
        self.count == 1
    }
}

/// Parses `I/N` or `auto`.
pub fn parse_shard_spec(s: &str) -> Result<ShardSpec, String> {
    if s.trim().eq_ignore_ascii_case("auto") {
        return Ok(ShardSpec::Auto);
    }
    let bad = || format!("--shard {s:?}: expected I/N with 0 ≤ I < N (e.g. 0/4), or auto");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let i: usize = i.trim().parse().map_err(|_| bad())?;
    let n: usize = n.trim().parse().map_err(|_| bad())?;
    Shard::new(i, n)
        .map(ShardSpec::Fixed)
        .map_err(|e| format!("--shard {s:?}: {e}"))
}

impl ShardArgs {
    /// The shard to run (the whole run without `--shard`).
    pub fn resolve(&self) -> Result<Shard, String> {
        self.resolve_with(|k| std::env::var(k).ok())
    }

    /// [`ShardArgs::resolve`] with the environment given as a function (tests).
    pub fn resolve_with(&self, env: impl Fn(&str) -> Option<String>) -> Result<Shard, String> {
        match self.shard {
            None => {
                if self.shard_count.is_some() {
                    return Err("--shard-count needs --shard auto".into());
                }
                Ok(Shard::default())
            }
            Some(ShardSpec::Fixed(s)) => {
                if self.shard_count.is_some_and(|n| n != s.count) {
                    return Err(format!(
                        "--shard {s} contradicts --shard-count {}",
                        self.shard_count.unwrap_or(0)
                    ));
                }
                Ok(s)
            }
            Some(ShardSpec::Auto) => auto(self.shard_count, env),
        }
    }
}

fn auto(count_flag: Option<usize>, env: impl Fn(&str) -> Option<String>) -> Result<Shard, String> {
    let num = |k: &str| -> Result<Option<usize>, String> {
        match env(k).filter(|v| !v.trim().is_empty()) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| format!("--shard auto: {k}={v:?} is not a non-negative integer")),
        }
    };
    if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
        let count =
            match (count_flag, num("SLURM_ARRAY_TASK_COUNT")?) {
                (Some(n), _) | (None, Some(n)) => n,
                (None, None) => return Err(
                    "--shard auto: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; pass --shard-count N"
                        .into(),
                ),
            };
        let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let step = num("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
        if id < min || (id - min) % step != 0 {
            return Err(format!(
                "--shard auto: SLURM_ARRAY_TASK_ID={id} is not in the array {min}, {}, … (SLURM_ARRAY_TASK_MIN/STEP)",
                min + step
            ));
        }
        return Shard::new((id - min) / step, count)
            .map_err(|e| format!("--shard auto (Slurm): {e}"));
    }
    if let Some(index) = num("JOB_COMPLETION_INDEX")? {
        let count = match (count_flag, num("PRIOR_SHARD_COUNT")?) {
            (Some(n), _) | (None, Some(n)) => n,
            (None, None) => {
                return Err("--shard auto: JOB_COMPLETION_INDEX is set (Kubernetes Indexed Job) but the number of \
                            shards is not: pass --shard-count N or set PRIOR_SHARD_COUNT to the Job's completions"
                    .into())
            }
        };
        return Shard::new(index, count).map_err(|e| format!("--shard auto (Kubernetes): {e}"));
    }
    Err("--shard auto: neither SLURM_ARRAY_TASK_ID (Slurm job array) nor JOB_COMPLETION_INDEX (Kubernetes \
         Indexed Job) is set; use --shard I/N"
        .into())
}

/// Name of the settings record in an output directory.
pub const RUN_RECORD: &str = ".prior-run.json";

/// Whether this run may keep the outputs an earlier run left: true when
/// `dir` holds a settings record equal to `settings` (the same command).
/// Then (re)writes the record, so a killed run can be resumed. Shards of
/// one run write the same record.
pub fn resume_in(dir: &Path, settings: &serde_json::Value) -> Result<bool, String> {
    resume_at(&dir.join(RUN_RECORD), settings)
}

/// [`resume_in`] with the record at `path`.
pub fn resume_at(path: &Path, settings: &serde_json::Value) -> Result<bool, String> {
    let path = path.to_path_buf();
    let same = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| &v == settings);
    if !same {
        let mut text = serde_json::to_vec_pretty(settings).map_err(|e| e.to_string())?;
        text.push(b'\n');
        crate::io::write_atomic(&path, &text).map_err(|e| e.to_string())?;
    }
    Ok(same)
}

/// What identifies a file in a settings record: its absolute path, size
/// and modification time (a changed model or input is another run).
pub fn file_identity(path: &Path) -> serde_json::Value {
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| PathBuf::from(path));
    let meta = std::fs::metadata(path).ok();
    let mtime = meta
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as u64);
    serde_json::json!({"path": abs.display().to_string(), "bytes": meta.map(|m| m.len()), "mtime_ns": mtime})
}

/// The samples one shard of a batch `sample`/`solve` run draws.
///
/// With `--shard`, sample k of the whole run (global index) is written as
/// `OUT_k.EXT` (also for `.npy`), with the noise of sample k of one run
/// (`SamplerParams::first_sample`). Samples are written in order, so a
/// rerun of the same command starts at the shard's first missing sample.
pub struct SampleSlice {
    /// Global index of the first sample to draw.
    pub first: usize,
    /// Samples to draw (0: this shard is done).
    pub count: usize,
    /// Samples of this shard already written by an earlier run.
    pub skipped: usize,
    output: PathBuf,
}

impl SampleSlice {
    /// `None` without `--shard` (an ordinary run). `settings` describes
    /// the command (without its shard) for the resume record
    /// `.OUT.prior-run.json` beside the output.
    pub fn plan(
        args: &ShardArgs,
        total: usize,
        output: &Path,
        flags: &crate::cmd::sample::RunFlags,
        settings: serde_json::Value,
    ) -> Result<Option<SampleSlice>, String> {
        if args.shard.is_none() {
            return Ok(None);
        }
        if flags.trajectory.is_some() || flags.plot.is_some() {
            return Err("--trajectory and --plot are not available with --shard (every shard would write them)".into());
        }
        let shard = args.resolve()?;
        let range = shard.range(total);
        let name = output
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let resume = resume_at(
            &output.with_file_name(format!(".{name}.prior-run.json")),
            &settings,
        )?;
        let mut first = range.start;
        while resume && first < range.end && numbered(output, first).is_file() {
            first += 1;
        }
        Ok(Some(SampleSlice {
            first,
            count: range.end - first,
            skipped: first - range.start,
            output: output.into(),
        }))
    }

    /// Writes the drawn batch (channels-last `data` of `shape`) as one
    /// numbered file per sample, in order; returns the paths.
    pub fn write(&self, data: &[f32], shape: prior_gpu::Shape) -> Result<Vec<PathBuf>, String> {
        let mut out = Vec::with_capacity(shape.n);
        for s in 0..shape.n {
            let p = numbered(&self.output, self.first + s);
            let img = crate::cmd::sample::sample_image(data, shape, s);
            crate::io::write_output(&p, &img).map_err(|e| e.to_string())?;
            out.push(p);
        }
        Ok(out)
    }
}

/// `OUT_k.EXT`, the name `sample`/`solve` give sample k of a batch.
pub fn numbered(path: &Path, k: usize) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{stem}_{k}.{ext}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn slices_are_disjoint_and_cover_everything() {
        for total in [0, 1, 5, 12, 13, 100] {
            for count in 1..=7 {
                let mut next = 0;
                for index in 0..count {
                    let r = Shard::new(index, count).unwrap().range(total);
                    assert_eq!(r.start, next, "{total} items, shard {index}/{count}");
                    assert!(r.len() <= total.div_ceil(count));
                    next = r.end;
                }
                assert_eq!(next, total);
            }
        }
        assert_eq!(Shard::new(1, 3).unwrap().range(10), 3..6);
    }

    #[test]
    fn specs_parse_and_bad_ones_say_why() {
        assert_eq!(
            parse_shard_spec("2/5"),
            Ok(ShardSpec::Fixed(Shard { index: 2, count: 5 }))
        );
        assert_eq!(parse_shard_spec("auto"), Ok(ShardSpec::Auto));
        assert!(parse_shard_spec("5/5").unwrap_err().contains("0-based"));
        assert!(parse_shard_spec("0/0").unwrap_err().contains("at least 1"));
        assert!(parse_shard_spec("3").unwrap_err().contains("expected I/N"));
    }

    #[test]
    fn auto_reads_slurm_and_kubernetes() {
        let a = ShardArgs {
            shard: Some(ShardSpec::Auto),
            shard_count: None,
        };
        let slurm = [
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "8"),
        ];
        assert_eq!(
            a.resolve_with(env(&slurm)),
            Ok(Shard { index: 3, count: 8 })
        );
        let one_based = [
            ("SLURM_ARRAY_TASK_ID", "8"),
            ("SLURM_ARRAY_TASK_COUNT", "8"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ];
        assert_eq!(
            a.resolve_with(env(&one_based)),
            Ok(Shard { index: 7, count: 8 })
        );
        let k8s = [("JOB_COMPLETION_INDEX", "4"), ("PRIOR_SHARD_COUNT", "10")];
        assert_eq!(
            a.resolve_with(env(&k8s)),
            Ok(Shard {
                index: 4,
                count: 10
            })
        );
        let flag = ShardArgs {
            shard: Some(ShardSpec::Auto),
            shard_count: Some(6),
        };
        assert_eq!(
            flag.resolve_with(env(&[("JOB_COMPLETION_INDEX", "5")])),
            Ok(Shard { index: 5, count: 6 })
        );
        assert!(a
            .resolve_with(env(&[("JOB_COMPLETION_INDEX", "5")]))
            .unwrap_err()
            .contains("--shard-count"));
        assert!(a.resolve_with(env(&[])).unwrap_err().contains("neither"));
        assert!(flag
            .resolve_with(env(&[("JOB_COMPLETION_INDEX", "6")]))
            .unwrap_err()
            .contains("below the count"));
        assert_eq!(
            ShardArgs::default().resolve_with(env(&slurm)),
            Ok(Shard::default())
        );
    }
}
