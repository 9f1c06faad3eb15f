//! Empty on purpose: the programs are the binary in `main.rs`, built for the BPF target by the
//! daemon's `build.rs`. This library target only lets the daemon name the crate as a
//! build-dependency, so cargo rebuilds the daemon when the programs change.
#![no_std]
