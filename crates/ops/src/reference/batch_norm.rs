//! CPU reference of the batch-norm conventions (channels-last).

use crate::batch_norm::BatchNorm;

/// The normalisation `bn` of channels-last `x`, with a ReLU when `relu`.
pub fn batch_norm(bn: &BatchNorm, x: &[f32], relu: bool) -> Vec<f32> {
    let c = bn.channels();
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let k = i % c;
            let y = match bn {
                BatchNorm::BfSd { sd, gamma } => v / sd[k] * gamma[k],
                BatchNorm::BfVar { var, weight } => v / (var[k].sqrt() + 1e-5) * weight[k],
                BatchNorm::Standard {
                    mean,
                    var,
                    weight,
                    bias,
                } => (v - mean[k]) / (var[k] + 1e-5).sqrt() * weight[k] + bias[k],
            };
            if relu {
                y.max(0.0)
            } else {
                y
            }
        })
        .collect()
}
