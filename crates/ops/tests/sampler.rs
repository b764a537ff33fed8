//! Sampler kernels against the CPU reference on odd shapes: the direction
//! d_t (masking and general operators, broadcast of m and M x_c), per-sample
//! σ_t/γ_t/status on the GPU, and the noisy in-place update. σ is an f32
//! tree sum on the GPU vs f64 on the CPU: relative 1e-6; updated values 1e-6
//! absolute (|z| ≤ 6, an ulp of ln/cos may differ).

mod common;
use common::{gpu, max_abs_diff, rand_vec};
use prior_ops::reference::{rng, sampler as cpu};
use prior_ops::sampler::{self, field, Schedule, Step, CONVERGED, DIVERGED, RUNNING, STATE};
use prior_ops::Shape;

fn read(t: &prior_ops::Tensor) -> Vec<f32> {
    pollster::block_on(gpu().read(t)).unwrap()
}

#[test]
fn direction_matches_cpu_with_broadcast() {
    let g = gpu();
    let shape = Shape::new(3, 7, 5, 3);
    let one = Shape::new(1, 7, 5, 3);
    let (f, y, pu) = (
        rand_vec(shape.numel(), 1),
        rand_vec(shape.numel(), 2),
        rand_vec(shape.numel(), 3),
    );
    let m: Vec<f32> = rand_vec(one.numel(), 4)
        .iter()
        .map(|v| if *v > 0.0 { 1.0 } else { 0.0 })
        .collect();
    let b = rand_vec(one.numel(), 5);
    let (tf, ty, tpu) = (
        g.upload(shape, &f),
        g.upload(shape, &y),
        g.upload(shape, &pu),
    );
    let (tm, tb) = (g.upload(one, &m), g.upload(one, &b));
    let d = read(&sampler::direction_mask(g, &tf, &ty, &tm, &tb).unwrap());
    assert!(max_abs_diff(&d, &cpu::direction_mask(&f, &y, &m, &b)) <= 1e-6);
    let d = read(&sampler::direction_general(g, &tf, &tpu, &tb).unwrap());
    assert!(max_abs_diff(&d, &cpu::direction_general(&f, &pu, &b)) <= 1e-6);
    // A per-batch b (all samples) also broadcasts; a wrong size is an error.
    let tb3 = g.upload(shape, &pu);
    let d = read(&sampler::direction_general(g, &tf, &tpu, &tb3).unwrap());
    assert!(max_abs_diff(&d, &cpu::direction_general(&f, &pu, &pu)) <= 1e-6);
    let bad = g.upload(Shape::new(1, 7, 4, 3), &vec![0.0; 84]);
    assert!(sampler::direction_mask(g, &tf, &ty, &tm, &bad).is_err());
    assert!(sampler::direction_general(g, &tf, &ty.reshape(Shape::new(3, 5, 7, 3)), &tb).is_err());
}

#[test]
fn coefficients_and_status_match_cpu() {
    let g = gpu();
    // 4 samples: running, converging now (σ ≤ σ_L), diverging (σ > σ_max),
    // and one that had converged before (frozen).
    let shape = Shape::new(4, 9, 11, 3);
    let per = 9 * 11 * 3;
    let mut d = rand_vec(shape.numel(), 7);
    for (s, scale) in [(0, 0.7f32), (1, 0.005), (2, 30.0), (3, 0.5)] {
        for v in &mut d[s * per..(s + 1) * per] {
            *v *= scale;
        }
    }
    let mut state = vec![0.0f32; 4 * STATE];
    state[3 * STATE + field::STATUS] = CONVERGED;
    state[3 * STATE + field::SIGMA] = 0.009;
    let step = Step {
        t: 17,
        h: 0.1463,
        beta: 0.01,
        sigma_final: 0.01,
        sigma_max: 10.0,
        schedule: Schedule::Measured,
    };
    let ts = g.upload(Shape::vector(state.len()), &state);
    sampler::coefficients(g, &g.upload(shape, &d), &ts, &step).unwrap();
    let got = read(&ts);
    cpu::coefficients(&d, per, &mut state, &step);
    for s in 0..4 {
        let (a, b) = (
            &got[s * STATE..(s + 1) * STATE],
            &state[s * STATE..(s + 1) * STATE],
        );
        for k in 0..STATE {
            assert!(
                (a[k] - b[k]).abs() <= 1e-6 * b[k].abs().max(1.0),
                "sample {s} field {k}: {a:?} vs {b:?}"
            );
        }
    }
    assert_eq!(got[field::STATUS], RUNNING);
    assert_eq!(got[STATE + field::STATUS], CONVERGED);
    assert!(
        got[STATE + field::H] > 0.0,
        "the converging iteration's update is still applied"
    );
    assert_eq!(got[2 * STATE + field::STATUS], DIVERGED);
    assert_eq!(
        (got[2 * STATE + field::H], got[2 * STATE + field::GAMMA]),
        (0.0, 0.0)
    );
    assert_eq!(
        (got[3 * STATE + field::H], got[3 * STATE + field::GAMMA]),
        (0.0, 0.0)
    );
    // γ = σ √((1 − βh)² − (1 − h)²)
    let sigma = got[field::SIGMA];
    let want = sigma * ((1.0 - 0.01f32 * 0.1463).powi(2) - (1.0f32 - 0.1463).powi(2)).sqrt();
    assert!((got[field::GAMMA] - want).abs() <= 1e-6);
}

#[test]
fn recursion_schedule_matches_cpu_and_feeds_the_model() {
    // Mode 1: σ_t is the carried level, not the measured one; the next call
    // sees (1 − βh)·σ_t, and its variance kernel gives that squared.
    let g = gpu();
    let shape = Shape::new(3, 5, 7, 1);
    let per = 35;
    let d = rand_vec(shape.numel(), 21);
    let ts = sampler::new_state(g, 3, 0.8);
    let mut state = read(&ts);
    assert_eq!(
        read(&sampler::variance(g, &ts).unwrap()),
        vec![0.8f32 * 0.8; 3]
    );
    let step = Step {
        t: 1,
        h: 0.2,
        beta: 0.5,
        sigma_final: 0.01,
        sigma_max: 10.0,
        schedule: Schedule::Recursion,
    };
    sampler::coefficients(g, &g.upload(shape, &d), &ts, &step).unwrap();
    let got = read(&ts);
    cpu::coefficients(&d, per, &mut state, &step);
    for k in 0..state.len() {
        assert!(
            (got[k] - state[k]).abs() <= 1e-6 * state[k].abs().max(1.0),
            "field {k}: {got:?} vs {state:?}"
        );
    }
    assert_eq!(got[field::SIGMA], 0.8);
    let next = 0.8 * (1.0 - 0.5 * 0.2);
    assert!((got[field::SIGMA_NEXT] - next).abs() <= 1e-7);
    assert!(
        got[field::MEASURED] > 0.4 && got[field::MEASURED] < 0.7,
        "measured {}",
        got[field::MEASURED]
    );
    let v = read(&sampler::variance(g, &ts).unwrap());
    assert!((v[0] - next * next).abs() <= 1e-6, "{v:?}");
}

#[test]
fn nan_diverges() {
    let g = gpu();
    let shape = Shape::new(1, 3, 3, 1);
    let mut d = vec![0.1f32; 9];
    d[4] = f32::NAN;
    let ts = sampler::new_state(g, 1, 1.0);
    let step = Step {
        t: 1,
        h: 0.01,
        beta: 0.01,
        sigma_final: 0.01,
        sigma_max: 10.0,
        schedule: Schedule::Measured,
    };
    sampler::coefficients(g, &g.upload(shape, &d), &ts, &step).unwrap();
    assert_eq!(read(&ts)[field::STATUS], DIVERGED);
}

#[test]
fn update_matches_cpu_and_freezes_stopped_samples() {
    let g = gpu();
    let shape = Shape::new(3, 13, 7, 3);
    let per = 13 * 7 * 3;
    let y0 = rand_vec(shape.numel(), 11);
    let d = rand_vec(shape.numel(), 12);
    let mut state = vec![0.0f32; 3 * STATE];
    for (s, (h, gm)) in [(0.3f32, 0.2f32), (0.0, 0.0), (0.05, 0.9)]
        .iter()
        .enumerate()
    {
        state[s * STATE + field::H] = *h;
        state[s * STATE + field::GAMMA] = *gm;
    }
    let key = rng::key(42, 9);
    let ty = g.upload(shape, &y0);
    sampler::update(
        g,
        &ty,
        &g.upload(shape, &d),
        &g.upload(Shape::vector(state.len()), &state),
        key,
    )
    .unwrap();
    let got = read(&ty);
    let mut want = y0.clone();
    cpu::update(&mut want, &d, &state, (13, 7, 3), key);
    assert!(
        max_abs_diff(&got, &want) <= 1e-6,
        "{}",
        max_abs_diff(&got, &want)
    );
    assert_eq!(
        &got[per..2 * per],
        &y0[per..2 * per],
        "a frozen sample is untouched"
    );
}
