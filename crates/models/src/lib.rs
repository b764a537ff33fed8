//! placeholder
pub mod blob;
pub mod error;
pub mod import;
