//! MALA kernels against the CPU reference on odd shapes: the Langevin
//! proposal, the per-sample Metropolis–Hastings log α (one and several
//! partial-sum workgroups per sample), the accept decision from the uniform
//! draw, the in-place select, and the energy reset. Proposals: 1e-5 absolute
//! (|z| ≤ 6, an ulp of ln/cos may differ, times √(2ε) ≤ 1). log α is an f32
//! tree sum on the GPU vs f64 on the CPU of terms of size ~1: 1e-4·(1 + |log α|)
//! covers the f32 rounding of a few thousand terms.

mod common;
use common::{gpu, max_abs_diff, rand_vec};
use prior_ops::mala::{self, field, Pair, STATE};
use prior_ops::reference::{mala as cpu, rng};
use prior_ops::Shape;

fn read(t: &prior_ops::Tensor) -> Vec<f32> {
    pollster::block_on(gpu().read(t)).unwrap()
}

fn check_step(shape: Shape, eps: f32, seed: u64) {
    let g = gpu();
    let n = shape.n;
    let hwc = (shape.h, shape.w, shape.c);
    let y = rand_vec(shape.numel(), seed);
    let grad: Vec<f32> = rand_vec(shape.numel(), seed + 1)
        .iter()
        .map(|v| 3.0 * v)
        .collect();
    let (ty, tg) = (g.upload(shape, &y), g.upload(shape, &grad));
    let key = rng::key(seed, 0x8000_0002);

    let yp = read(&mala::propose(g, &ty, &tg, eps, key).unwrap());
    let want = cpu::propose(&y, &grad, hwc, eps, key);
    let err = max_abs_diff(&yp, &want);
    assert!(err <= 1e-5, "{shape}: proposal off by {err}");

    // A gradient at y' and energies chosen so that log α is spread around 0.
    let gp: Vec<f32> = rand_vec(shape.numel(), seed + 2)
        .iter()
        .map(|v| 3.0 * v)
        .collect();
    let u: Vec<f32> = (0..n).map(|s| 10.0 + s as f32).collect();
    let la0 = cpu::log_alpha(&u, &u, &y, &grad, &yp, &gp, eps);
    let u_prop: Vec<f32> = (0..n)
        .map(|s| u[s] + la0[s] as f32 + 2.0 - (s % 5) as f32)
        .collect();
    let mut state = vec![0.0f32; n * STATE];
    for s in 0..n {
        state[s * STATE + field::ENERGY] = u[s];
        state[s * STATE + field::ACCEPTED] = 3.0;
    }
    let ts = g.upload(Shape::vector(state.len()), &state);
    let (typ, tgp) = (g.upload(shape, &yp), g.upload(shape, &gp));
    let tup = g.upload(Shape::new(n, 1, 1, 1), &u_prop);
    let pair = Pair {
        y: &ty,
        g: &tg,
        y_prop: &typ,
        g_prop: &tgp,
        u_prop: &tup,
    };
    let ukey = rng::key(seed, 0x8000_0003);
    mala::accept(g, &pair, &ts, eps, ukey).unwrap();
    let got = read(&ts);
    let la = cpu::log_alpha(&u, &u_prop, &y, &grad, &yp, &gp, eps);
    let mut decisions = [0usize; 2];
    for s in 0..n {
        let st = &got[s * STATE..(s + 1) * STATE];
        let gla = st[field::LOG_ALPHA] as f64;
        assert!(
            (gla - la[s]).abs() <= 1e-4 * (1.0 + la[s].abs()),
            "{shape} sample {s}: log α {gla} vs {}",
            la[s]
        );
        // The decision is the one the GPU's own log α implies ...
        let take = (cpu::uniform(ukey, s as u32).ln() as f64) < gla;
        assert_eq!(
            st[field::LAST],
            if take { 1.0 } else { 0.0 },
            "{shape} sample {s}"
        );
        assert_eq!(st[field::ACCEPTED], if take { 4.0 } else { 3.0 });
        assert_eq!(st[field::ENERGY], if take { u_prop[s] } else { u[s] });
        decisions[take as usize] += 1;
    }
    // ... and, away from ties, the CPU reference's.
    let mut cstate = state.clone();
    cpu::accept(&mut cstate, &u_prop, &la, ukey);
    for s in 0..n {
        let margin = (cpu::uniform(ukey, s as u32).ln() as f64 - la[s]).abs();
        if margin > 1e-3 {
            assert_eq!(
                cstate[s * STATE + field::LAST],
                got[s * STATE + field::LAST],
                "{shape} sample {s}"
            );
        }
    }
    if n >= 8 {
        assert!(
            decisions[0] > 0 && decisions[1] > 0,
            "{shape}: both decisions should occur, got {decisions:?}"
        );
    }

    // Select keeps y', g' exactly where accepted, y, g elsewhere.
    mala::select(g, &ts, &ty, &tg, &typ, &tgp).unwrap();
    let (mut y2, mut g2) = (y.clone(), grad.clone());
    cpu::select(&got, &mut y2, &mut g2, &yp, &gp);
    assert_eq!(read(&ty), y2);
    assert_eq!(read(&tg), g2);
}

#[test]
fn one_step_matches_cpu_on_odd_shapes() {
    check_step(Shape::new(3, 5, 7, 2), 0.013, 1);
    check_step(Shape::new(9, 3, 3, 1), 0.2, 2);
    // 2960 values per sample: two partial-sum workgroups per sample.
    check_step(Shape::new(2, 40, 37, 2), 1e-3, 3);
    check_step(Shape::new(17, 4, 3, 3), 0.05, 4);
}

#[test]
fn set_energy_and_shape_errors() {
    let g = gpu();
    let st = mala::new_state(g, 5);
    let e = g.upload(Shape::new(5, 1, 1, 1), &[1.0, -2.0, 3.5, 1e4, 0.25]);
    mala::set_energy(g, &st, &e).unwrap();
    let got = read(&st);
    for (s, want) in [1.0, -2.0, 3.5, 1e4, 0.25].iter().enumerate() {
        assert_eq!(got[s * STATE + field::ENERGY], *want);
        assert_eq!(got[s * STATE + field::ACCEPTED], 0.0);
    }
    let shape = Shape::new(2, 3, 3, 1);
    let y = g.zeros(shape);
    let bad = g.zeros(Shape::new(2, 3, 4, 1));
    assert!(mala::propose(g, &y, &bad, 0.1, 0).is_err());
    assert!(mala::propose(g, &y, &y, 0.0, 0).is_err());
    assert!(mala::propose(g, &y, &y, f32::NAN, 0).is_err());
    assert!(mala::set_energy(g, &st, &g.zeros(Shape::new(4, 1, 1, 1))).is_err());
    let u = g.zeros(Shape::new(2, 1, 1, 1));
    let pair = Pair {
        y: &y,
        g: &y,
        y_prop: &y,
        g_prop: &y,
        u_prop: &u,
    };
    assert!(
        mala::accept(g, &pair, &st, 0.1, 0).is_err(),
        "a state for 5 samples with a batch of 2"
    );
    assert!(mala::select(g, &st, &y, &y, &y, &bad).is_err());
}

#[test]
fn a_nan_proposal_is_rejected() {
    let g = gpu();
    let shape = Shape::new(2, 2, 3, 1);
    let y = g.upload(shape, &[0.5; 12]);
    let st = mala::new_state(g, 2);
    mala::set_energy(g, &st, &g.upload(Shape::new(2, 1, 1, 1), &[1.0, 1.0])).unwrap();
    let mut yp = vec![0.5f32; 12];
    yp[7] = f32::NAN;
    let typ = g.upload(shape, &yp);
    let u = g.upload(Shape::new(2, 1, 1, 1), &[-1e30, f32::NAN]);
    let zero = g.zeros(shape);
    let pair = Pair {
        y: &y,
        g: &zero,
        y_prop: &typ,
        g_prop: &zero,
        u_prop: &u,
    };
    mala::accept(g, &pair, &st, 0.1, 7).unwrap();
    let got = read(&st);
    assert_eq!(got[field::LAST], 1.0, "a much lower energy is accepted");
    assert_eq!(
        got[STATE + field::LAST],
        0.0,
        "NaN in y' and U(y') is rejected"
    );
    assert_eq!(got[STATE + field::ENERGY], 1.0);
}
