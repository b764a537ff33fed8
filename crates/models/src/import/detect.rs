//! Architecture detection from state_dict keys and shapes, and the
//! hyper-parameters written to `prior.hparams` (see `weights/README.md`).
//!
//! Every detector checks the whole key set: a state_dict with keys no
//! detector accounts for is refused rather than half-understood.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value as Json;

use super::pickle::parse_python_literal;
use crate::arch::Arch;
use crate::hparams::{
    BfUnetHparams, ConvChainHparams, EnergyUnetHparams, Hparams, Norm, Output, RcnnHparams,
    UnetSmallHparams,
};

/// Result of [`detect`].
#[derive(Clone, Debug, PartialEq)]
pub struct Detected {
    /// Free-form provenance, e.g. `universal`, `conv3_ln`, `low`,
    /// `rf_conditional`, `rf_flat`, `bias`, `bias_free`, `energy`.
    pub variant: String,
    /// The hyper-parameters, which name the architecture.
    pub hparams: Hparams,
}

impl Detected {
    /// The detected architecture.
    pub fn arch(&self) -> Arch {
        self.hparams.arch()
    }
}

type Shapes = BTreeMap<String, Vec<usize>>;

/// Identifies the architecture of a state_dict (keys already stripped of
/// `module.`) from its keys and shapes. `args` is the checkpoint's argparse
/// namespace as JSON, when it has one.
pub fn detect(shapes: &Shapes, args: Option<&Json>) -> Result<Detected, String> {
    if shapes.is_empty() {
        return Err("the state_dict holds no float tensors".into());
    }
    let has = |k: &str| shapes.contains_key(k);
    if has("network.encoder.0.0.weight") || has("network.noise_var_embedding.time_embed.0.weight") {
        return energy_unet(shapes, args);
    }
    if has("first_layer.weight") && has("hidden_layer_list.0.weight") {
        return dncnn(shapes);
    }
    if has("cnn.first_layer.weight") && has("cnn.last_layer.weight") {
        return rcnn(shapes, args);
    }
    if has("conv1.weight") && has("conv7.weight") && has("conv9.weight") {
        return unet_small(shapes, args);
    }
    if has("encoder.0.0.weight") && has("mid_block.0.weight") && has("upsample.0.weight") {
        return bf_unet(shapes);
    }
    if has("conv_layers.0.weight") {
        return bfcnn(shapes);
    }
    let sample: Vec<&str> = shapes.keys().take(6).map(String::as_str).collect();
    let importable = [
        Arch::Bfcnn,
        Arch::Dncnn,
        Arch::Rcnn,
        Arch::UnetSmall,
        Arch::BfUnet,
        Arch::EnergyUnet,
    ];
    let names: Vec<&str> = importable.iter().map(|a| a.name()).collect();
    Err(format!(
        "keys match no known architecture ({}); first keys: {}",
        names.join(", "),
        sample.join(", ")
    ))
}

/// Tracks which keys a detector has accounted for.
struct Keys<'a> {
    shapes: &'a Shapes,
    used: BTreeSet<&'a str>,
}

impl<'a> Keys<'a> {
    fn new(shapes: &'a Shapes) -> Self {
        Keys {
            shapes,
            used: BTreeSet::new(),
        }
    }

    fn has(&self, k: &str) -> bool {
        self.shapes.contains_key(k)
    }

    /// The shape of a required key.
    fn req(&mut self, k: &str) -> Result<&'a [usize], String> {
        match self.shapes.get_key_value(k) {
            Some((key, s)) => {
                self.used.insert(key.as_str());
                Ok(s)
            }
            None => Err(format!("missing tensor {k}")),
        }
    }

    /// The shape of an optional key.
    fn opt(&mut self, k: &str) -> Option<&'a [usize]> {
        self.req(k).ok()
    }

    /// A required key of an exact shape.
    fn req_shape(&mut self, k: &str, shape: &[usize]) -> Result<(), String> {
        let s = self.req(k)?;
        if s != shape {
            return Err(format!("{k} has shape {s:?}, expected {shape:?}"));
        }
        Ok(())
    }

    /// A conv weight `(out, in, k, k)`: returns `(out, in, k)`.
    fn conv(&mut self, k: &str) -> Result<(usize, usize, usize), String> {
        let s = self.req(k)?;
        match *s {
            [o, i, kh, kw] if kh == kw => Ok((o, i, kh)),
            _ => Err(format!("{k} has shape {s:?}, expected (out, in, k, k)")),
        }
    }

    /// Number of consecutive indices `i = 0, 1, ...` for which `fmt(i)` exists.
    fn count(&self, fmt: impl Fn(usize) -> String) -> usize {
        (0..).take_while(|&i| self.has(&fmt(i))).count()
    }

    /// Refuses keys no rule accounted for.
    fn finish(&self, arch: Arch) -> Result<(), String> {
        let extra: Vec<&str> = self
            .shapes
            .keys()
            .map(String::as_str)
            .filter(|k| !self.used.contains(k))
            .collect();
        if extra.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "looks like {arch} but has {} unexpected tensors: {}{}",
                extra.len(),
                extra.iter().take(6).copied().collect::<Vec<_>>().join(", "),
                if extra.len() > 6 { ", ..." } else { "" }
            ))
        }
    }
}

/// Checks a chain of convs (each one's input = the previous one's output).
fn check_chain(names: &[String], convs: &[(usize, usize, usize)]) -> Result<(), String> {
    for i in 1..convs.len() {
        if convs[i].1 != convs[i - 1].0 {
            return Err(format!(
                "{} takes {} channels but {} produces {}",
                names[i],
                convs[i].1,
                names[i - 1],
                convs[i - 1].0
            ));
        }
    }
    Ok(())
}

/// What a conv chain's hparams record besides its convolutions' shapes.
struct ChainKind {
    relu_first: bool,
    norm: Norm,
    bias: bool,
    output: Output,
    conditional_details: bool,
}

fn conv_chain_hparams(convs: &[(usize, usize, usize)], kind: ChainKind) -> ConvChainHparams {
    ConvChainHparams {
        in_channels: convs[0].1,
        out_channels: convs[convs.len() - 1].0,
        width: convs[0].0,
        layers: convs.len(),
        kernel_sizes: convs.iter().map(|c| c.2).collect(),
        relu_first: kind.relu_first,
        norm: kind.norm,
        bias: kind.bias,
        output: kind.output,
        conditional_details: kind.conditional_details,
    }
}

/// BF-CNN families: universal_inverse_problem (`running_sd.{i}`/`gammas.{i}`),
/// optimal_measurement `conv3_ln` (stacked `(L,1,C,1,1)`), local_probability
/// (`BN_layers.{i}.{running_sd,gammas}`; `low`, `rf_conditional`, `rf_flat`).
fn bfcnn(shapes: &Shapes) -> Result<Detected, String> {
    let a = Arch::Bfcnn;
    let mut k = Keys::new(shapes);
    let n = k.count(|i| format!("conv_layers.{i}.weight"));
    if n < 3 {
        return Err(format!("{a}: only {n} conv layers"));
    }
    let names: Vec<String> = (0..n).map(|i| format!("conv_layers.{i}.weight")).collect();
    let convs = names
        .iter()
        .map(|nm| k.conv(nm))
        .collect::<Result<Vec<_>, _>>()?;
    check_chain(&names, &convs)?;
    for i in 0..n {
        if k.has(&format!("conv_layers.{i}.bias")) {
            return Err(format!(
                "{a}: conv_layers.{i} has a bias; BF-CNNs are bias-free"
            ));
        }
    }
    let hidden = n - 2;
    // Channels after conv l (l = 1..=hidden) for BN layer l-1.
    let bn_channels = |j: usize| convs[j + 1].0;

    let (variant, norm, relu_first, conditional) = if k.has("running_sd.0") || k.has("gammas.0") {
        for j in 0..hidden {
            let c = bn_channels(j);
            k.req_shape(&format!("running_sd.{j}"), &[1, c, 1, 1])?;
            k.req_shape(&format!("gammas.{j}"), &[1, c, 1, 1])?;
        }
        ("universal", Norm::BfSd, true, false)
    } else if k.has("gammas") && k.has("running_sd") {
        let c = convs[1].0;
        if (1..=hidden).any(|l| convs[l].0 != c) {
            return Err(format!(
                "{a}: stacked norm tensors need equal hidden widths"
            ));
        }
        k.req_shape("gammas", &[hidden, 1, c, 1, 1])?;
        k.req_shape("running_sd", &[hidden, 1, c, 1, 1])?;
        ("conv3_ln", Norm::BfSdStacked, true, false)
    } else if k.has("BN_layers.0.running_sd") || k.has("BN_layers.0.gammas") {
        for j in 0..hidden {
            let c = bn_channels(j);
            k.req_shape(&format!("BN_layers.{j}.running_sd"), &[1, c, 1, 1])?;
            k.req_shape(&format!("BN_layers.{j}.gammas"), &[1, c, 1, 1])?;
        }
        let (cin, cout) = (convs[0].1, convs[n - 1].0);
        let conditional = cin % 4 == 0 && cout * 4 == cin * 3;
        let variant = if conditional {
            "rf_conditional"
        } else if n == 20 {
            "low"
        } else {
            "rf_flat"
        };
        (variant, Norm::BfSd, false, conditional)
    } else {
        return Err(format!(
            "{a}: conv_layers.* without running_sd/gammas or BN_layers normalisation"
        ));
    };
    k.finish(a)?;
    let kind = ChainKind {
        relu_first,
        norm,
        bias: false,
        output: Output::Residual,
        conditional_details: conditional,
    };
    Ok(Detected {
        variant: variant.into(),
        hparams: Hparams::Bfcnn(conv_chain_hparams(&convs, kind)),
    })
}

/// DnCNN of bias_free_denoising: `first_layer`, `hidden_layer_list.{i}`,
/// `bn_layer_list.{i}`, `last_layer`.
fn dncnn(shapes: &Shapes) -> Result<Detected, String> {
    let a = Arch::Dncnn;
    let mut k = Keys::new(shapes);
    let hidden = k.count(|i| format!("hidden_layer_list.{i}.weight"));
    let mut names = vec!["first_layer".to_string()];
    names.extend((0..hidden).map(|i| format!("hidden_layer_list.{i}")));
    names.push("last_layer".into());
    let convs = names
        .iter()
        .map(|nm| k.conv(&format!("{nm}.weight")))
        .collect::<Result<Vec<_>, _>>()?;
    check_chain(&names, &convs)?;
    let biases: Vec<bool> = names
        .iter()
        .zip(&convs)
        .map(|(nm, c)| {
            let key = format!("{nm}.bias");
            match k.opt(&key) {
                Some(s) if s == [c.0] => Ok(true),
                Some(s) => Err(format!("{key} has shape {s:?}, expected [{}]", c.0)),
                None => Ok(false),
            }
        })
        .collect::<Result<_, _>>()?;
    let bias = biases[0];
    if biases.iter().any(|&b| b != bias) {
        return Err(format!("{a}: some convs have biases and others do not"));
    }
    for i in 0..hidden {
        let c = convs[i + 1].0;
        for p in ["weight", "bias", "running_mean", "running_var"] {
            k.req_shape(&format!("bn_layer_list.{i}.{p}"), &[c])?;
        }
    }
    k.finish(a)?;
    let (variant, norm) = if bias {
        ("bias", Norm::Bn)
    } else {
        ("bias_free", Norm::BfVar)
    };
    let kind = ChainKind {
        relu_first: true,
        norm,
        bias,
        output: Output::Denoised,
        conditional_details: false,
    };
    Ok(Detected {
        variant: variant.into(),
        hparams: Hparams::Dncnn(conv_chain_hparams(&convs, kind)),
    })
}

/// Recurrent CNN of bias_free_denoising: one shared stage under `cnn.`.
fn rcnn(shapes: &Shapes, args: Option<&Json>) -> Result<Detected, String> {
    let a = Arch::Rcnn;
    let mut k = Keys::new(shapes);
    let hidden = k.count(|i| format!("cnn.hidden_layer_list.{i}.weight"));
    let mut names = vec!["cnn.first_layer".to_string()];
    names.extend((0..hidden).map(|i| format!("cnn.hidden_layer_list.{i}")));
    names.push("cnn.last_layer".into());
    let convs = names
        .iter()
        .map(|nm| k.conv(&format!("{nm}.weight")))
        .collect::<Result<Vec<_>, _>>()?;
    check_chain(&names, &convs)?;
    let mut biases = Vec::new();
    for (nm, c) in names.iter().zip(&convs) {
        let key = format!("{nm}.bias");
        biases.push(match k.opt(&key) {
            Some(s) if s == [c.0] => true,
            Some(s) => return Err(format!("{key} has shape {s:?}, expected [{}]", c.0)),
            None => false,
        });
    }
    // The authors' RCNN never gives its last conv a bias, even in the `bias`
    // variant; the other convs all have one or none.
    let bias = biases[0];
    if biases[..=hidden].iter().any(|&b| b != bias) {
        return Err(format!("{a}: some convs have biases and others do not"));
    }
    let last_bias = biases[hidden + 1];
    let channels = convs[hidden + 1].0;
    if convs[0].1 != 2 * channels {
        return Err(format!(
            "{a}: the stage takes {} channels, expected 2 x {channels} (image and previous estimate)",
            convs[0].1
        ));
    }
    k.finish(a)?;
    // The number of stages is not in the weights: the checkpoint's
    // `args.max_stage` when it has one, else 4 (the authors' default, which
    // every published RCNN checkpoint was trained with).
    let stages = match args.and_then(|v| v.get("max_stage")) {
        None => 4,
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => n as usize,
            _ => {
                return Err(format!(
                    "{a}: args.max_stage is {v}, expected a positive integer"
                ))
            }
        },
    };
    Ok(Detected {
        variant: if bias { "bias" } else { "bias_free" }.into(),
        hparams: Hparams::Rcnn(RcnnHparams {
            in_channels: channels,
            out_channels: channels,
            stages,
            width: convs[0].0,
            depth: hidden,
            kernel_sizes: convs.iter().map(|c| c.2).collect(),
            bias,
            last_bias,
            output: Output::Denoised,
        }),
    })
}

/// The small UNet of bias_free_denoising (`conv1`..`conv9`, `conv7` transposed).
fn unet_small(shapes: &Shapes, args: Option<&Json>) -> Result<Detected, String> {
    let a = Arch::UnetSmall;
    let mut k = Keys::new(shapes);
    let mut convs = Vec::new();
    for i in 1..=9 {
        convs.push(k.conv(&format!("conv{i}.weight"))?);
    }
    let mut biases = Vec::new();
    for (i, c) in convs.iter().enumerate().take(8) {
        // conv7 is a ConvTranspose (in, out, k, k): its bias has `out` = shape[1].
        let n = if i == 6 { c.1 } else { c.0 };
        let key = format!("conv{}.bias", i + 1);
        biases.push(match k.opt(&key) {
            Some(s) if s == [n] => true,
            Some(s) => return Err(format!("{key} has shape {s:?}, expected [{n}]")),
            None => false,
        });
    }
    if k.has("conv9.bias") {
        return Err(format!("{a}: conv9 must not have a bias"));
    }
    let bias = biases[0];
    if biases.iter().any(|&b| b != bias) {
        return Err(format!("{a}: some convs have biases and others do not"));
    }
    let w1 = convs[0].0;
    let w2 = convs[2].0;
    let expect = [
        (w1, convs[0].1, 5),
        (w1, w1, 3),
        (w2, w1, 3),
        (w2, w2, 3),
        (w2, w2, 3),
        (w2, w2, 3),
        (w2, w2, 4),
        (w1, w2 + w1, 3),
        (convs[8].0, w1, 5),
    ];
    for (i, (c, e)) in convs.iter().zip(expect).enumerate() {
        if *c != e {
            return Err(format!(
                "{a}: conv{} is (out {}, in {}, k {}), expected (out {}, in {}, k {})",
                i + 1,
                c.0,
                c.1,
                c.2,
                e.0,
                e.1,
                e.2
            ));
        }
    }
    k.finish(a)?;
    // `--residual` training is not visible in the weights: the checkpoint's
    // `args.residual` when it has one, else off (the authors' default).
    let residual = match args.and_then(|v| v.get("residual")) {
        None => false,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| format!("{a}: args.residual is {v}, expected true or false"))?,
    };
    Ok(Detected {
        variant: if bias { "bias" } else { "bias_free" }.into(),
        hparams: Hparams::UnetSmall(UnetSmallHparams {
            in_channels: convs[0].1,
            out_channels: convs[8].0,
            widths: [w1, w2],
            bias,
            output: Output::Denoised,
            residual_connection: residual,
        }),
    })
}

/// The bias-free UNet of the memorization paper (keys in shared/README.md).
fn bf_unet(shapes: &Shapes) -> Result<Detected, String> {
    let a = Arch::BfUnet;
    let mut k = Keys::new(shapes);
    let scales = k.count(|b| format!("encoder.{b}.0.weight"));
    if scales == 0 {
        return Err(format!("{a}: no encoder blocks"));
    }
    let bn = |k: &mut Keys, prefix: &str, c: usize| -> Result<(), String> {
        k.req_shape(&format!("{prefix}.gammas"), &[1, c, 1, 1])?;
        k.req_shape(&format!("{prefix}.running_sd"), &[1, c, 1, 1])
    };
    let expect_conv =
        |k: &mut Keys, name: &str, out: usize, inp: usize, ks: usize| -> Result<(), String> {
            k.req_shape(name, &[out, inp, ks, ks])
        };
    let (base, cin, _) = k.conv("encoder.0.0.weight")?;
    let widths: Vec<usize> = (0..scales).map(|b| base << b).collect();
    // Encoder.
    expect_conv(&mut k, "encoder.0.2.weight", base, base, 3)?;
    bn(&mut k, "encoder.0.3", base)?;
    for (b, &w) in widths.iter().enumerate().skip(1) {
        expect_conv(&mut k, &format!("encoder.{b}.0.weight"), w, w / 2, 3)?;
        bn(&mut k, &format!("encoder.{b}.1"), w)?;
        expect_conv(&mut k, &format!("encoder.{b}.3.weight"), w, w, 3)?;
        bn(&mut k, &format!("encoder.{b}.4"), w)?;
    }
    // Middle.
    let top = widths[scales - 1];
    let mid = 2 * top;
    expect_conv(&mut k, "mid_block.0.weight", mid, top, 3)?;
    bn(&mut k, "mid_block.1", mid)?;
    expect_conv(&mut k, "mid_block.3.weight", mid, mid, 3)?;
    bn(&mut k, "mid_block.4", mid)?;
    // Decoder and up-sampling (ConvTranspose layout (in, out, 2, 2)).
    for b in (0..scales).rev() {
        let w = widths[b];
        k.req_shape(&format!("upsample.{b}.weight"), &[2 * w, w, 2, 2])?;
        if b > 0 {
            expect_conv(&mut k, &format!("decoder.{b}.0.weight"), w, 2 * w, 3)?;
            bn(&mut k, &format!("decoder.{b}.1"), w)?;
            expect_conv(&mut k, &format!("decoder.{b}.3.weight"), w, w, 3)?;
            bn(&mut k, &format!("decoder.{b}.4"), w)?;
        }
    }
    expect_conv(&mut k, "decoder.0.0.weight", base, 2 * base, 3)?;
    bn(&mut k, "decoder.0.1", base)?;
    let (cout, _, _) = k.conv("decoder.0.3.weight")?;
    expect_conv(&mut k, "decoder.0.3.weight", cout, base, 3)?;
    k.finish(a)?;
    Ok(Detected {
        variant: "memorization".into(),
        hparams: Hparams::BfUnet(BfUnetHparams {
            in_channels: cin,
            out_channels: cout,
            base_width: base,
            scales,
            widths,
            mid_width: mid,
            norm: Norm::BfSd,
            bias: false,
            output: Output::Residual,
        }),
    })
}

/// The energy UNet of dual score matching (`network.*` keys).
fn energy_unet(shapes: &Shapes, args: Option<&Json>) -> Result<Detected, String> {
    let a = Arch::EnergyUnet;
    let mut k = Keys::new(shapes);
    let p = "network";
    // Noise-variance embedding: Linear(F, E) -> SiLU -> Linear(E, E) -> SiLU.
    let e0 = k.req(&format!("{p}.noise_var_embedding.time_embed.0.weight"))?;
    let (emb, fourier) = match *e0 {
        [e, f] => (e, f),
        _ => return Err(format!("{a}: time_embed.0.weight has shape {e0:?}")),
    };
    k.req_shape(
        &format!("{p}.noise_var_embedding.time_embed.0.bias"),
        &[emb],
    )?;
    k.req_shape(
        &format!("{p}.noise_var_embedding.time_embed.2.weight"),
        &[emb, emb],
    )?;
    k.req_shape(
        &format!("{p}.noise_var_embedding.time_embed.2.bias"),
        &[emb],
    )?;

    // A block is a sequence of (conv, norm, activation) at indices 3j, 3j+1.
    // Returns the convs' shapes.
    let block = |k: &mut Keys, name: &str| -> Result<Vec<Vec<usize>>, String> {
        let n = k.count(|j| format!("{p}.{name}.{}.weight", 3 * j));
        if n == 0 {
            return Err(format!("{a}: block {name} has no layers"));
        }
        let mut convs = Vec::new();
        for j in 0..n {
            let cw = k.req(&format!("{p}.{name}.{}.weight", 3 * j))?.to_vec();
            if cw.len() != 4 {
                return Err(format!("{a}: {p}.{name}.{}.weight has shape {cw:?}", 3 * j));
            }
            if k.has(&format!("{p}.{name}.{}.bias", 3 * j)) {
                return Err(format!(
                    "{a}: {p}.{name}.{} has a bias; the UNet is bias-free",
                    3 * j
                ));
            }
            // ConvTranspose weights are (in, out, k, k); a strided conv (out, in, 2, 2).
            let is_last_of_net = name == "decoder.0" && j == n - 1;
            if !is_last_of_net {
                let norm = format!("{p}.{name}.{}", 3 * j + 1);
                let c = k.req(&format!("{norm}.weight"))?.to_vec();
                if c.len() != 1 {
                    return Err(format!("{a}: {norm}.weight has shape {c:?}"));
                }
                k.req_shape(
                    &format!("{norm}.conditioning_embedding.weight"),
                    &[c[0], emb],
                )?;
                k.req_shape(&format!("{norm}.conditioning_embedding.bias"), &[c[0]])?;
            }
            convs.push(cw);
        }
        Ok(convs)
    };

    let scales = k.count(|s| format!("{p}.encoder.{s}.0.weight"));
    let mut enc_layers = Vec::new();
    let mut widths = Vec::new();
    let mut cin = 0;
    for s in 0..scales {
        let convs = block(&mut k, &format!("encoder.{s}"))?;
        if s == 0 {
            cin = convs[0][1];
        }
        widths.push(convs[0][0]);
        enc_layers.push(convs.len());
    }
    if scales == 0 {
        return Err(format!("{a}: no encoder blocks"));
    }
    let mid = block(&mut k, "middle_block")?;
    let mid_width = mid[0][0];
    let mut dec_layers = Vec::new();
    let mut cout = 0;
    for s in 0..scales {
        let convs = block(&mut k, &format!("decoder.{s}"))?;
        if s == 0 {
            cout = convs[convs.len() - 1][0];
        }
        dec_layers.push(convs.len());
    }
    k.finish(a)?;

    let parse_kwargs = |key: &str| -> Option<Json> {
        match args?.get(key)? {
            Json::String(s) => {
                Some(parse_python_literal(s).unwrap_or_else(|| Json::String(s.clone())))
            }
            Json::Object(o) => Some(Json::Object(o.clone())),
            _ => None,
        }
    };
    let network_kwargs = parse_kwargs("network_kwargs");
    let reparam_kwargs = parse_kwargs("reparam_kwargs");
    let model = args
        .and_then(|v| v.get("model"))
        .and_then(Json::as_str)
        .map(str::to_string);

    // The checkpoint's network_kwargs: only keys prior understands.
    let kw = match &network_kwargs {
        None => serde_json::Map::new(),
        Some(Json::Object(kw)) => kw.clone(),
        Some(other) => {
            return Err(format!(
                "{a}: args.network_kwargs is {other}, expected a dict"
            ))
        }
    };
    if let Some(key) = kw
        .keys()
        .find(|key| !EnergyUnetHparams::NETWORK_KWARGS.contains(&key.as_str()))
    {
        return Err(format!(
            "{a}: args.network_kwargs has '{key}', which prior does not understand (known: {})",
            EnergyUnetHparams::NETWORK_KWARGS.join(", ")
        ));
    }
    let kwarg = |key: &str| -> Result<Option<usize>, String> {
        match kw.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
                format!("{a}: network_kwargs.{key} is {v}, expected a non-negative integer")
            }),
        }
    };
    if let Some(bw) = kwarg("base_width")? {
        if bw != widths[0] {
            return Err(format!(
                "{a}: network_kwargs says base_width {bw} but the weights have {}",
                widths[0]
            ));
        }
    }
    if let Some(ns) = kwarg("num_scales")? {
        if ns != scales {
            return Err(format!(
                "{a}: network_kwargs says num_scales {ns} but the weights have {scales}"
            ));
        }
    }
    let group_size = kwarg("group_size")?.unwrap_or(1);
    if group_size == 0 {
        return Err(format!("{a}: network_kwargs.group_size is 0"));
    }
    let is_energy = model.as_deref() == Some("EnergyModel")
        || reparam_kwargs
            .as_ref()
            .and_then(|r| r.get("conversion"))
            .and_then(Json::as_str)
            == Some("inner_product");
    let variant = match model.as_deref() {
        _ if is_energy => "energy",
        Some("DenoiserModel") => "denoiser",
        Some(_) => "other",
        None => "unknown",
    };
    let hparams = EnergyUnetHparams {
        num_layers_encoder_block: kwarg("num_layers_encoder_block")?,
        num_layers_mid_block: kwarg("num_layers_mid_block")?,
        num_layers_decoder_block: kwarg("num_layers_decoder_block")?,
        group_size,
        in_channels: cin,
        out_channels: cout,
        base_width: widths[0],
        num_scales: scales,
        widths,
        mid_width,
        encoder_layers: enc_layers,
        mid_layers: mid.len(),
        decoder_layers: dec_layers,
        embedding_dim: emb,
        fourier_features: fourier,
        bias: false,
        output: Output::Residual,
        model,
        reparam_kwargs,
    };
    Ok(Detected {
        variant: variant.into(),
        hparams: Hparams::EnergyUnet(hparams),
    })
}

/// Formats a noise level: integers without a decimal point.
fn fmt_level(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// The training noise range on the 0–255 scale, `LOW-HIGH`: from the
/// checkpoint's `args` (`min_noise`/`max_noise`, which the DnCNN files store
/// swapped) or else from a file name like `0-100.pt`.
pub fn noise_range(args: Option<&Json>, path: &Path) -> Option<String> {
    if let Some(a) = args {
        if let (Some(lo), Some(hi)) = (
            a.get("min_noise").and_then(Json::as_f64),
            a.get("max_noise").and_then(Json::as_f64),
        ) {
            let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
            return Some(format!("{}-{}", fmt_level(lo), fmt_level(hi)));
        }
    }
    let name = path.file_name()?.to_str()?;
    let stem = [".pth.tar", ".pt", ".pth", ".tar"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .unwrap_or(name);
    let (lo, hi) = stem.split_once('-')?;
    let level = |s: &str| -> Option<f64> {
        let numeric = !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '.');
        numeric.then(|| s.parse::<f64>().ok()).flatten()
    };
    let (lo, hi) = (level(lo)?, level(hi)?);
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
    Some(format!("{}-{}", fmt_level(lo), fmt_level(hi)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn noise_range_from_args_and_names() {
        let a = json!({"min_noise": 100, "max_noise": 0});
        assert_eq!(
            noise_range(Some(&a), Path::new("x.pt")).as_deref(),
            Some("0-100")
        );
        let a = json!({"min_noise": 0, "max_noise": 100.0});
        assert_eq!(
            noise_range(Some(&a), Path::new("x.pt")).as_deref(),
            Some("0-100")
        );
        assert_eq!(
            noise_range(None, Path::new("a/0-55.pt")).as_deref(),
            Some("0-55")
        );
        assert_eq!(noise_range(None, Path::new("a/model.pt")), None);
        assert_eq!(noise_range(None, Path::new("a/rf9_scale_0.pt")), None);
    }
}
