//! Builds the eBPF programs (`../ebpf`, nightly + bpf-linker) and leaves the object in
//! `OUT_DIR`, where `bpf.rs` embeds it with `include_bytes_aligned!`.
use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?;
    let ebpf_dir = std::path::Path::new(&manifest_dir).join("../ebpf");
    let ebpf_dir = ebpf_dir
        .to_str()
        .context("the eBPF crate's path is not UTF-8")?;
    let package = aya_build::Package {
        name: "hotspotd-ebpf",
        root_dir: ebpf_dir,
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
        .context("building the eBPF programs (ebpf/) failed; the compiler says why above. If nightly, rust-src or bpf-linker is missing, run scripts/bootstrap.sh")
}
