//! One module per `prior` subcommand: its clap arguments and its `run`.
pub mod bench;
pub mod calibrate;
pub mod denoise;
pub mod devices;
pub mod info;
pub mod jacobian;
pub mod learn;
pub mod logp;
pub mod mala;
pub mod plot;
pub mod profile;
pub mod sample;
pub mod score;
pub mod solve;
