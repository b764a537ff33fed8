//! Parity of the conv-chain models (BF-CNN family, DnCNN) with PyTorch on
//! the real checkpoints, through the public path a user takes: load the `.pt`
//! file, denoise a planar image. Goldens: tests/golden/<case> (make_golden.py).
//!
//! Tolerance: 1e-4 max abs on outputs in [0,1]. PyTorch's own f32/f64
//! discrepancy on these cases is ≤ 2.1e-6 (meta.json `f64_discrepancy`); our
//! f32 sums run in a different order (and fold the normalisation into the
//! conv as one multiply), which over 20 layers stays well below 1e-4.

use prior_models::Noise;
use std::sync::OnceLock;

use prior_gpu::{Gpu, Shape};
use prior_models::conv_chain::ConvChain;
use prior_models::tiling::{apply_image, Apply, Planar};
use prior_models::{blob::WeightBlob, Denoiser};
use prior_ops::layout::{chw_to_hwc, hwc_to_chw};
use prior_testkit::golden::{max_abs_diff, Case};

fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        pollster::block_on(Gpu::from_env()).expect("a wgpu adapter (lavapipe in CI)")
    })
}

fn check(name: &str) {
    let case = Case::open(name);
    let model = prior_models::load_path(gpu(), &case.checkpoint()).unwrap();
    let input = case.npy("input");
    let (c, h, w) = (input.shape[0], input.shape[1], input.shape[2]);
    let img = Planar {
        c,
        h,
        w,
        data: &input.data,
    };
    let out = pollster::block_on(apply_image(
        gpu(),
        model.as_ref(),
        img.clone(),
        Apply::Denoise,
        None,
    ))
    .unwrap();
    let err = max_abs_diff(&out, &case.npy("output").data);
    // The residual path (what the sampler uses) against y − x̂ of PyTorch.
    let res = pollster::block_on(apply_image(
        gpu(),
        model.as_ref(),
        img,
        Apply::Residual,
        None,
    ))
    .unwrap();
    let want_res: Vec<f32> = input
        .data
        .iter()
        .zip(&case.npy("output").data)
        .map(|(y, d)| y - d)
        .collect();
    let err_res = max_abs_diff(&res, &want_res);
    println!(
        "{name}: max |ours − pytorch| denoised {err:.2e}, residual {err_res:.2e} ({})",
        model.describe()
    );
    assert!(err <= 1e-4, "{name}: denoised differs by {err}");
    assert!(err_res <= 1e-4, "{name}: residual differs by {err_res}");
}

#[test]
fn bf_cnn_universal_inverse_problem() {
    check("uip_bsd400_gray");
    check("uip_mnist_gray");
    check("uip_bsd300_color");
}

#[test]
fn bf_cnn_optimal_measurement_conv3_ln() {
    check("om_conv3_ln");
}

#[test]
fn bf_cnn_local_probability_low_and_flat() {
    check("lp_low40_160");
    check("lp_low40_320");
    check("lp_flat160_rf9");
    check("lp_flat160_rf43");
}

#[test]
fn dncnn_bias_and_bias_free_legacy_checkpoints() {
    check("dncnn_bias");
    check("dncnn_bias_free");
}

/// The conditional multi-scale parts run as plain chains on [low, H, V, D].
#[test]
fn bf_cnn_rf_conditional_network() {
    for name in ["lp_rf9_scale0_cond", "lp_rf13_scale0_cond"] {
        let case = Case::open(name);
        let blob = WeightBlob::load(case.checkpoint()).unwrap();
        let chain = ConvChain::from_blob(gpu(), &blob).unwrap();
        assert!(chain.conditional_details());
        let input = case.npy("input");
        let (c, h, w) = (input.shape[0], input.shape[1], input.shape[2]);
        let x = gpu().upload(Shape::new(1, h, w, c), &chw_to_hwc(c, h, w, &input.data));
        let f = chain.network(gpu(), &x).unwrap();
        let got = hwc_to_chw(3, h, w, &pollster::block_on(gpu().read(&f)).unwrap());
        let err = max_abs_diff(&got, &case.npy("net").data);
        println!("{name}: max |ours − pytorch| {err:.2e}");
        assert!(err <= 1e-4, "{name}: {err}");
        // Denoising images with a conditional part is refused clearly.
        let e = chain
            .denoise(gpu(), &x, Noise::Blind)
            .unwrap_err()
            .to_string();
        assert!(e.contains("multi-scale"), "{e}");
    }
}
