//! Where events and facts come from: probes (with the tracefs formats and BTF that lay them
//! out), the KFD sysfs and SMI sources, `/proc` scans, the GPU devices and host facts. The
//! kernel log itself is read by `hangwatch_core::kmsg`.
pub mod btf;
pub mod devices;
pub mod formats;
pub mod hostfacts;
pub mod identity;
pub mod kfd;
pub mod probes;
pub mod procinfo;
pub mod procscan;
pub mod recorder;
pub mod uevent;
