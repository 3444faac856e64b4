//! `libnss_usher.so.2` (SPEC L2): directory users and groups for glibc's name service switch.
//! It answers from files the machine's agent writes (`/etc/usher/passwd`, `/etc/usher/group`,
//! in the formats of `/etc/passwd` and `/etc/group`, mode 0644), never from the network, so a
//! lookup costs a file read even when the agent or the server is down. Enumeration is off.
//!
//! The exported functions are a thin FFI layer over [`cache`]; every one catches panics.
#![allow(
    unsafe_code,
    reason = "the NSS entry points are C functions filling C structures"
)]

pub mod cache;
mod ffi;

pub use cache::{Group, Passwd};
