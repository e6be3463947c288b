//! The integration test binary (`cargo test --test api`). Everything that
//! needs a real database runs against both backends; see `helpers`.
//! `scripts/test` starts a throwaway PostgreSQL cluster for the PostgreSQL half.

mod admin_cli;
mod agent_callback_growth;
mod agent_context;
mod agent_server;
mod app_server;
mod app_server_triggers;
mod background_lease;
mod classify;
mod cli;
mod connections;
mod crash;
mod dashboard;
mod explain;
mod exposure;
mod forward;
mod helpers;
mod hostile;
mod intake;
mod kurrent;
mod limits;
mod metrics;
mod one_at_a_time;
mod pull_request_enrichment;
mod query_api;
mod reactions;
mod readiness;
mod reconcile;
mod repository_settings;
mod runner;
mod setup;
mod status_comment;
mod store_conformance;
mod test_sink;
mod triggers;
mod ways_to_ask;
