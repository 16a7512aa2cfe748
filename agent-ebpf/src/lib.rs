#![no_std]
// The eBPF programs live in the `agent` binary target (src/main.rs); this empty library lets
// the host workspace build depend on the crate so cargo rebuilds the object when it changes.
