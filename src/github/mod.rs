//! GitHub: webhook signatures and the parts of payloads hookwise reads.

pub mod signature;
pub mod webhook;
