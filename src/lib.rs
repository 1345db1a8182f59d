//! latchkey: a login/logout server (Actix-web, Diesel, server-side sessions).
#![forbid(unsafe_code)]

pub mod account;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod sessions;
pub mod startup;
pub mod users;
pub mod web;
