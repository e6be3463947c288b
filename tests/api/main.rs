//! The integration test binary (`cargo test --test api`). Everything that
//! needs a real database runs against both backends; see `helpers`.
//! `scripts/test` starts a throwaway PostgreSQL cluster for the PostgreSQL half.

mod admin_cli;
mod crash;
mod helpers;
mod intake;
mod query_api;
mod store_conformance;
