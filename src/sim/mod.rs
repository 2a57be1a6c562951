//! A simulated SecureChannelPool speaking the pool's exact wire format
//! (DESIGN.md §2), with faults that can be switched at run time. Used by
//! `--demo`, the `secure-channel-sim` binary, the tests and the benchmarks.

pub mod faults;
pub mod pool;
pub mod server;

pub use faults::{Fault, FaultSpec};
pub use pool::{SimConfig, SimPool, TimeFormat};
pub use server::{serve, serve_with, SimHandle};
