//! Whole-server tests over HTTPS against a real usherd (in process, real TLS, real SQLite or
//! PostgreSQL).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]

mod arm;
mod compute;
mod conditional;
mod graph;
mod helpers;
mod jwt_attacks;
mod oidc;
mod pages;
mod passkeys;
mod token;
