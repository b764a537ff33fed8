//! Annealed MALA on energies known in closed form: a Gaussian
//! U(y, t) = ‖y − μ‖²/(2(s² + t)) (p_t = N(μ, (s² + t)·I), the density of
//! N(μ, s²) smoothed by noise of variance t), built from existing ops and
//! one test-local kernel (1/(s² + t) per sample).
//!
//! Error bars: chains are independent, so each pixel's values over the n
//! chains are i.i.d. samples of its marginal; the sample mean has standard
//! error √(v/n) and the sample variance v·√(2/(n − 1)). Every check allows
//! 4.5 standard errors (with 4 pixels × 2 statistics, a false failure has
//! probability < 1e-4).

use std::sync::OnceLock;

use prior_algos::mala::{run, Energy, MalaError, MalaParams};
use prior_gpu::{Access, Dispatch, Gpu, Kernel, Shape, Tensor};
use prior_models::ModelError;
use prior_ops::elementwise::{axpby, sub};
use prior_ops::linear::sample_axpy;
use prior_ops::reduce::dot_per_sample;

fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        pollster::block_on(Gpu::from_env()).expect("a wgpu adapter (lavapipe in CI)")
    })
}

fn read(t: &Tensor) -> Vec<f32> {
    pollster::block_on(gpu().read(t)).unwrap()
}

const PRECISION_WGSL: &str = "
struct P { n: u32, s2: f32, _a: u32, _b: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> t: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x < p.n) { out[gid.x] = 1.0 / (p.s2 + t[gid.x]); }
}
";
/// The Rust twin of `P`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct P {
    n: u32,
    s2: f32,
    _a: u32,
    _b: u32,
}
prior_gpu::uniform!(P { n, s2, _a, _b });

const PRECISION: Kernel = Kernel {
    file: "test_precision.wgsl",
    source: PRECISION_WGSL,
    entry: "main",
    bindings: &[Access::Read, Access::ReadWrite],
};

/// U(y, t) = ‖y − μ‖²/(2(s² + t)), ∇U = (y − μ)/(s² + t).
struct Gaussian {
    mu: Tensor,
    s2: f32,
    zeros: Tensor,
}

impl Gaussian {
    fn new(shape: Shape, mu_pixels: &[f32], s2: f32) -> Gaussian {
        let g = gpu();
        let mu: Vec<f32> = (0..shape.numel())
            .map(|j| mu_pixels[j % mu_pixels.len()])
            .collect();
        Gaussian {
            mu: g.upload(shape, &mu),
            s2,
            zeros: g.zeros(shape),
        }
    }
}

impl Energy for Gaussian {
    fn energy_and_grad(
        &self,
        gpu: &Gpu,
        y: &Tensor,
        t: &Tensor,
    ) -> Result<(Tensor, Tensor), ModelError> {
        let n = t.numel();
        let w = gpu.empty(Shape::new(n, 1, 1, 1));
        let p = P {
            n: n as u32,
            s2: self.s2,
            _a: 0,
            _b: 0,
        };
        gpu.launch(&PRECISION, &[], &p, &[t, &w], Dispatch::flat(n as u32, 64));
        let diff = sub(gpu, y, &self.mu)?;
        let grad = sample_axpy(gpu, &self.zeros, &w, &diff)?;
        let dot = dot_per_sample(gpu, &diff, &grad)?;
        Ok((axpby(gpu, 0.5, &dot, 0.0, &dot)?, grad))
    }
}

/// The same energy with the gradient's sign flipped: the proposal drifts
/// away from the mode, but MH with that proposal is still exact.
struct WrongSign(Gaussian);

impl Energy for WrongSign {
    fn energy_and_grad(
        &self,
        gpu: &Gpu,
        y: &Tensor,
        t: &Tensor,
    ) -> Result<(Tensor, Tensor), ModelError> {
        let (u, g) = self.0.energy_and_grad(gpu, y, t)?;
        Ok((u, axpby(gpu, -1.0, &g, 0.0, &g)?))
    }
}

/// Checks each pixel's mean and variance over the batch against N(mu, v).
fn check_moments(what: &str, x: &[f32], per: usize, mu: &[f32], v: f64) {
    let n = x.len() / per;
    for p in 0..per {
        let vals: Vec<f64> = (0..n).map(|s| x[s * per + p] as f64).collect();
        let m = vals.iter().sum::<f64>() / n as f64;
        let var = vals.iter().map(|a| (a - m).powi(2)).sum::<f64>() / (n - 1) as f64;
        let se_m = (v / n as f64).sqrt();
        let se_v = v * (2.0 / (n - 1) as f64).sqrt();
        let mu_p = mu[p % mu.len()] as f64;
        assert!(
            (m - mu_p).abs() <= 4.5 * se_m,
            "{what} pixel {p}: mean {m:.5} vs {mu_p} (se {se_m:.2e})"
        );
        assert!(
            (var - v).abs() <= 4.5 * se_v,
            "{what} pixel {p}: variance {var:.5} vs {v:.5} (se {se_v:.2e})"
        );
    }
}

#[test]
fn annealed_mala_samples_the_gaussian_mean_and_variance() {
    let n = 4096;
    let shape = Shape::new(n, 2, 2, 1);
    let mu = [0.2, 0.45, 0.7, 0.9];
    let s2 = 0.01;
    let energy = Gaussian::new(shape, &mu, s2);
    let params = MalaParams {
        levels: 6,
        steps: 25,
        t_max: 1.0,
        t_min: 1e-3,
        step_scale: 0.3,
        target_acceptance: Some(0.574),
        denoise: true,
        seed: 3,
    };
    let out = pollster::block_on(run(gpu(), &energy, shape, &params, |_| {})).unwrap();
    assert_eq!(out.levels.len(), 6);
    assert_eq!(out.evaluations, 6 * 26);
    let t_l = out.levels[5].t as f64;
    assert!((t_l - 1e-3).abs() < 1e-9);
    for l in &out.levels {
        assert!(
            l.mean_acceptance > 0.3 && l.mean_acceptance <= 1.0,
            "level {}: acceptance {}",
            l.level,
            l.mean_acceptance
        );
        assert_eq!(l.acceptance.len(), n);
    }
    // The chain: N(μ, s² + t_L). The Tweedie output μ + s²/(s² + t)(y − μ):
    // N(μ, s⁴/(s² + t_L)).
    let v = s2 as f64 + t_l;
    check_moments("chain", &read(&out.y), 4, &mu, v);
    check_moments("denoised", &read(&out.x), 4, &mu, (s2 as f64).powi(2) / v);
}

/// Starts at the target N(0.5, 1) (y₀ = 0.5 + z, t = 1, s² = 0): an exact
/// chain stays there whatever the proposal, so the moments after a few
/// steps test the Metropolis–Hastings correction itself.
fn stationary_run<E: Energy>(energy: &E, n: usize, step_scale: f32) -> (Vec<f32>, f32) {
    let shape = Shape::new(n, 2, 2, 1);
    let params = MalaParams {
        levels: 1,
        steps: 20,
        t_max: 1.0,
        t_min: 1.0,
        step_scale,
        target_acceptance: None,
        denoise: false,
        seed: 11,
    };
    let out = pollster::block_on(run(gpu(), energy, shape, &params, |_| {})).unwrap();
    (read(&out.y), out.levels[0].mean_acceptance)
}

#[test]
fn a_too_large_step_is_rarely_accepted_and_the_chain_stays_exact() {
    let n = 4096;
    let energy = Gaussian::new(Shape::new(n, 2, 2, 1), &[0.5], 0.0);
    // ε = 4v: the unadjusted step y' − μ = −3(y − μ) + √8·z would blow up
    // (variance ×17 per step).
    let (y, acc) = stationary_run(&energy, n, 4.0);
    assert!(acc > 0.0 && acc < 0.1, "acceptance {acc}");
    check_moments("too large a step", &y, 4, &[0.5], 1.0);
    // A good step for comparison.
    let (y, acc) = stationary_run(&energy, n, 0.5);
    assert!(acc > 0.8, "acceptance {acc}");
    check_moments("good step", &y, 4, &[0.5], 1.0);
}

#[test]
fn a_wrong_sign_gradient_is_rarely_accepted_and_the_chain_stays_exact() {
    let n = 4096;
    let energy = WrongSign(Gaussian::new(Shape::new(n, 2, 2, 1), &[0.5], 0.0));
    // Proposal mean μ + 2(y − μ): drifts away from the mode.
    let (y, acc) = stationary_run(&energy, n, 1.0);
    assert!(acc > 0.0 && acc < 0.3, "acceptance {acc}");
    check_moments("wrong sign", &y, 4, &[0.5], 1.0);
}

#[test]
fn the_same_seed_gives_the_same_samples() {
    let shape = Shape::new(5, 3, 5, 2);
    let energy = Gaussian::new(shape, &[0.3, 0.6], 0.02);
    let params = MalaParams {
        levels: 3,
        steps: 4,
        seed: 5,
        ..Default::default()
    };
    let a = pollster::block_on(run(gpu(), &energy, shape, &params, |_| {})).unwrap();
    let b = pollster::block_on(run(gpu(), &energy, shape, &params, |_| {})).unwrap();
    assert_eq!(read(&a.x), read(&b.x));
    assert_eq!(a.levels, b.levels);
    let c = pollster::block_on(run(
        gpu(),
        &energy,
        shape,
        &MalaParams { seed: 6, ..params },
        |_| {},
    ))
    .unwrap();
    assert_ne!(read(&a.x), read(&c.x));
}

#[test]
fn bad_parameters_are_refused() {
    let shape = Shape::new(1, 2, 2, 1);
    let energy = Gaussian::new(shape, &[0.5], 0.0);
    for p in [
        MalaParams {
            levels: 0,
            ..Default::default()
        },
        MalaParams {
            steps: 0,
            ..Default::default()
        },
        MalaParams {
            t_min: 2.0,
            ..Default::default()
        },
        MalaParams {
            t_max: f32::NAN,
            ..Default::default()
        },
        MalaParams {
            step_scale: -1.0,
            ..Default::default()
        },
        MalaParams {
            target_acceptance: Some(1.0),
            ..Default::default()
        },
    ] {
        let r = pollster::block_on(run(gpu(), &energy, shape, &p, |_| {}));
        assert!(matches!(r, Err(MalaError::Invalid(_))), "{p:?}");
    }
}
