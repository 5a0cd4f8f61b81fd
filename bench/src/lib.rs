//! errand's benchmark programs. `bench/run` drives them (with the peers in
//! `bench/*.py`); each workload prints one JSON object on stdout.
//!
//! Layout: [`agent`] (the load-generating agent, one function per workload),
//! [`workers`] (the no-op, sleeping and stalling tools on errand's Rust
//! worker runtime), [`echo`] (a plain tonic unary echo, the round-trip
//! floor), [`floor`] (the disk's `fdatasync` floor), [`openloop`] (submits on a fixed
//! schedule), [`pace`] (a precise pacing thread for open-loop load), [`restart`] (start time with a large store), [`stats`] (percentiles, and RSS and CPU from `/proc`).
pub mod agent;
pub mod echo;
pub mod floor;
pub mod host;
pub mod openloop;
pub mod pace;
pub mod restart;
pub mod stats;
pub mod workers;
