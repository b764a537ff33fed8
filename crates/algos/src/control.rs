//! What every long-running algorithm shares with its caller: a progress
//! callback that may stop the run ([`Flow`]), and a wall clock that works
//! in the browser too ([`Clock`]; `std::time::Instant` panics on
//! `wasm32-unknown-unknown`).

use std::ops::ControlFlow;

/// What a progress callback returns: `()` (go on) or a
/// [`ControlFlow<()>`] (`Break(())` stops the run, which then ends with
/// the algorithm's `Cancelled` error at its next readback). The CLI's
/// callbacks return `()`; the browser's return `Break` once an
/// `AbortSignal` fired.
pub trait Flow {
    /// This value as a `ControlFlow`.
    fn flow(self) -> ControlFlow<()>;
}

impl Flow for () {
    fn flow(self) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

impl Flow for ControlFlow<()> {
    fn flow(self) -> ControlFlow<()> {
        self
    }
}

/// A started wall clock (`Instant` natively, `Date.now()` in the browser).
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    #[cfg(not(target_arch = "wasm32"))]
    start: std::time::Instant,
    #[cfg(target_arch = "wasm32")]
    start_ms: f64,
}

impl Clock {
    /// Starts the clock.
    pub fn start() -> Clock {
        Clock {
            #[cfg(not(target_arch = "wasm32"))]
            start: std::time::Instant::now(),
            #[cfg(target_arch = "wasm32")]
            start_ms: js_sys::Date::now(),
        }
    }

    /// Seconds since [`Clock::start`] (millisecond resolution in the browser).
    pub fn seconds(&self) -> f64 {
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.start.elapsed().as_secs_f64()
        }
        #[cfg(target_arch = "wasm32")]
        {
            (js_sys::Date::now() - self.start_ms) / 1000.0
        }
    }
}
