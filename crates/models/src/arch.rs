//! The architectures prior knows, by the name a weight blob records in
//! `prior.arch` (see `weights/README.md`). This is the one place where the
//! names are spelt out: everything else uses [`Arch`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An architecture, serialised as its `prior.arch` name ([`Arch::name`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    /// BF-CNN (universal_inverse_problem, optimal_measurement, local_probability).
    Bfcnn,
    /// DnCNN of bias_free_denoising (bias and bias-free).
    Dncnn,
    /// The multi-scale conditional model (a combined blob of BF-CNN parts).
    Multiscale,
    /// The recurrent CNN of bias_free_denoising.
    Rcnn,
    /// The small UNet of bias_free_denoising.
    UnetSmall,
    /// The bias-free UNet of the memorization paper.
    BfUnet,
    /// The energy UNet of dual score matching.
    EnergyUnet,
}

impl Arch {
    /// Every architecture, in the order the README lists them.
    pub const ALL: [Arch; 7] = [
        Arch::Bfcnn,
        Arch::Dncnn,
        Arch::Multiscale,
        Arch::Rcnn,
        Arch::UnetSmall,
        Arch::BfUnet,
        Arch::EnergyUnet,
    ];

    /// The `prior.arch` name: the only place the names are written out
    /// (serde, `Display` and `FromStr` all go through it).
    pub const fn name(self) -> &'static str {
        match self {
            Arch::Bfcnn => "bfcnn",
            Arch::Dncnn => "dncnn",
            Arch::Multiscale => "multiscale",
            Arch::Rcnn => "rcnn",
            Arch::UnetSmall => "unet_small",
            Arch::BfUnet => "bf_unet",
            Arch::EnergyUnet => "energy_unet",
        }
    }

    /// The names of all architectures, comma-separated (for error messages).
    pub fn known() -> String {
        Arch::ALL
            .iter()
            .map(|a| a.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `arch == "bfcnn"`: compares the `prior.arch` name.
impl PartialEq<&str> for Arch {
    fn eq(&self, other: &&str) -> bool {
        self.name() == *other
    }
}

impl Serialize for Arch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Arch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Arch, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A name that is not an architecture prior knows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown architecture '{name}' (known: {known})", known = Arch::known())]
pub struct UnknownArch {
    /// The name that was given.
    pub name: String,
}

impl FromStr for Arch {
    type Err = UnknownArch;
    fn from_str(s: &str) -> Result<Arch, UnknownArch> {
        Arch::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| UnknownArch {
                name: s.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::Arch;

    #[test]
    fn names_round_trip() {
        for a in Arch::ALL {
            assert_eq!(a.name().parse::<Arch>(), Ok(a));
            assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{a}\""));
            assert_eq!(
                serde_json::from_str::<Arch>(&format!("\"{a}\"")).unwrap(),
                a
            );
        }
        let e = "bf-cnn".parse::<Arch>().unwrap_err().to_string();
        assert!(e.contains("'bf-cnn'") && e.contains("bfcnn, dncnn"), "{e}");
    }
}
