//! The client-side subcommands of the `hookwise` binary.

pub mod admin;
pub mod check_agent;
pub mod env_file;
mod error;
pub mod events;
pub mod examples;
pub mod explain;
pub mod send;
pub mod setup;

pub use error::CliError;
