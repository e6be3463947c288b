//! GitHub: webhook signatures and the parts of payloads hookwise reads.

pub mod client;
pub mod prefilter;
pub mod rest;
pub mod signature;
pub mod webhook;
