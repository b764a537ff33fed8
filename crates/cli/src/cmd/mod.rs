//! One module per `prior` subcommand: its clap arguments and its `run`.
