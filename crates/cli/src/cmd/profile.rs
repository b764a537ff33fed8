//! `--profile` of `denoise`, `sample` and `solve`: per-kernel GPU time from
//! timestamp queries ([`prior_gpu::Gpu::start_profiling`]), printed to
//! stderr when the command ends, the most expensive kernel first. Adapters
//! without timestamp queries get a clear error before any work.

use prior_gpu::Gpu;

/// Turns profiling on when `on`; an error naming the adapter when it has
/// no timestamp queries.
pub fn start(gpu: &Gpu, on: bool) -> Result<(), String> {
    if on {
        gpu.start_profiling()
            .map_err(|e| format!("--profile: {e}"))?;
    }
    Ok(())
}

/// Prints the per-kernel table (nothing when profiling is off).
pub fn report(gpu: &Gpu) {
    if !gpu.profiling() {
        return;
    }
    match pollster::block_on(gpu.profile()) {
        Ok(rows) => {
            let total: f64 = rows.iter().map(|r| r.seconds).sum();
            let calls: u64 = rows.iter().map(|r| r.calls).sum();
            eprintln!(
                "GPU time per kernel ({} dispatches, {:.1} ms of GPU time; timestamp queries, one pass per dispatch):",
                calls,
                total * 1e3
            );
            eprintln!(
                "{:<46} {:>8} {:>11} {:>10} {:>6}",
                "kernel", "calls", "total ms", "mean µs", "share"
            );
            for r in &rows {
                eprintln!(
                    "{:<46} {:>8} {:>11.2} {:>10.1} {:>5.1}%",
                    r.kernel,
                    r.calls,
                    r.seconds * 1e3,
                    r.seconds / r.calls.max(1) as f64 * 1e6,
                    100.0 * r.seconds / total.max(f64::MIN_POSITIVE)
                );
            }
        }
        Err(e) => eprintln!("--profile: cannot read the timings: {e}"),
    }
}

/// Prints the report when dropped (at the end of a command, errors included).
pub struct Guard<'a>(pub &'a Gpu);

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        report(self.0);
    }
}
