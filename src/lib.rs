//! hookwise: verified, durable GitHub App webhook intake for AI coding agents.

pub mod events;
pub mod store;
