//! latchkey: a login/logout server (Actix-web, Diesel, server-side sessions).
//!
//! Layers, each importing only from those before it:
//! `config`, `db` → `users` → `error` → `web` (the HTTP toolkit) →
//! `sessions`, `audit`, `metrics`, `factors`, `links`, `tokens` → `state` →
//! `auth` → `account`, `forward` → `shell`, `startup`, `cli`.
#![forbid(unsafe_code)]

pub mod account;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod factors;
pub mod forward;
pub mod links;
pub mod metrics;
pub mod sessions;
pub mod shell;
pub mod startup;
pub mod state;
pub mod tokens;
pub mod users;
pub mod web;
