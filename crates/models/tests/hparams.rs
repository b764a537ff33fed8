//! Typed hyper-parameters (`prior.hparams`) and architecture names
//! (`prior.arch`): blobs written before the types existed still parse to the
//! same JSON; a missing, unknown or misspelt key is refused with an error
//! naming the file and the key, at parse time and when a model is loaded.
//!
//! Temporary files go under `std::env::temp_dir()`.

use std::path::{Path, PathBuf};

use prior_models::blob::{keys, WeightBlob};
use prior_models::hparams::{ConvChainHparams, Norm, Output};
use prior_models::{Arch, Hparams};
use serde_json::Value as Json;

/// `prior.hparams` exactly as the importer wrote it before the typed
/// hyper-parameters (commit 41158d5, `cargo xtask import-weights --all` on
/// the shared checkpoints; `bf_unet` from its synthetic test checkpoint, the
/// multi-scale blob as `MultiScale::to_blob` combined it).
const OLD: &[(&str, &str)] = &[
    (
        "dncnn",
        r#"{"bias":true,"conditional_details":false,"in_channels":1,"kernel_sizes":[3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3],"layers":20,"norm":"bn","out_channels":1,"output":"denoised","relu_first":true,"width":64}"#,
    ),
    (
        "dncnn",
        r#"{"bias":false,"conditional_details":false,"in_channels":1,"kernel_sizes":[3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3],"layers":20,"norm":"bf_var","out_channels":1,"output":"denoised","relu_first":true,"width":64}"#,
    ),
    (
        "rcnn",
        r#"{"bias":true,"depth":5,"in_channels":1,"kernel_sizes":[3,3,3,3,3,3,3],"last_bias":false,"out_channels":1,"output":"denoised","stages":4,"width":64}"#,
    ),
    (
        "unet_small",
        r#"{"bias":false,"in_channels":1,"out_channels":1,"output":"denoised","residual_connection":false,"widths":[32,64]}"#,
    ),
    (
        "energy_unet",
        r#"{"base_width":16,"bias":false,"decoder_layers":[3,3,3],"embedding_dim":256,"encoder_layers":[3,3,3],"fourier_features":64,"group_size":1,"in_channels":1,"mid_layers":3,"mid_width":128,"model":"EnergyModel","num_layers_decoder_block":3,"num_layers_encoder_block":3,"num_layers_mid_block":3,"num_scales":3,"out_channels":1,"output":"residual","reparam_kwargs":{"conversion":"inner_product"},"widths":[16,32,64]}"#,
    ),
    (
        "bfcnn",
        r#"{"bias":false,"conditional_details":false,"in_channels":1,"kernel_sizes":[3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3],"layers":21,"norm":"bf_sd","out_channels":1,"output":"residual","relu_first":false,"width":64}"#,
    ),
    (
        "bfcnn",
        r#"{"bias":false,"conditional_details":true,"in_channels":4,"kernel_sizes":[3,1,1,1,1,1,1,1,3,1,1,1,1,1,1,1,3,1,1,1,3],"layers":21,"norm":"bf_sd","out_channels":3,"output":"residual","relu_first":false,"width":64}"#,
    ),
    (
        "bfcnn",
        r#"{"bias":false,"conditional_details":false,"in_channels":3,"kernel_sizes":[3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3],"layers":20,"norm":"bf_sd_stacked","out_channels":3,"output":"residual","relu_first":true,"width":64}"#,
    ),
    (
        "bf_unet",
        r#"{"base_width":4,"bias":false,"in_channels":1,"mid_width":32,"norm":"bf_sd","out_channels":1,"output":"residual","scales":3,"widths":[4,8,16]}"#,
    ),
    (
        "multiscale",
        r#"{"channels":1,"levels":1,"parts":{"low":{"arch":"bfcnn","hparams":{"bias":false,"conditional_details":false,"in_channels":1,"kernel_sizes":[3,3,3],"layers":3,"norm":"bf_sd","out_channels":1,"output":"residual","relu_first":false,"width":64},"source":"low_40x40.pt","source_sha256":"117575245c85ab00ee0edf1476a002f8428ee82e97dcab0e17c8127378da1c52","variant":"low"},"scale0":{"arch":"bfcnn","hparams":{"bias":false,"conditional_details":true,"in_channels":4,"kernel_sizes":[3,1,3],"layers":3,"norm":"bf_sd","out_channels":3,"output":"residual","relu_first":false,"width":64},"source":"rf9_scale_0.pt","source_sha256":"","variant":"rf_conditional"}}}"#,
    ),
];

/// A tensor-less blob with the given metadata, as if read from `origin`.
fn blob_with(arch: &str, hparams: &str, origin: &str) -> WeightBlob {
    let mut b = WeightBlob {
        origin: PathBuf::from(origin),
        ..Default::default()
    };
    b.meta.insert(keys::FORMAT.into(), "1".into());
    b.meta.insert(keys::ARCH.into(), arch.into());
    b.meta.insert(keys::HPARAMS.into(), hparams.into());
    b
}

/// A fresh folder under the system temp dir.
fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("prior-hparams-test-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes `blob` to `dir/name` and reads it back, so that errors name a real file.
fn saved(blob: &WeightBlob, dir: &Path, name: &str) -> (WeightBlob, PathBuf) {
    let p = dir.join(name);
    blob.save_atomic(&p).unwrap();
    (WeightBlob::load(&p).unwrap(), p)
}

#[test]
fn blobs_written_before_the_types_parse_to_the_same_json() {
    for (arch, json) in OLD {
        let b = blob_with(arch, json, "old.safetensors");
        let hp = b.hparams().unwrap_or_else(|e| panic!("{arch}: {e}"));
        assert_eq!(hp.arch(), *arch);
        assert_eq!(b.arch().unwrap(), hp.arch());
        let want: Json = serde_json::from_str(json).unwrap();
        assert_eq!(hp.to_json(), want, "{arch}: the keys and values are kept");
        // And a blob written now carries the same string.
        let now = WeightBlob::new("v", &hp);
        assert_eq!(now.meta(keys::ARCH), Some(*arch));
        let again: Json = serde_json::from_str(now.meta(keys::HPARAMS).unwrap()).unwrap();
        assert_eq!(again, want, "{arch}");
    }
}

fn bfcnn_hparams() -> ConvChainHparams {
    ConvChainHparams {
        in_channels: 1,
        out_channels: 1,
        width: 8,
        layers: 3,
        kernel_sizes: vec![3, 3, 3],
        relu_first: true,
        norm: Norm::BfSd,
        bias: false,
        output: Output::Residual,
        conditional_details: false,
    }
}

/// The bfcnn hparams JSON with `edit` applied to its object.
fn edited(edit: impl FnOnce(&mut serde_json::Map<String, Json>)) -> String {
    let mut v = Hparams::Bfcnn(bfcnn_hparams()).to_json();
    edit(v.as_object_mut().unwrap());
    v.to_string()
}

#[test]
fn a_missing_key_is_refused_naming_the_file_and_the_key() {
    let dir = temp_dir("missing");
    let json = edited(|m| {
        m.remove("norm");
    });
    let (b, path) = saved(&blob_with("bfcnn", &json, "x"), &dir, "no_norm.safetensors");
    let err = b.hparams().unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(
        err.contains("prior.hparams") && err.contains("missing field `norm`"),
        "{err}"
    );
    assert!(err.contains("bfcnn hyper-parameters"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unknown_or_misspelt_key_is_refused_naming_the_file_and_the_key() {
    let dir = temp_dir("unknown");
    // A misspelling: `nrom` instead of `norm` is both unknown and leaves `norm` missing;
    // the unknown key is reported.
    let json = edited(|m| {
        let v = m.remove("norm").unwrap();
        m.insert("nrom".into(), v);
    });
    let (b, path) = saved(&blob_with("bfcnn", &json, "x"), &dir, "nrom.safetensors");
    let err = b.hparams().unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("unknown field `nrom`"), "{err}");
    // An extra key next to every required one.
    let json = edited(|m| {
        m.insert("dropout".into(), Json::from(0.1));
    });
    let (b, path) = saved(&blob_with("bfcnn", &json, "x"), &dir, "extra.safetensors");
    let err = b.hparams().unwrap_err().to_string();
    assert!(
        err.contains(&path.display().to_string()) && err.contains("unknown field `dropout`"),
        "{err}"
    );
    // A value of the wrong kind names the key too.
    let json = edited(|m| {
        m.insert("norm".into(), Json::from("layer_norm"));
    });
    let err = blob_with("bfcnn", &json, "kind.safetensors")
        .hparams()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("kind.safetensors") && err.contains("layer_norm"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unknown_architecture_is_refused_naming_the_file_and_the_key() {
    let b = blob_with("bf-cnn", "{}", "arch.safetensors");
    for err in [
        b.arch().unwrap_err().to_string(),
        b.hparams().unwrap_err().to_string(),
    ] {
        assert!(
            err.contains("arch.safetensors") && err.contains("prior.arch"),
            "{err}"
        );
        assert!(
            err.contains("'bf-cnn'") && err.contains(&Arch::known()),
            "{err}"
        );
    }
}

#[test]
fn multiscale_parts_have_their_hparams_checked() {
    // A part whose hparams miss a key: the error names the part and the key.
    let (_, old) = OLD.iter().find(|(a, _)| *a == "multiscale").unwrap();
    let mut v: Json = serde_json::from_str(old).unwrap();
    v["parts"]["scale0"]["hparams"]
        .as_object_mut()
        .unwrap()
        .remove("relu_first");
    let b = blob_with("multiscale", &v.to_string(), "ms.safetensors");
    // The combined hparams parse (a part's hparams are typed by its arch) ...
    let Hparams::Multiscale(hp) = b.hparams().unwrap() else {
        panic!("not multiscale")
    };
    let part = &hp.parts["scale0"];
    // ... and the part's own are refused when split off.
    let err = Hparams::from_json(part.arch, part.hparams.clone())
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing field `relu_first`"), "{err}");
    // An unknown key in a part's record.
    let mut v: Json = serde_json::from_str(old).unwrap();
    v["parts"]["low"]["sha"] = Json::from("x");
    let err = blob_with("multiscale", &v.to_string(), "ms.safetensors")
        .hparams()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ms.safetensors") && err.contains("unknown field `sha`"),
        "{err}"
    );
}

#[test]
fn loading_a_model_refuses_bad_hparams_before_reading_weights() {
    let gpu = match pollster::block_on(prior_gpu::Gpu::from_env()) {
        Ok(g) => g,
        Err(e) => panic!("no GPU adapter (lavapipe is enough): {e}"),
    };
    let dir = temp_dir("load");
    let json = edited(|m| {
        m.remove("layers");
    });
    let (_, path) = saved(
        &blob_with("bfcnn", &json, "x"),
        &dir,
        "no_layers.safetensors",
    );
    let err = prior_models::load_path(&gpu, &path)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains(&path.display().to_string()) && err.contains("missing field `layers`"),
        "{err}"
    );
    // The same for an architecture whose constructor used to ignore its hparams.
    let json = r#"{"base_width":4,"bias":false,"in_channels":1,"mid_width":32,"norm":"bf_sd","out_channels":1,"output":"residual","widths":[4,8,16]}"#;
    let (_, path) = saved(
        &blob_with("bf_unet", json, "x"),
        &dir,
        "bf_unet.safetensors",
    );
    let err = prior_models::load_path(&gpu, &path)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains(&path.display().to_string()) && err.contains("missing field `scales`"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn energy_import_refuses_network_kwargs_it_does_not_understand() {
    let shared = match std::env::var_os("PRIOR_SHARED") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared")),
    };
    let p = shared.join("checkpoints/dual_score_matching/mnist32_gray_tiny/model.pth.tar");
    assert!(p.is_file(), "{} not found (set PRIOR_SHARED)", p.display());
    let ck = prior_models::import::read_checkpoint(&std::fs::read(&p).unwrap(), &p).unwrap();
    let shapes: std::collections::BTreeMap<String, Vec<usize>> = ck
        .tensors
        .iter()
        .map(|(k, t)| (k.clone(), t.shape.clone()))
        .collect();
    let args = ck.args.clone().expect("the fixture has args");
    let det = prior_models::import::detect::detect(&shapes, Some(&args)).unwrap();
    let Hparams::EnergyUnet(hp) = &det.hparams else {
        panic!("{:?}", det.arch())
    };
    assert_eq!(
        (hp.group_size, hp.num_layers_mid_block, hp.base_width),
        (1, Some(3), 16)
    );
    let mut bad = args.clone();
    bad["network_kwargs"] =
        Json::from("{'num_scales':3,'group_size':1,'base_width':16,'attention':True}");
    let err = prior_models::import::detect::detect(&shapes, Some(&bad)).unwrap_err();
    assert!(
        err.contains("'attention'") && err.contains("group_size"),
        "{err}"
    );
    bad["network_kwargs"] = Json::from("{'num_scales':3,'group_size':'one'}");
    let err = prior_models::import::detect::detect(&shapes, Some(&bad)).unwrap_err();
    assert!(err.contains("network_kwargs.group_size"), "{err}");
}
