//! hookwise: verified, durable GitHub App webhook intake for AI coding agents.
//!
//! Every verified delivery is appended to an event log before GitHub gets its
//! answer; everything else is derived from that log.

pub mod agent;
pub mod api;
pub mod app;
pub mod background;
pub mod cli;
pub mod commands;
pub mod config;
pub mod events;
pub mod forward;
pub mod github;
pub mod metrics;
pub mod process;
pub mod projections;
pub mod reconcile;
pub mod runner;
pub mod secret;
pub mod server;
pub mod sql;
pub mod store;
pub mod triggers;

pub use app::Application;
