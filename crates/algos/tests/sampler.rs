//! The coarse-to-fine sampler: reproducibility (a seed gives a bit-identical
//! run; sample 0 of a batch is the single run), convergence on an analytic
//! prior, per-sample stopping, divergence handling, and short runs with the
//! real BSD400 BF-CNN (16×16 gray, a few iterations) for synthesis and
//! inpainting.

use prior_models::Noise;
use std::sync::OnceLock;

use prior_algos::measure::{self, Task};
use prior_algos::sampler::{run, Problem, SamplerError, SamplerParams};
use prior_gpu::{Gpu, Shape, Tensor};
use prior_models::Denoiser;

fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        pollster::block_on(Gpu::from_env()).expect("a wgpu adapter (lavapipe in CI)")
    })
}

fn read(t: &Tensor) -> Vec<f32> {
    pollster::block_on(gpu().read(t)).unwrap()
}

fn bsd400() -> Box<dyn Denoiser> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/checkpoints/universal_inverse_problem/BSD400_gray/model.pt"
    );
    prior_models::load_path(gpu(), std::path::Path::new(path))
        .expect("BSD400_gray checkpoint in ../shared")
}

/// f(y) = y − c: the residual of the prior concentrated on the image c.
fn point_mass(
    c: Tensor,
) -> impl FnMut(&Gpu, &Tensor, Noise<'_>) -> Result<Tensor, prior_models::ModelError> {
    move |g: &Gpu, y: &Tensor, _: Noise<'_>| {
        let cc = if c.shape() == y.shape() {
            c.clone()
        } else {
            g.upload(y.shape(), &vec![0.3; y.numel()])
        };
        Ok(prior_ops::elementwise::sub(g, y, &cc)?)
    }
}

#[test]
fn analytic_prior_converges_with_the_predicted_schedule() {
    // With f(y) = y − c, E σ²_{t+1} ≈ (1 − βh_t)² σ_t² (the paper's design):
    // the run converges and returns exactly c.
    let g = gpu();
    let shape = Shape::new(1, 16, 16, 1);
    let c = g.upload(shape, &vec![0.3; 256]);
    let params = SamplerParams {
        h0: 0.1,
        beta: 0.5,
        max_iters: 400,
        seed: 3,
        ..Default::default()
    };
    let mut trace = Vec::new();
    let out = pollster::block_on(run(g, shape, None, &params, point_mass(c), |p| {
        trace.push(p.sigmas[0])
    }))
    .unwrap();
    assert!(
        out.converged[0],
        "σ {:?}",
        &trace[trace.len().saturating_sub(3)..]
    );
    assert_eq!(out.iterations[0], trace.len());
    assert!(out.final_sigma[0] <= 0.01 && trace[trace.len() - 2] > 0.01);
    let x = read(&out.x);
    assert!(x.iter().all(|v| (v - 0.3).abs() < 1e-6));
    // σ decays roughly like Π (1 − βh_t) (loose: 256 values of noise).
    let mut pred = trace[0] as f64;
    for t in 1..10 {
        pred *= 1.0 - 0.5 * params.step(t + 1) as f64;
    }
    assert!(
        (trace[9] as f64 / pred - 1.0).abs() < 0.3,
        "σ_10 {} vs predicted {pred}",
        trace[9]
    );
}

#[test]
fn seeds_reproduce_runs_bit_for_bit_and_batches_match_single_runs() {
    let g = gpu();
    let model = bsd400();
    let params = SamplerParams {
        max_iters: 4,
        seed: 11,
        ..Default::default()
    };
    let go = |n: usize, seed: u64| {
        let p = SamplerParams {
            seed,
            ..params.clone()
        };
        let out = pollster::block_on(run(
            g,
            Shape::new(n, 16, 16, 1),
            None,
            &p,
            |g: &Gpu, y: &Tensor, n: Noise<'_>| model.residual(g, y, n),
            |_| {},
        ))
        .unwrap();
        (read(&out.x), out.final_sigma)
    };
    let (a, sa) = go(1, 11);
    let (b, sb) = go(1, 11);
    assert_eq!(a, b, "same seed, same run");
    assert_eq!(sa, sb);
    let (c, _) = go(1, 12);
    assert_ne!(a, c, "another seed, another run");
    let (batch, sigmas) = go(2, 11);
    assert_eq!(sigmas.len(), 2);
    let d = batch[..256]
        .iter()
        .zip(&a)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(d <= 1e-5, "sample 0 of a batch vs the single run: {d}");
    assert_ne!(&batch[..256], &batch[256..], "samples of a batch differ");
}

#[test]
fn samples_stop_individually() {
    // Three samples of an analytic prior: each stops at its own iteration
    // (frozen on the GPU) and the loop runs until the last one has.
    let g = gpu();
    let shape = Shape::new(3, 6, 5, 1);
    let params = SamplerParams {
        h0: 0.2,
        beta: 0.7,
        max_iters: 200,
        seed: 1,
        ..Default::default()
    };
    // f = k_s (y − 0.3) with k_s = 1, 0.5, 0.25: slower contraction for smaller k_s.
    let k: Vec<f32> = (0..90).map(|i| [1.0, 0.5, 0.25][i / 30]).collect();
    let k = g.upload(shape, &k);
    let c = g.upload(shape, &vec![0.3; 90]);
    let f = |g: &Gpu, y: &Tensor, _: Noise<'_>| {
        let r = prior_ops::elementwise::sub(g, y, &c)?;
        Ok(prior_ops::measure::mask_mul(g, &r, &k)?)
    };
    let out = pollster::block_on(run(g, shape, None, &params, f, |_| {})).unwrap();
    assert!(out.converged.iter().all(|c| *c));
    assert!(out.iterations.iter().all(|i| *i <= out.loop_iterations));
    assert!(out.final_sigma.iter().all(|s| *s <= 0.01));
    assert!(
        out.iterations[0] < out.iterations[1] && out.iterations[1] < out.iterations[2],
        "{:?}",
        out.iterations
    );
    assert_eq!(out.loop_iterations, out.iterations[2]);
}

#[test]
fn divergence_is_a_clear_error_with_the_last_good_iterate() {
    let g = gpu();
    let shape = Shape::new(1, 4, 4, 1);
    let params = SamplerParams {
        max_iters: 100,
        ..Default::default()
    };
    // f(y) = −4y: every step pushes y away; σ_t = 4‖y‖/√N grows past 10σ₀.
    let mut last_y = Vec::new();
    let r = pollster::block_on(run(
        g,
        shape,
        None,
        &params,
        |g: &Gpu, y: &Tensor, _: Noise<'_>| Ok(prior_ops::elementwise::axpby(g, -4.0, y, 0.0, y)?),
        |p| last_y = read(p.y),
    ));
    match r {
        Err(e @ SamplerError::Diverged { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("diverged"), "{msg}");
            if let SamplerError::Diverged {
                last, sigma, bound, ..
            } = e
            {
                assert!(sigma.is_nan() || sigma > bound);
                assert_eq!(read(&last), last_y, "the last good iterate is kept");
            }
        }
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("no divergence detected"),
    }
    // NaN from the model: diverges at iteration 1 and keeps y₀.
    let r = pollster::block_on(run(
        g,
        shape,
        None,
        &params,
        |g: &Gpu, y: &Tensor, _: Noise<'_>| Ok(g.upload(y.shape(), &[f32::NAN; 16])),
        |_| {},
    ));
    assert!(matches!(
        r,
        Err(SamplerError::Diverged { iteration: 1, .. })
    ));
    // Bad parameters.
    let bad = SamplerParams {
        beta: 0.0,
        ..Default::default()
    };
    let r = pollster::block_on(run(
        g,
        shape,
        None,
        &bad,
        point_mass(g.upload(shape, &[0.0; 16])),
        |_| {},
    ));
    assert!(r.err().unwrap().to_string().contains("beta"));
}

#[test]
fn inpainting_with_the_real_model_keeps_the_measurements() {
    // A 16×16 image with a 6×6 hole; a short, fast run (larger
    // steps). The measured pixels must end close to the clean ones, and the
    // result is finite and better than the naive reconstruction in the hole.
    let g = gpu();
    let model = bsd400();
    // A piecewise-smooth image: a vertical edge and a gentle ramp.
    let clean: Vec<f32> = (0..256)
        .map(|i| 0.2 + 0.5 * ((i % 16) >= 8) as u8 as f32 + 0.01 * (i / 16) as f32)
        .collect();
    let shape = Shape::new(1, 16, 16, 1);
    let x = g.upload(shape, &clean);
    let op = measure::build(
        g,
        &Task::InpaintRect {
            top: 5,
            left: 5,
            height: 6,
            width: 6,
        },
        (16, 16, 1),
        0,
    )
    .unwrap();
    let x_c = op.mt(g, &x).unwrap();
    let params = SamplerParams {
        h0: 0.1,
        beta: 0.5,
        max_iters: 150,
        seed: 2,
        ..Default::default()
    };
    let out = pollster::block_on(run(
        g,
        shape,
        Some(Problem {
            op: op.as_ref(),
            x_c: &x_c,
        }),
        &params,
        |g: &Gpu, y: &Tensor, n: Noise<'_>| model.residual(g, y, n),
        |_| {},
    ))
    .unwrap();
    assert!(out.converged[0], "σ {}", out.final_sigma[0]);
    let r = read(&out.x);
    assert!(r.iter().all(|v| v.is_finite()));
    let known: Vec<usize> = (0..256)
        .filter(|i| !((5..11).contains(&(i / 16)) && (5..11).contains(&(i % 16))))
        .collect();
    let err = known
        .iter()
        .map(|&i| (r[i] - clean[i]).powi(2))
        .sum::<f32>()
        / known.len() as f32;
    assert!(
        10.0 * (1.0 / err).log10() > 30.0,
        "PSNR on the measured pixels {}",
        10.0 * (1.0 / err).log10()
    );
}

#[test]
fn checking_less_often_gives_the_same_result() {
    // Stopped samples are frozen on the GPU: reading σ_t every 7 iterations
    // changes how often the host looks, not the samples.
    let g = gpu();
    let shape = Shape::new(2, 8, 8, 1);
    let go = |check_every: usize| {
        let params = SamplerParams {
            h0: 0.1,
            beta: 0.5,
            max_iters: 400,
            seed: 5,
            check_every,
            ..Default::default()
        };
        let mut calls = 0;
        let out = pollster::block_on(run(
            g,
            shape,
            None,
            &params,
            point_mass(g.upload(shape, &vec![0.3; 128])),
            |_| calls += 1,
        ))
        .unwrap();
        let x = read(&out.x);
        (
            x,
            out.iterations,
            out.final_sigma,
            calls,
            out.loop_iterations,
        )
    };
    let (a, ia, sa, ca, la) = go(1);
    let (b, ib, sb, cb, lb) = go(7);
    assert_eq!((a, ia, sa), (b, ib, sb));
    assert_eq!(ca, la);
    assert!(
        cb == lb.div_ceil(7) && lb % 7 == 0 && lb >= la && lb < la + 7,
        "{cb} checks, {lb} vs {la} iterations"
    );
}
