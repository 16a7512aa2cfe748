//! One module per subcommand; each exposes `Args` (clap) and `run(Args) -> Result<u8>` (exit code).
pub mod analyze;
pub mod bugreport;
pub mod check;
pub mod export;
pub mod list;
pub mod run;
pub mod show;
