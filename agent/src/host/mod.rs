//! The host sensor: authentication logs, file integrity, listeners and
//! processes. See the submodules.

pub mod analyze;
pub mod auth;
pub mod config;
pub mod lines;
pub mod logfmt;
