//! End-to-end tests of the core service: one test binary, one module per
//! area. Each test starts its own server on a free loopback port.
mod abuse;
mod auth_abuse;
mod cli;
mod cli_ops;
mod connections;
mod delivery;
mod dispatch;
mod durability;
mod expiry;
mod isolation;
mod limits;
mod listings;
mod logs;
mod multi_server;
mod ops;
mod security;
mod status_codes;
mod ui;
mod unserved;
mod validation;
