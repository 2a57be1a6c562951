//! A simulated SecureChannelPool speaking the pool's wire format and
//! reproducing its behaviour (docs/pool-behaviour.md) in two models, the published
//! pool and a build that returns connections, with faults and load that can
//! be switched at run time. Used by
//! `--demo`, the `secure-channel-sim` binary, the tests and the benchmarks.

pub mod faults;
pub mod pool;
pub mod server;
pub mod settings;

pub use faults::{Fault, FaultSpec};
pub use pool::SimPool;
pub use server::{serve, serve_with, SimHandle};
pub use settings::{Load, Model, SimConfig, TimeFormat};
