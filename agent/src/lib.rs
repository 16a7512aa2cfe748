//! hangwatch: attribute amdgpu GPU hangs, page faults and resets to the processes that caused them.
//!
//! Module map (one responsibility each):
//! - `model`: the correlator's input events; `incident`: its output document.
pub mod incident;
pub mod model;
