//! One module per `prior` subcommand: its clap arguments and its `run`.
pub mod calibrate;
pub mod denoise;
pub mod devices;
pub mod info;
pub mod logp;
pub mod mala;
pub mod score;
pub mod jacobian;
pub mod plot;
pub mod sample;
pub mod solve;
