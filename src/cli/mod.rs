//! The client-side subcommands of the `hookwise` binary.

pub mod events;
pub mod send;
