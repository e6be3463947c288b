//! The write side: each command validates its input and appends events.

pub mod admin;
pub mod receive_agent_batch;
pub mod receive_agent_server_events;
pub mod receive_webhook;
pub mod retry;
