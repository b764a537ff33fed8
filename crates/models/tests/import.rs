//! Weight importer tests: every published checkpoint under `../shared/checkpoints`
//! imports with the right architecture, hyper-parameters, shapes and values;
//! blobs round-trip; malformed and malicious files fail with clear errors.
//!
//! `../shared` is found next to the workspace (override with `PRIOR_SHARED`).
//! Temporary files go under `std::env::temp_dir()`.

// Expected values are PyTorch's float32 values printed as doubles (exact).
#![allow(clippy::excessive_precision)]

use std::collections::BTreeMap;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use prior_models::blob::{keys, TensorF32, WeightBlob};
use prior_models::error::{ImportError, WeightError};
use prior_models::import::{
    default_blob_name, import_bytes, import_checkpoint, read_checkpoint, CheckpointFormat,
};
use serde_json::{json, Value as Json};

// ---------------------------------------------------------------- helpers

fn shared() -> PathBuf {
    match std::env::var_os("PRIOR_SHARED") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared")),
    }
}

fn ckpt(rel: &str) -> PathBuf {
    let p = shared().join("checkpoints").join(rel);
    assert!(
        p.is_file(),
        "checkpoint {} not found (set PRIOR_SHARED to the shared data folder)",
        p.display()
    );
    p
}

/// A fresh folder under the system temp dir.
fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("prior-import-test-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every key of `subset` is in `hp` with the same value.
fn assert_hparams(file: &str, hp: &prior_models::Hparams, subset: &Json) {
    let hp = hp.to_json();
    for (k, v) in subset.as_object().unwrap() {
        assert_eq!(hp.get(k), Some(v), "{file}: hparams.{k} (hparams = {hp})");
    }
}

fn value(blob: &WeightBlob, name: &str, index: &[usize]) -> f32 {
    blob.tensor(name)
        .unwrap()
        .get(index)
        .unwrap_or_else(|| panic!("{name}{index:?} out of range"))
}

// ---------------------------------------------------------------- expectations

struct Expect {
    rel: &'static str,
    arch: &'static str,
    variant: &'static str,
    tensors: usize,
    params: usize,
    noise_range: Option<&'static str>,
    has_args: bool,
    hparams: Json,
}

fn bfcnn_hp(
    cin: usize,
    cout: usize,
    kernels: &[usize],
    relu_first: bool,
    norm: &str,
    cond: bool,
) -> Json {
    json!({
        "in_channels": cin, "out_channels": cout, "width": 64, "layers": kernels.len(),
        "kernel_sizes": kernels, "relu_first": relu_first, "norm": norm, "bias": false,
        "output": "residual", "conditional_details": cond,
    })
}

const K20: [usize; 20] = [3; 20];
const K21: [usize; 21] = [3; 21];
const RF9: [usize; 21] = [
    3, 1, 1, 1, 1, 1, 1, 1, 3, 1, 1, 1, 1, 1, 1, 1, 3, 1, 1, 1, 3,
];
const RF13: [usize; 21] = [
    3, 1, 1, 1, 3, 1, 1, 1, 3, 1, 1, 1, 3, 1, 1, 1, 3, 1, 1, 1, 3,
];

fn expectations() -> Vec<Expect> {
    let dncnn = |bias: bool| {
        json!({
            "in_channels": 1, "out_channels": 1, "width": 64, "layers": 20, "kernel_sizes": K20,
            "relu_first": true, "norm": if bias { "bn" } else { "bf_var" }, "bias": bias,
            "output": "denoised", "conditional_details": false,
        })
    };
    let energy = json!({
        "in_channels": 1, "out_channels": 1, "base_width": 16, "widths": [16, 32, 64],
        "mid_width": 128, "num_scales": 3, "group_size": 1, "encoder_layers": [3, 3, 3],
        "mid_layers": 3, "decoder_layers": [3, 3, 3], "num_layers_encoder_block": 3,
        "embedding_dim": 256, "fourier_features": 64, "bias": false, "output": "residual",
        "model": "EnergyModel", "reparam_kwargs": {"conversion": "inner_product"},
    });
    vec![
        Expect {
            rel: "universal_inverse_problem/BSD400_gray/model.pt",
            arch: "bfcnn",
            variant: "universal",
            tensors: 56,
            params: 667_008,
            noise_range: None,
            has_args: false,
            hparams: bfcnn_hp(1, 1, &K20, true, "bf_sd", false),
        },
        Expect {
            rel: "universal_inverse_problem/BSD300_color/model.pt",
            arch: "bfcnn",
            variant: "universal",
            tensors: 56,
            params: 669_312,
            noise_range: None,
            has_args: false,
            hparams: bfcnn_hp(3, 3, &K20, true, "bf_sd", false),
        },
        Expect {
            rel: "universal_inverse_problem/mnist_gray/model.pt",
            arch: "bfcnn",
            variant: "universal",
            tensors: 56,
            params: 667_008,
            noise_range: None,
            has_args: false,
            hparams: bfcnn_hp(1, 1, &K20, true, "bf_sd", false),
        },
        Expect {
            rel: "optimal_measurement/conv3_ln.pt",
            arch: "bfcnn",
            variant: "conv3_ln",
            tensors: 22,
            params: 669_312,
            noise_range: None,
            has_args: false,
            hparams: bfcnn_hp(3, 3, &K20, true, "bf_sd_stacked", false),
        },
        Expect {
            rel: "bias_free_denoising/dncnn/bias/0-100.pt",
            arch: "dncnn",
            variant: "bias",
            tensors: 112,
            params: 670_529,
            noise_range: Some("0-100"),
            has_args: true,
            hparams: dncnn(true),
        },
        Expect {
            rel: "bias_free_denoising/dncnn/bias_free/0-100.pt",
            arch: "dncnn",
            variant: "bias_free",
            tensors: 92,
            params: 669_312,
            noise_range: Some("0-100"),
            has_args: true,
            hparams: dncnn(false),
        },
        Expect {
            rel: "bias_free_denoising/rcnn/bias/0-100.pt",
            arch: "rcnn",
            variant: "bias",
            tensors: 13,
            params: 186_432,
            noise_range: Some("0-100"),
            has_args: true,
            hparams: json!({"in_channels": 1, "out_channels": 1, "stages": 4, "width": 64, "depth": 5,
                "bias": true, "last_bias": false, "output": "denoised"}),
        },
        Expect {
            rel: "bias_free_denoising/rcnn/bias_free/0-100.pt",
            arch: "rcnn",
            variant: "bias_free",
            tensors: 7,
            params: 186_048,
            noise_range: Some("0-100"),
            has_args: true,
            hparams: json!({"in_channels": 1, "stages": 4, "width": 64, "depth": 5, "bias": false,
                "last_bias": false, "output": "denoised"}),
        },
        Expect {
            rel: "bias_free_denoising/unet/bias/0-100.pt",
            arch: "unet_small",
            variant: "bias",
            tensors: 17,
            params: 233_440,
            noise_range: Some("0-100"),
            has_args: true,
            hparams: json!({"in_channels": 1, "out_channels": 1, "widths": [32, 64], "bias": true,
                "output": "denoised", "residual_connection": false}),
        },
        Expect {
            rel: "bias_free_denoising/unet/bias_free/0-100.pt",
            arch: "unet_small",
            variant: "bias_free",
            tensors: 9,
            params: 233_024,
            noise_range: Some("0-100"),
            has_args: true,
            hparams: json!({"widths": [32, 64], "bias": false, "output": "denoised"}),
        },
        Expect {
            rel: "dual_score_matching/mnist32_gray_tiny/model.pth.tar",
            arch: "energy_unet",
            variant: "energy",
            tensors: 85,
            params: 797_536,
            noise_range: None,
            has_args: true,
            hparams: energy.clone(),
        },
        Expect {
            rel: "dual_score_matching/mnist32_gray_tiny/model_random.pth.tar",
            arch: "energy_unet",
            variant: "energy",
            tensors: 85,
            params: 797_536,
            noise_range: None,
            has_args: true,
            hparams: energy,
        },
        Expect {
            rel: "local_probability_models/flat_160/rf43.pt",
            arch: "bfcnn",
            variant: "rf_flat",
            tensors: 59,
            params: 704_000,
            noise_range: None,
            has_args: false,
            hparams: bfcnn_hp(1, 1, &K21, false, "bf_sd", false),
        },
        Expect {
            rel: "local_probability_models/flat_160/rf9.pt",
            arch: "bfcnn",
            variant: "rf_flat",
            tensors: 59,
            params: 146_944,
            noise_range: None,
            has_args: false,
            hparams: bfcnn_hp(1, 1, &RF9, false, "bf_sd", false),
        },
        Expect {
            rel: "local_probability_models/multi_scale_160_rf9/low_40x40.pt",
            arch: "bfcnn",
            variant: "low",
            tensors: 56,
            params: 667_008,
            noise_range: None,
            has_args: false,
            hparams: bfcnn_hp(1, 1, &K20, false, "bf_sd", false),
        },
        Expect {
            rel: "local_probability_models/multi_scale_160_rf9/rf9_scale_0.pt",
            arch: "bfcnn",
            variant: "rf_conditional",
            tensors: 59,
            params: 149_824,
            noise_range: None,
            has_args: false,
            hparams: bfcnn_hp(4, 3, &RF9, false, "bf_sd", true),
        },
        Expect {
            rel: "local_probability_models/multi_scale_160_rf9/rf9_scale_1.pt",
            arch: "bfcnn",
            variant: "rf_conditional",
            tensors: 59,
            params: 149_824,
            noise_range: None,
            has_args: false,
            hparams: bfcnn_hp(4, 3, &RF9, false, "bf_sd", true),
        },
        Expect {
            rel: "local_probability_models/multi_scale_320/low_40x40.pt",
            arch: "bfcnn",
            variant: "low",
            tensors: 56,
            params: 667_008,
            noise_range: None,
            has_args: false,
            hparams: bfcnn_hp(1, 1, &K20, false, "bf_sd", false),
        },
        Expect {
            rel: "local_probability_models/multi_scale_320/rf13_scale_0.pt",
            arch: "bfcnn",
            variant: "rf_conditional",
            tensors: 59,
            params: 215_360,
            noise_range: None,
            has_args: false,
            hparams: bfcnn_hp(4, 3, &RF13, false, "bf_sd", true),
        },
        Expect {
            rel: "local_probability_models/multi_scale_320/rf13_scale_1.pt",
            arch: "bfcnn",
            variant: "rf_conditional",
            tensors: 59,
            params: 215_360,
            noise_range: None,
            has_args: false,
            hparams: bfcnn_hp(4, 3, &RF13, false, "bf_sd", true),
        },
        Expect {
            rel: "local_probability_models/multi_scale_320/rf13_scale_2.pt",
            arch: "bfcnn",
            variant: "rf_conditional",
            tensors: 59,
            params: 215_360,
            noise_range: None,
            has_args: false,
            hparams: bfcnn_hp(4, 3, &RF13, false, "bf_sd", true),
        },
    ]
}

/// Checks the tensor shapes of a conv-chain blob against its hparams.
fn check_conv_chain_shapes(file: &str, blob: &WeightBlob, hp: &prior_models::Hparams) {
    let arch = blob.arch().unwrap();
    let hp = &hp.to_json();
    let ks: Vec<usize> = hp["kernel_sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_u64().unwrap() as usize)
        .collect();
    let layers = ks.len();
    let (cin, cout, w) = (
        hp["in_channels"].as_u64().unwrap() as usize,
        hp["out_channels"].as_u64().unwrap() as usize,
        hp["width"].as_u64().unwrap() as usize,
    );
    let conv_name = |l: usize| match arch {
        prior_models::Arch::Bfcnn => format!("conv_layers.{l}.weight"),
        _ if l == 0 => "first_layer.weight".to_string(),
        _ if l == layers - 1 => "last_layer.weight".to_string(),
        _ => format!("hidden_layer_list.{}.weight", l - 1),
    };
    for (l, &k) in ks.iter().enumerate() {
        let o = if l == layers - 1 { cout } else { w };
        let i = if l == 0 { cin } else { w };
        blob.tensor_shaped(&conv_name(l), &[o, i, k, k])
            .unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    let hidden = layers - 2;
    match hp["norm"].as_str().unwrap() {
        "bf_sd" => {
            for j in 0..hidden {
                let (sd, g) = if blob.has("running_sd.0") {
                    (format!("running_sd.{j}"), format!("gammas.{j}"))
                } else {
                    (
                        format!("BN_layers.{j}.running_sd"),
                        format!("BN_layers.{j}.gammas"),
                    )
                };
                blob.tensor_shaped(&sd, &[1, w, 1, 1]).unwrap();
                blob.tensor_shaped(&g, &[1, w, 1, 1]).unwrap();
            }
        }
        "bf_sd_stacked" => {
            blob.tensor_shaped("gammas", &[hidden, 1, w, 1, 1]).unwrap();
            blob.tensor_shaped("running_sd", &[hidden, 1, w, 1, 1])
                .unwrap();
        }
        "bn" | "bf_var" => {
            for j in 0..hidden {
                for p in ["weight", "bias", "running_mean", "running_var"] {
                    blob.tensor_shaped(&format!("bn_layer_list.{j}.{p}"), &[w])
                        .unwrap();
                }
            }
        }
        other => panic!("{file}: unexpected norm {other}"),
    }
}

// ---------------------------------------------------------------- real checkpoints

#[test]
fn every_shared_checkpoint_imports_with_the_right_metadata() {
    let exp = expectations();
    // Every checkpoint file in the folder is covered by the table.
    let root = shared().join("checkpoints");
    let mut found = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in
            std::fs::read_dir(&d).unwrap_or_else(|e| panic!("cannot list {}: {e}", d.display()))
        {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if [".pt", ".pth", ".tar"]
                .iter()
                .any(|x| p.to_string_lossy().ends_with(x))
            {
                found.push(
                    p.strip_prefix(&root)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/"),
                );
            }
        }
    }
    found.sort();
    let mut listed: Vec<String> = exp.iter().map(|e| e.rel.to_string()).collect();
    listed.sort();
    assert_eq!(
        found, listed,
        "checkpoints on disk vs. the expectation table"
    );

    for e in &exp {
        let path = ckpt(e.rel);
        let blob = import_checkpoint(&path).unwrap_or_else(|err| panic!("{}: {err}", e.rel));
        assert_eq!(blob.arch().unwrap(), e.arch, "{}", e.rel);
        assert_eq!(blob.variant(), Some(e.variant), "{}", e.rel);
        assert_eq!(blob.tensors.len(), e.tensors, "{}: tensor count", e.rel);
        assert_eq!(blob.param_count(), e.params, "{}: parameter count", e.rel);
        assert_eq!(blob.meta(keys::FORMAT), Some("1"));
        assert_eq!(blob.meta(keys::NOISE_RANGE), e.noise_range, "{}", e.rel);
        assert_eq!(
            blob.meta(keys::SOURCE),
            Some(path.file_name().unwrap().to_str().unwrap()),
            "{}",
            e.rel
        );
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            blob.meta(keys::SOURCE_SHA256),
            Some(sha256_hex(&bytes).as_str())
        );
        assert_eq!(
            blob.args().unwrap().is_some(),
            e.has_args,
            "{}: prior.args",
            e.rel
        );
        let hp = blob.hparams().unwrap();
        assert_hparams(e.rel, &hp, &e.hparams);
        // Names never keep DataParallel's prefix; only float32 entries remain.
        assert!(
            blob.tensors.keys().all(|k| !k.starts_with("module.")),
            "{}",
            e.rel
        );
        assert!(!blob
            .tensors
            .keys()
            .any(|k| k.ends_with("num_batches_tracked")));
        for (name, t) in &blob.tensors {
            assert_eq!(
                t.shape.iter().product::<usize>(),
                t.data.len(),
                "{}: {name}",
                e.rel
            );
            assert!(
                t.data.iter().all(|v| v.is_finite()),
                "{}: {name} has non-finite values",
                e.rel
            );
        }
        if matches!(e.arch, "bfcnn" | "dncnn") {
            check_conv_chain_shapes(e.rel, &blob, &hp);
        }
    }
}

#[test]
fn known_file_hashes() {
    // From `sha256sum` on the shared files.
    let blob = import_checkpoint(&ckpt("universal_inverse_problem/BSD400_gray/model.pt")).unwrap();
    assert_eq!(
        blob.meta(keys::SOURCE_SHA256),
        Some("cb99c1acae801b4ecc361e113b510e11000fcb7e365e19be993c3ec3986e7bcf")
    );
}

#[test]
fn formats_and_args() {
    let p = ckpt("bias_free_denoising/dncnn/bias_free/0-100.pt");
    let c = read_checkpoint(&std::fs::read(&p).unwrap(), &p).unwrap();
    assert_eq!(c.format, CheckpointFormat::Legacy);
    // 18 BatchNorm num_batches_tracked (int64) entries are dropped.
    assert_eq!(c.dropped.len(), 18);
    assert!(c.dropped.iter().all(|d| d.ends_with("num_batches_tracked")));
    assert_eq!(
        c.order.first().map(String::as_str),
        Some("first_layer.weight")
    );
    let args = c.args.unwrap();
    // The DnCNN files store the range swapped; prior.noise_range is 0-100 anyway.
    assert_eq!(args["min_noise"], 100);
    assert_eq!(args["max_noise"], 0);
    assert_eq!(args["bias"], false);

    let p = ckpt("local_probability_models/multi_scale_160_rf9/rf9_scale_0.pt");
    let c = read_checkpoint(&std::fs::read(&p).unwrap(), &p).unwrap();
    assert_eq!(
        c.format,
        CheckpointFormat::Zip {
            prefix: "model_scale0/".into()
        }
    );
    assert!(c.args.is_none());

    // The energy fixture: args kept as JSON, statistics objects skipped.
    let blob =
        import_checkpoint(&ckpt("dual_score_matching/mnist32_gray_tiny/model.pth.tar")).unwrap();
    let args = blob.args().unwrap().unwrap();
    assert_eq!(args["name"], "mnist32_gray_tiny");
    assert_eq!(args["min_noise_level"], json!({"x": 60.0, "unit": "psnr"}));
    assert!(args["network_kwargs"]
        .as_str()
        .unwrap()
        .contains("'base_width':16"));
    assert_eq!(blob.noise_range().unwrap(), None);

    let blob = import_checkpoint(&ckpt("bias_free_denoising/rcnn/bias/0-100.pt")).unwrap();
    assert_eq!(blob.noise_range().unwrap(), Some((0.0, 100.0)));
}

#[test]
fn values_match_pytorch() {
    // Each value printed by PyTorch 2.15 (`torch.load(...)[key][index].item()`,
    // `module.` stripped, legacy files via their `model[0]`); f32 exact.
    type Checks = &'static [(&'static str, &'static [usize], f32)];
    let cases: &[(&str, Checks)] = &[
        (
            "universal_inverse_problem/BSD400_gray/model.pt",
            &[
                ("conv_layers.0.weight", &[5, 0, 1, 2], -0.21316684782505035),
                ("running_sd.17", &[0, 63, 0, 0], 5.065797805786133),
                ("gammas.3", &[0, 10, 0, 0], -0.5884976387023926),
            ],
        ),
        (
            "optimal_measurement/conv3_ln.pt",
            &[
                ("gammas", &[17, 0, 63, 0, 0], -0.08111430704593658),
                ("running_sd", &[0, 0, 0, 0, 0], 1.5284435749053955),
                ("conv_layers.0.weight", &[63, 2, 2, 1], 0.021533986553549767),
            ],
        ),
        (
            "bias_free_denoising/dncnn/bias/0-100.pt",
            &[
                ("bn_layer_list.3.running_var", &[7], 0.7108545303344727),
                ("first_layer.bias", &[0], 0.489728182554245),
                ("last_layer.weight", &[0, 63, 2, 2], 0.13687054812908173),
            ],
        ),
        (
            "bias_free_denoising/dncnn/bias_free/0-100.pt",
            &[
                ("bn_layer_list.17.running_var", &[63], 51.591941833496094),
                (
                    "hidden_layer_list.9.weight",
                    &[10, 20, 1, 1],
                    0.1448279470205307,
                ),
            ],
        ),
        (
            "bias_free_denoising/rcnn/bias/0-100.pt",
            &[
                (
                    "cnn.first_layer.weight",
                    &[63, 1, 2, 0],
                    -0.05887411907315254,
                ),
                ("cnn.hidden_layer_list.4.bias", &[17], 0.07803396880626678),
            ],
        ),
        (
            "bias_free_denoising/unet/bias_free/0-100.pt",
            &[
                ("conv7.weight", &[1, 2, 3, 0], -0.017203746363520622),
                ("conv9.weight", &[0, 31, 4, 4], -0.00970561895519495),
            ],
        ),
        (
            "dual_score_matching/mnist32_gray_tiny/model.pth.tar",
            &[
                (
                    "network.middle_block.6.weight",
                    &[127, 63, 1, 1],
                    0.01122622936964035,
                ),
                (
                    "network.noise_var_embedding.time_embed.0.weight",
                    &[255, 63],
                    0.05278730392456055,
                ),
            ],
        ),
        (
            "dual_score_matching/mnist32_gray_tiny/model_random.pth.tar",
            &[(
                "network.encoder.0.0.weight",
                &[0, 0, 0, 0],
                0.20243000984191895,
            )],
        ),
        (
            "local_probability_models/multi_scale_320/rf13_scale_1.pt",
            &[
                ("conv_layers.0.weight", &[63, 3, 2, 2], 0.027131352573633194),
                ("conv_layers.20.weight", &[2, 63, 0, 1], 0.08362873643636703),
            ],
        ),
        (
            "local_probability_models/flat_160/rf9.pt",
            &[("conv_layers.1.weight", &[0, 0, 0, 0], 0.4940035939216614)],
        ),
        (
            "local_probability_models/multi_scale_160_rf9/low_40x40.pt",
            &[("BN_layers.17.gammas", &[0, 5, 0, 0], -0.07904648035764694)],
        ),
    ];
    for (rel, checks) in cases {
        let blob = import_checkpoint(&ckpt(rel)).unwrap();
        for (name, index, expected) in *checks {
            assert_eq!(
                value(&blob, name, index),
                *expected,
                "{rel}: {name}{index:?}"
            );
        }
    }
}

// ---------------------------------------------------------------- blobs

#[test]
fn blob_round_trip_preserves_tensors_and_metadata() {
    let dir = temp_dir("roundtrip");
    for rel in [
        "bias_free_denoising/dncnn/bias/0-100.pt",
        "optimal_measurement/conv3_ln.pt",
        "dual_score_matching/mnist32_gray_tiny/model.pth.tar",
        "local_probability_models/multi_scale_320/rf13_scale_0.pt",
    ] {
        let path = ckpt(rel);
        let blob = import_checkpoint(&path).unwrap();
        // In memory.
        let back = WeightBlob::from_bytes(&blob.to_bytes().unwrap()).unwrap();
        assert_eq!(back.tensors, blob.tensors, "{rel}");
        assert_eq!(back.meta, blob.meta, "{rel}");
        // On disk, atomically, then through load().
        let out = dir.join(format!("{}.safetensors", default_blob_name(&path)));
        blob.save_atomic(&out).unwrap();
        let loaded = WeightBlob::load(&out).unwrap();
        assert_eq!(loaded.tensors, blob.tensors, "{rel}");
        assert_eq!(loaded.meta, blob.meta, "{rel}");
        assert_eq!(loaded.origin, out);
        // load() also accepts the checkpoint itself.
        let direct = WeightBlob::load(&path).unwrap();
        assert_eq!(direct.tensors, blob.tensors);
        assert_eq!(direct.meta, blob.meta);
    }
    // No temporary files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn blob_accessors_report_missing_keys_with_the_file() {
    let path = ckpt("universal_inverse_problem/mnist_gray/model.pt");
    let blob = WeightBlob::load(&path).unwrap();
    let err = blob.tensor("conv_layers.99.weight").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, WeightError::MissingTensor { .. }));
    assert!(
        msg.contains("conv_layers.99.weight") && msg.contains(&path.display().to_string()),
        "{msg}"
    );
    let err = blob
        .tensor_shaped("conv_layers.0.weight", &[64, 3, 3, 3])
        .unwrap_err();
    assert!(err.to_string().contains("[64, 1, 3, 3]"), "{err}");

    let bare = WeightBlob {
        origin: PathBuf::from("somewhere.safetensors"),
        ..Default::default()
    };
    let err = bare.arch().unwrap_err().to_string();
    assert!(
        err.contains("prior.arch") && err.contains("somewhere.safetensors"),
        "{err}"
    );

    // A blob built in code.
    let hp = prior_models::hparams::RcnnHparams {
        in_channels: 1,
        out_channels: 1,
        stages: 2,
        width: 4,
        depth: 1,
        kernel_sizes: vec![3, 3, 3],
        bias: false,
        last_bias: false,
        output: prior_models::hparams::Output::Denoised,
    };
    let mut b = WeightBlob::new("test", &prior_models::Hparams::Rcnn(hp.clone()));
    b.tensors.insert(
        "w".into(),
        TensorF32::new(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]),
    );
    let back = WeightBlob::from_bytes(&b.to_bytes().unwrap()).unwrap();
    assert_eq!(back.arch().unwrap(), prior_models::Arch::Rcnn);
    assert_eq!(back.hparams().unwrap(), prior_models::Hparams::Rcnn(hp));
    assert_eq!(back.tensor("w").unwrap().get(&[1, 0]), Some(3.0));
    // Not a safetensors file.
    let err = WeightBlob::from_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00hello").unwrap_err();
    assert!(matches!(err, WeightError::Safetensors { .. }), "{err}");
}

#[test]
fn golden_bf_unet_safetensors_gets_its_architecture_detected() {
    // Written by tests/golden/make_golden.py with the authors' key names and no
    // prior.* metadata; skip quietly if that folder is not present.
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/golden/bf_unet_random/weights.safetensors"
    ));
    if !p.is_file() {
        eprintln!("skipping: {} not present", p.display());
        return;
    }
    let blob = WeightBlob::load(&p).unwrap();
    assert_eq!(blob.arch().unwrap(), "bf_unet");
    let hp = blob.hparams().unwrap();
    assert_hparams(
        "golden bf_unet",
        &hp,
        &json!({"base_width": 8, "scales": 3, "widths": [8, 16, 32],
        "mid_width": 64, "in_channels": 1, "out_channels": 1, "output": "residual"}),
    );
}

#[test]
fn default_names() {
    let n = |p: &str| default_blob_name(Path::new(p));
    assert_eq!(
        n("../shared/checkpoints/bias_free_denoising/dncnn/bias_free/0-100.pt"),
        "bias_free_denoising-dncnn-bias_free-0-100"
    );
    assert_eq!(
        n("/x/shared/checkpoints/universal_inverse_problem/BSD400_gray/model.pt"),
        "universal_inverse_problem-BSD400_gray"
    );
    assert_eq!(
        n("checkpoints/dual_score_matching/mnist32_gray_tiny/model_random.pth.tar"),
        "dual_score_matching-mnist32_gray_tiny-model_random"
    );
    assert_eq!(n("/tmp/somewhere/my model.pt"), "somewhere-my_model");
}

// ---------------------------------------------------------------- synthetic checkpoints

/// A tiny pickle writer (protocol 2) for hand-made checkpoints.
struct Pickle(Vec<u8>);

impl Pickle {
    fn new() -> Self {
        Pickle(vec![0x80, 2])
    }
    fn op(&mut self, b: u8) -> &mut Self {
        self.0.push(b);
        self
    }
    fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.op(b'c')
            .raw(module.as_bytes())
            .op(b'\n')
            .raw(name.as_bytes())
            .op(b'\n')
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.op(b'X')
            .raw(&(s.len() as u32).to_le_bytes())
            .raw(s.as_bytes())
    }
    fn int(&mut self, i: i32) -> &mut Self {
        self.op(b'J').raw(&i.to_le_bytes())
    }
    fn ints(&mut self, v: &[usize]) -> &mut Self {
        self.op(b'(');
        for &x in v {
            self.int(x as i32);
        }
        self.op(b't')
    }
    fn ordered_dict(&mut self) -> &mut Self {
        self.global("collections", "OrderedDict").op(b')').op(b'R')
    }
    /// `_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`
    /// with the persistent id of `storage`.
    fn tensor(
        &mut self,
        storage: Storage,
        offset: usize,
        shape: &[usize],
        stride: &[usize],
    ) -> &mut Self {
        let Storage {
            class,
            key,
            numel,
            view,
            legacy,
        } = storage;
        self.global("torch._utils", "_rebuild_tensor_v2").op(b'(');
        self.op(b'(')
            .str("storage")
            .global("torch", class)
            .str(key)
            .str("cpu")
            .int(numel as i32);
        if legacy {
            match view {
                None => {
                    self.op(b'N');
                }
                Some((k, o, n)) => {
                    self.str(k).int(o as i32).int(n as i32).op(0x87);
                }
            }
        }
        self.op(b't').op(b'Q');
        self.int(offset as i32)
            .ints(shape)
            .ints(stride)
            .op(0x89)
            .ordered_dict();
        self.op(b't').op(b'R')
    }
    fn stop(&mut self) -> Vec<u8> {
        self.op(b'.');
        std::mem::take(&mut self.0)
    }
}

/// The persistent id of a tensor's storage,
/// `('storage', torch.<class>, key, 'cpu', numel[, view])`: `view` (key,
/// offset, size) is written only in the `legacy` format.
struct Storage<'a> {
    class: &'a str,
    key: &'a str,
    numel: usize,
    view: Option<(&'a str, usize, usize)>,
    legacy: bool,
}

fn contiguous_stride(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A zip `torch.save` archive with `prefix/data.pkl` and the given storages.
fn torch_zip(prefix: &str, pkl: &[u8], storages: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opt =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    w.start_file(format!("{prefix}/data.pkl"), opt).unwrap();
    w.write_all(pkl).unwrap();
    w.start_file(format!("{prefix}/byteorder"), opt).unwrap();
    w.write_all(b"little").unwrap();
    for (key, bytes) in storages {
        w.start_file(format!("{prefix}/data/{key}"), opt).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.start_file(format!("{prefix}/version"), opt).unwrap();
    w.write_all(b"3\n").unwrap();
    w.finish().unwrap().into_inner()
}

/// A legacy `torch.save` stream: magic, protocol, sys-info, `main`, keys, data.
/// `storages` = (key, element count written in the header, raw bytes).
fn torch_legacy(main: &[u8], storages: &[(&str, u64, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    // Magic number 0x1950a86a20f9469cfc6c as LONG1.
    out.extend_from_slice(&[0x80, 2, 0x8a, 10]);
    out.extend_from_slice(&0x1950a86a20f9469cfc6c_u128.to_le_bytes()[..10]);
    out.push(b'.');
    out.extend_from_slice(&[0x80, 2, b'M', 0xe9, 0x03, b'.']); // 1001
    let mut sys = Pickle::new();
    sys.op(b'}')
        .op(b'(')
        .str("protocol_version")
        .int(1001)
        .str("little_endian")
        .op(0x88);
    sys.str("type_sizes")
        .op(b'}')
        .op(b'(')
        .str("short")
        .int(2)
        .str("int")
        .int(4)
        .str("long")
        .int(4);
    sys.op(b'u').op(b'u');
    out.extend_from_slice(&sys.stop());
    out.extend_from_slice(main);
    let mut keys = Pickle::new();
    keys.op(b']').op(b'(');
    for (k, _, _) in storages {
        keys.str(k);
    }
    keys.op(b'e');
    out.extend_from_slice(&keys.stop());
    for (_, count, bytes) in storages {
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

#[test]
fn zip_views_with_offsets_and_strides_are_materialised_row_major() {
    let storage: Vec<f32> = (0..10).map(|i| i as f32).collect();
    let mut p = Pickle::new();
    p.ordered_dict().op(b'(');
    // A transposed view starting at element 2: a[i][j] = s[2 + i + 2j].
    p.str("module.a").tensor(
        Storage {
            class: "FloatStorage",
            key: "140234",
            numel: 10,
            view: None,
            legacy: false,
        },
        2,
        &[2, 3],
        &[1, 2],
    );
    // A contiguous slice with an offset.
    p.str("module.b").tensor(
        Storage {
            class: "FloatStorage",
            key: "140234",
            numel: 10,
            view: None,
            legacy: false,
        },
        7,
        &[3],
        &[1],
    );
    // A broadcast (stride 0) dimension.
    p.str("module.c").tensor(
        Storage {
            class: "FloatStorage",
            key: "140234",
            numel: 10,
            view: None,
            legacy: false,
        },
        1,
        &[2, 2],
        &[0, 1],
    );
    // An int64 buffer: dropped.
    p.str("module.n.num_batches_tracked").tensor(
        Storage {
            class: "LongStorage",
            key: "9",
            numel: 1,
            view: None,
            legacy: false,
        },
        0,
        &[],
        &[],
    );
    p.op(b'u');
    let pkl = p.stop();
    let bytes = torch_zip(
        "weird_prefix",
        &pkl,
        &[
            ("140234", f32_bytes(&storage)),
            ("9", 7i64.to_le_bytes().to_vec()),
        ],
    );
    let path = Path::new("synthetic_views.pt");
    let c = read_checkpoint(&bytes, path).unwrap();
    assert_eq!(
        c.format,
        CheckpointFormat::Zip {
            prefix: "weird_prefix/".into()
        }
    );
    assert_eq!(
        c.tensors["a"],
        TensorF32::new(vec![2, 3], vec![2.0, 4.0, 6.0, 3.0, 5.0, 7.0])
    );
    assert_eq!(c.tensors["b"].data, vec![7.0, 8.0, 9.0]);
    assert_eq!(c.tensors["c"].data, vec![1.0, 2.0, 1.0, 2.0]);
    assert_eq!(c.dropped, vec!["n.num_batches_tracked".to_string()]);
    assert_eq!(c.order, vec!["a", "b", "c"]);
}

/// A 3-layer BF-CNN (universal layout, width 8) as a legacy training dict
/// `{'model': [state_dict], 'args': Namespace(min_noise=0, max_noise=55, ...)}`.
fn tiny_legacy_bfcnn(view: bool) -> Vec<u8> {
    let shapes: [(&str, Vec<usize>); 5] = [
        ("conv_layers.0.weight", vec![8, 1, 3, 3]),
        ("conv_layers.1.weight", vec![8, 8, 1, 1]),
        ("conv_layers.2.weight", vec![1, 8, 3, 3]),
        ("running_sd.0", vec![1, 8, 1, 1]),
        ("gammas.0", vec![1, 8, 1, 1]),
    ];
    let mut main = Pickle::new();
    main.op(b'}').op(b'(');
    main.str("step").int(12);
    main.str("model").op(b']').ordered_dict().op(b'(');
    let mut storages = Vec::new();
    for (i, (name, shape)) in shapes.iter().enumerate() {
        let n: usize = shape.iter().product();
        let key = format!("9400{i}");
        let data: Vec<f32> = (0..n).map(|j| (i * 1000 + j) as f32).collect();
        if view && i == 3 {
            // running_sd.0 lives in a storage view at element 4 of a bigger root.
            let mut root = vec![-1.0f32; 4];
            root.extend(&data);
            root.extend([-2.0f32; 3]);
            main.str(name).tensor(
                Storage {
                    class: "FloatStorage",
                    key: &key,
                    numel: root.len(),
                    view: Some(("view0", 4, n)),
                    legacy: true,
                },
                0,
                shape,
                &contiguous_stride(shape),
            );
            storages.push((key, root.len() as u64, f32_bytes(&root)));
        } else {
            main.str(name).tensor(
                Storage {
                    class: "FloatStorage",
                    key: &key,
                    numel: n,
                    view: None,
                    legacy: true,
                },
                0,
                shape,
                &contiguous_stride(shape),
            );
            storages.push((key, n as u64, f32_bytes(&data)));
        }
    }
    main.op(b'u').op(b'a'); // fill the OrderedDict, append it to the list
    main.str("args")
        .global("argparse", "Namespace")
        .op(b')')
        .op(0x81);
    main.op(b'}')
        .op(b'(')
        .str("min_noise")
        .int(0)
        .str("max_noise")
        .int(55)
        .str("model")
        .str("bf_cnn");
    main.op(b'u').op(b'b');
    main.str("optimizer").op(b'N');
    main.op(b'u');
    let main = main.stop();
    let refs: Vec<(&str, u64, Vec<u8>)> = storages
        .iter()
        .map(|(k, n, b)| (k.as_str(), *n, b.clone()))
        .collect();
    torch_legacy(&main, &refs)
}

#[test]
fn legacy_training_dict_end_to_end() {
    let bytes = tiny_legacy_bfcnn(false);
    let blob = import_bytes(&bytes, Path::new("/data/tiny.pt")).unwrap();
    assert_eq!(blob.arch().unwrap(), "bfcnn");
    assert_eq!(blob.variant(), Some("universal"));
    assert_hparams(
        "tiny",
        &blob.hparams().unwrap(),
        &json!({
        "in_channels": 1, "out_channels": 1, "width": 8, "layers": 3, "kernel_sizes": [3, 1, 3],
        "relu_first": true, "norm": "bf_sd", "bias": false}),
    );
    assert_eq!(blob.meta(keys::NOISE_RANGE), Some("0-55"));
    assert_eq!(blob.meta(keys::SOURCE), Some("tiny.pt"));
    assert_eq!(
        blob.args().unwrap().unwrap(),
        json!({"min_noise": 0, "max_noise": 55, "model": "bf_cnn"})
    );
    assert_eq!(value(&blob, "conv_layers.1.weight", &[7, 7, 0, 0]), 1063.0);
    assert_eq!(value(&blob, "gammas.0", &[0, 7, 0, 0]), 4007.0);

    // Legacy storage views.
    let blob = import_bytes(&tiny_legacy_bfcnn(true), Path::new("tiny_view.pt")).unwrap();
    assert_eq!(
        blob.tensor("running_sd.0").unwrap().data,
        (3000..3008).map(|v| v as f32).collect::<Vec<_>>()
    );
}

/// The bias-free UNet layout of shared/README.md (base width `b`), with a
/// `module.` prefix, as a plain zip state_dict.
fn bf_unet_zip(b: usize) -> Vec<u8> {
    let mut shapes: Vec<(String, Vec<usize>)> = Vec::new();
    let mut conv = |n: &str, o: usize, i: usize, k: usize| {
        shapes.push((format!("{n}.weight"), vec![o, i, k, k]))
    };
    conv("encoder.0.0", b, 1, 3);
    conv("encoder.0.2", b, b, 3);
    for s in 1..3 {
        let w = b << s;
        conv(&format!("encoder.{s}.0"), w, w / 2, 3);
        conv(&format!("encoder.{s}.3"), w, w, 3);
    }
    conv("mid_block.0", 8 * b, 4 * b, 3);
    conv("mid_block.3", 8 * b, 8 * b, 3);
    for s in [2usize, 1] {
        let w = b << s;
        conv(&format!("decoder.{s}.0"), w, 2 * w, 3);
        conv(&format!("decoder.{s}.3"), w, w, 3);
    }
    conv("decoder.0.0", b, 2 * b, 3);
    conv("decoder.0.3", 1, b, 3);
    for s in 0..3 {
        let w = b << s;
        shapes.push((format!("upsample.{s}.weight"), vec![2 * w, w, 2, 2]));
    }
    let mut bn = |n: &str, c: usize| {
        shapes.push((format!("{n}.gammas"), vec![1, c, 1, 1]));
        shapes.push((format!("{n}.running_sd"), vec![1, c, 1, 1]));
    };
    bn("encoder.0.3", b);
    for s in 1..3 {
        bn(&format!("encoder.{s}.1"), b << s);
        bn(&format!("encoder.{s}.4"), b << s);
        bn(&format!("decoder.{s}.1"), b << s);
        bn(&format!("decoder.{s}.4"), b << s);
    }
    bn("mid_block.1", 8 * b);
    bn("mid_block.4", 8 * b);
    bn("decoder.0.1", b);

    let mut p = Pickle::new();
    p.ordered_dict().op(b'(');
    let mut storages = Vec::new();
    for (i, (name, shape)) in shapes.iter().enumerate() {
        let n: usize = shape.iter().product();
        let key = i.to_string();
        p.str(&format!("module.{name}")).tensor(
            Storage {
                class: "FloatStorage",
                key: &key,
                numel: n,
                view: None,
                legacy: false,
            },
            0,
            shape,
            &contiguous_stride(shape),
        );
        storages.push((key, f32_bytes(&vec![0.5; n])));
    }
    p.op(b'u');
    let pkl = p.stop();
    let refs: Vec<(&str, Vec<u8>)> = storages
        .iter()
        .map(|(k, b)| (k.as_str(), b.clone()))
        .collect();
    torch_zip("archive", &pkl, &refs)
}

#[test]
fn bf_unet_layout_is_detected() {
    let blob = import_bytes(&bf_unet_zip(4), Path::new("mem_unet.pt")).unwrap();
    assert_eq!(blob.arch().unwrap(), "bf_unet");
    assert_eq!(blob.tensors.len(), 41);
    assert!(blob.has("encoder.0.3.gammas") && blob.has("upsample.2.weight"));
    assert_hparams(
        "bf_unet",
        &blob.hparams().unwrap(),
        &json!({
        "in_channels": 1, "out_channels": 1, "base_width": 4, "scales": 3, "widths": [4, 8, 16],
        "mid_width": 32, "norm": "bf_sd", "bias": false, "output": "residual"}),
    );
}

// ---------------------------------------------------------------- failures

fn assert_names_file(err: &ImportError, path: &Path) {
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "error does not name {}: {msg}",
        path.display()
    );
}

#[test]
fn malicious_pickles_are_refused_without_running_anything() {
    let dir = temp_dir("malicious");
    let marker = dir.join("pwned");
    let cmd = format!("touch {}", marker.display());

    // Protocol 0 `os.system(cmd)` as a zip checkpoint's data.pkl.
    let pkl = format!("cos\nsystem\n(S'{cmd}'\ntR.");
    let path = dir.join("evil.pt");
    std::fs::write(&path, torch_zip("archive", pkl.as_bytes(), &[])).unwrap();
    let err = import_checkpoint(&path).unwrap_err();
    assert!(
        matches!(&err, ImportError::UnsupportedGlobal { name, .. } if name == "os.system"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "unsupported pickle global os.system in {} (zip entry archive/data.pkl imports it; \
             a weights-only reader refuses the file without running anything)",
            path.display()
        )
    );

    // `builtins.eval` as the main object of a legacy file.
    let mut main = Pickle::new();
    main.global("builtins", "eval")
        .str("__import__('os').system('true')")
        .op(0x85)
        .op(b'R');
    let path = dir.join("evil_legacy.pt");
    std::fs::write(&path, torch_legacy(&main.stop(), &[])).unwrap();
    let err = import_checkpoint(&path).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("unsupported pickle global builtins.eval in"),
        "{err}"
    );
    assert_names_file(&err, &path);

    // Protocol 4 STACK_GLOBAL, nested inside an otherwise valid state_dict.
    let mut p = Pickle(vec![0x80, 4]);
    p.ordered_dict().op(b'(').str("w");
    p.op(0x8c)
        .op(10)
        .raw(b"subprocess")
        .op(0x8c)
        .op(5)
        .raw(b"Popen");
    p.op(0x93).op(b')').op(b'R').op(b'u');
    let path = dir.join("evil_stack_global.pt");
    std::fs::write(&path, torch_zip("archive", &p.stop(), &[])).unwrap();
    let err = import_checkpoint(&path).unwrap_err();
    assert!(
        matches!(&err, ImportError::UnsupportedGlobal { name, .. } if name == "subprocess.Popen"),
        "{err}"
    );

    // WeightBlob::load gives the same refusal.
    let err = WeightBlob::load(dir.join("evil.pt")).unwrap_err();
    assert!(
        err.to_string()
            .contains("unsupported pickle global os.system"),
        "{err}"
    );

    assert!(!marker.exists(), "something was executed");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn opaque_objects_are_refused_inside_the_state_dict() {
    let mut p = Pickle::new();
    p.ordered_dict().op(b'(');
    p.str("conv_layers.0.weight").tensor(
        Storage {
            class: "FloatStorage",
            key: "0",
            numel: 4,
            view: None,
            legacy: false,
        },
        0,
        &[1, 1, 2, 2],
        &[4, 4, 2, 1],
    );
    p.str("stats")
        .global("noise", "NoiseLevel")
        .op(b')')
        .op(0x81)
        .op(b'}')
        .op(b'b');
    p.op(b'u');
    let bytes = torch_zip("archive", &p.stop(), &[("0", f32_bytes(&[1.0; 4]))]);
    let path = Path::new("opaque_inside.pt");
    let err = import_bytes(&bytes, path).unwrap_err();
    assert!(matches!(err, ImportError::NoStateDict { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("stats") && msg.contains("noise.NoiseLevel") && msg.contains("opaque"),
        "{msg}"
    );
    assert_names_file(&err, path);
}

#[test]
fn wrong_storage_sizes_are_reported() {
    // Zip: the pickle says 4 floats, the entry holds 3.
    let mut p = Pickle::new();
    p.ordered_dict().op(b'(');
    p.str("w").tensor(
        Storage {
            class: "FloatStorage",
            key: "0",
            numel: 4,
            view: None,
            legacy: false,
        },
        0,
        &[4],
        &[1],
    );
    p.op(b'u');
    let bytes = torch_zip("archive", &p.stop(), &[("0", f32_bytes(&[1.0; 3]))]);
    let path = Path::new("short_storage.pt");
    let err = read_checkpoint(&bytes, path).unwrap_err();
    assert!(matches!(err, ImportError::Storage { .. }), "{err}");
    assert!(err.to_string().contains("wrong size"), "{err}");
    assert_names_file(&err, path);

    // Zip: a view reaching past the end of its storage.
    let mut p = Pickle::new();
    p.ordered_dict().op(b'(');
    p.str("w").tensor(
        Storage {
            class: "FloatStorage",
            key: "0",
            numel: 4,
            view: None,
            legacy: false,
        },
        2,
        &[3],
        &[1],
    );
    p.op(b'u');
    let bytes = torch_zip("archive", &p.stop(), &[("0", f32_bytes(&[1.0; 4]))]);
    let err = read_checkpoint(&bytes, path).unwrap_err();
    assert!(matches!(err, ImportError::Tensor { .. }), "{err}");
    assert!(err.to_string().contains("reaches element 4"), "{err}");

    // Legacy: the element count in the file disagrees with the pickle.
    let mut bytes = tiny_legacy_bfcnn(false);
    let len = bytes.len();
    // The last storage is gammas.0 (8 floats): patch its u64 count.
    bytes[len - 32 - 8..len - 32].copy_from_slice(&9u64.to_le_bytes());
    let err = read_checkpoint(&bytes, path).unwrap_err();
    assert!(matches!(err, ImportError::Storage { .. }), "{err}");
    assert!(err.to_string().contains("wrong size"), "{err}");

    // A float64 tensor in the state_dict.
    let mut p = Pickle::new();
    p.ordered_dict().op(b'(');
    p.str("w").tensor(
        Storage {
            class: "DoubleStorage",
            key: "0",
            numel: 2,
            view: None,
            legacy: false,
        },
        0,
        &[2],
        &[1],
    );
    p.op(b'u');
    let bytes = torch_zip("archive", &p.stop(), &[("0", vec![0u8; 16])]);
    let err = read_checkpoint(&bytes, path).unwrap_err();
    assert!(
        err.to_string().contains("float64") && err.to_string().contains("tensor w"),
        "{err}"
    );

    // A missing storage entry.
    let mut p = Pickle::new();
    p.ordered_dict().op(b'(');
    p.str("w").tensor(
        Storage {
            class: "FloatStorage",
            key: "77",
            numel: 2,
            view: None,
            legacy: false,
        },
        0,
        &[2],
        &[1],
    );
    p.op(b'u');
    let bytes = torch_zip("archive", &p.stop(), &[]);
    let err = read_checkpoint(&bytes, path).unwrap_err();
    assert!(err.to_string().contains("archive/data/77"), "{err}");
}

#[test]
fn truncated_and_random_files_get_clear_errors() {
    let dir = temp_dir("corrupt");

    // Truncated zip: the central directory is gone.
    let zip_bytes = std::fs::read(ckpt("local_probability_models/flat_160/rf9.pt")).unwrap();
    let path = dir.join("truncated.pt");
    std::fs::write(&path, &zip_bytes[..zip_bytes.len() / 2]).unwrap();
    let err = import_checkpoint(&path).unwrap_err();
    assert!(matches!(err, ImportError::Zip { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("cannot read the zip checkpoint: a damaged zip archive"),
        "{err}"
    );
    assert_names_file(&err, &path);

    // A zip whose storage bytes were damaged (CRC mismatch).
    let mut damaged = zip_bytes.clone();
    let mid = damaged.len() / 2;
    for b in &mut damaged[mid..mid + 256] {
        *b ^= 0xff;
    }
    let path = dir.join("damaged.pt");
    std::fs::write(&path, &damaged).unwrap();
    let err = import_checkpoint(&path).unwrap_err();
    assert_names_file(&err, &path);

    // Truncated legacy file, inside the main pickle and inside the storage data.
    let legacy = std::fs::read(ckpt("bias_free_denoising/dncnn/bias_free/0-100.pt")).unwrap();
    let path = dir.join("0-100.pt");
    std::fs::write(&path, &legacy[..5000]).unwrap();
    let err = import_checkpoint(&path).unwrap_err();
    assert!(matches!(err, ImportError::Pickle { .. }), "{err}");
    assert!(err.to_string().contains("unexpected end of data"), "{err}");
    assert_names_file(&err, &path);
    std::fs::write(&path, &legacy[..legacy.len() - 1000]).unwrap();
    let err = import_checkpoint(&path).unwrap_err();
    assert!(matches!(err, ImportError::Legacy { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
    assert_names_file(&err, &path);

    // Random bytes (a fixed xorshift sequence), an empty file, a fake zip.
    let mut x = 0x2545f4914f6cdd1du64;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    for (name, bytes) in [
        ("random.pt", random.clone()),
        ("empty.pt", Vec::new()),
        ("fake.pt", [b"PK\x03\x04".as_slice(), &random].concat()),
        (
            "fake_legacy.pt",
            [[0x80u8, 2, 0x8a, 10].as_slice(), &random].concat(),
        ),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, &bytes).unwrap();
        let err = import_checkpoint(&path).unwrap_err();
        assert_names_file(&err, &path);
        if name == "random.pt" || name == "empty.pt" {
            assert!(
                matches!(err, ImportError::UnknownFormat { .. }),
                "{name}: {err}"
            );
            assert!(
                err.to_string().contains("is not a PyTorch checkpoint"),
                "{err}"
            );
        }
        if name == "fake.pt" {
            assert!(matches!(err, ImportError::Zip { .. }), "{name}: {err}");
        }
        // WeightBlob::load reports an error as well (never panics).
        assert!(WeightBlob::load(&path).is_err());
    }

    // A missing file.
    let err = import_checkpoint(&dir.join("absent.pt")).unwrap_err();
    assert!(matches!(err, ImportError::Io { .. }), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unknown_architectures_are_refused() {
    let mut p = Pickle::new();
    p.ordered_dict().op(b'(');
    p.str("foo.weight").tensor(
        Storage {
            class: "FloatStorage",
            key: "0",
            numel: 4,
            view: None,
            legacy: false,
        },
        0,
        &[2, 2],
        &[2, 1],
    );
    p.op(b'u');
    let bytes = torch_zip("archive", &p.stop(), &[("0", f32_bytes(&[1.0; 4]))]);
    let path = Path::new("mystery.pt");
    let err = import_bytes(&bytes, path).unwrap_err();
    assert!(
        matches!(err, ImportError::UnknownArchitecture { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("foo.weight"), "{err}");
    assert_names_file(&err, path);

    // A recognised layout with an extra tensor is refused too.
    let mut ck = read_checkpoint(
        &std::fs::read(ckpt("universal_inverse_problem/mnist_gray/model.pt")).unwrap(),
        Path::new("x.pt"),
    )
    .unwrap();
    ck.tensors
        .insert("extra.weight".into(), TensorF32::zeros(vec![1]));
    let shapes: BTreeMap<String, Vec<usize>> = ck
        .tensors
        .iter()
        .map(|(k, t)| (k.clone(), t.shape.clone()))
        .collect();
    let err = prior_models::import::detect::detect(&shapes, None).unwrap_err();
    assert!(err.contains("extra.weight"), "{err}");
}
