//! Test support shared by errand's crates (a dev-dependency of the server
//! and the end-to-end suite, and a dependency of `bench/pg`).
//!
//! Layout:
//! - [`process`]: the `errand` binary as a child process: where it is
//!   ([`errand_bin`]: `$ERRAND_BIN`, else the build beside the test binary),
//!   `errand serve` started on a port and awaited by its listening line
//!   ([`ServeProcess`]), and bounded waits ([`within`], [`wait_line`]).
//! - [`pg`]: a throwaway PostgreSQL cluster per test process, a fresh
//!   database per server.

pub mod pg;
pub mod process;

pub use process::{EVENT_TIMEOUT, ServeProcess, errand_bin, wait_line, within};
