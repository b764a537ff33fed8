//! Tiling: with the buffer limit lowered so that a 20-layer BF-CNN cannot
//! hold a 72×88 image's activations at once, the tiled result equals one
//! untiled pass (same inputs reach every output pixel, same arithmetic), and
//! an impossible limit gives a clear error.

use prior_gpu::{Gpu, GpuOptions};
use prior_models::tiling::{apply_image, plan, Apply, Planar};
use prior_testkit::{golden::max_abs_diff, paths};

fn image(h: usize, w: usize) -> Vec<f32> {
    (0..h * w)
        .map(|i| (i * 7919 % 1013) as f32 / 1013.0)
        .collect()
}

#[test]
fn tiled_equals_untiled() {
    let ckpt = paths::shared().join("checkpoints/universal_inverse_problem/BSD400_gray/model.pt");
    let full = pollster::block_on(Gpu::from_env()).unwrap();
    // 64 channels × 4 bytes per pixel: this allows 60×60-pixel tiles (core 20 + halo 2×20).
    let small = pollster::block_on(Gpu::new(GpuOptions {
        max_buffer_bytes: Some(60 * 60 * 64 * 4),
        ..GpuOptions::from_env()
    }))
    .unwrap();
    let (h, w) = (72, 88);
    let data = image(h, w);
    let img = Planar {
        c: 1,
        h,
        w,
        data: &data,
    };
    let m_full = prior_models::load_path(&full, &ckpt).unwrap();
    let m_small = prior_models::load_path(&small, &ckpt).unwrap();
    assert!(plan(&full, m_full.as_ref(), h, w).unwrap().is_none());
    let (core, halo) = plan(&small, m_small.as_ref(), h, w)
        .unwrap()
        .expect("tiling needed");
    assert!(halo >= m_small.receptive_radius());
    assert!(core < h, "core {core}");
    let a = pollster::block_on(apply_image(
        &full,
        m_full.as_ref(),
        img.clone(),
        Apply::Denoise,
        None,
    ))
    .unwrap();
    let b = pollster::block_on(apply_image(
        &small,
        m_small.as_ref(),
        img,
        Apply::Denoise,
        None,
    ))
    .unwrap();
    let err = max_abs_diff(&a, &b);
    assert!(err <= 1e-6, "tiled differs from untiled by {err}");

    // A limit below one tile with its halo is a clear error, not a panic.
    let tiny = pollster::block_on(Gpu::new(GpuOptions {
        max_buffer_bytes: Some(20 * 20 * 64 * 4),
        ..GpuOptions::from_env()
    }))
    .unwrap();
    let m_tiny = prior_models::load_path(&tiny, &ckpt).unwrap();
    let e = pollster::block_on(apply_image(
        &tiny,
        m_tiny.as_ref(),
        Planar {
            c: 1,
            h,
            w,
            data: &data,
        },
        Apply::Denoise,
        None,
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("allows at most"), "{e}");
}

/// The small UNet takes odd sizes (it pads) but has a stride-2 layer: tiles
/// must start on even pixels for the tiled result to equal one pass.
#[test]
fn tiled_equals_untiled_for_strided_unet_on_odd_size() {
    let ckpt = paths::shared().join("checkpoints/bias_free_denoising/unet/bias_free/0-100.pt");
    let full = pollster::block_on(Gpu::from_env()).unwrap();
    let m_full = prior_models::load_path(&full, &ckpt).unwrap();
    let vpp = m_full.values_per_pixel() as u64;
    let halo = m_full.receptive_radius().div_ceil(2) as u64 * 2;
    let side = 2 * halo + 12;
    let small = pollster::block_on(Gpu::new(GpuOptions {
        max_buffer_bytes: Some(side * side * vpp * 4),
        ..GpuOptions::from_env()
    }))
    .unwrap();
    let m_small = prior_models::load_path(&small, &ckpt).unwrap();
    let (h, w) = (77, 91);
    let data = image(h, w);
    let (core, halo) = plan(&small, m_small.as_ref(), h, w)
        .unwrap()
        .expect("tiling needed");
    assert!(core % 2 == 0 && halo % 2 == 0, "core {core} halo {halo}");
    let a = pollster::block_on(apply_image(
        &full,
        m_full.as_ref(),
        Planar {
            c: 1,
            h,
            w,
            data: &data,
        },
        Apply::Denoise,
        None,
    ))
    .unwrap();
    let b = pollster::block_on(apply_image(
        &small,
        m_small.as_ref(),
        Planar {
            c: 1,
            h,
            w,
            data: &data,
        },
        Apply::Denoise,
        None,
    ))
    .unwrap();
    let err = max_abs_diff(&a, &b);
    assert!(err <= 1e-6, "tiled differs from untiled by {err}");
}
