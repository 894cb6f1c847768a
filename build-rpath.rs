//! Shared build script: embeds the prebuilt libduckdb directory (DUCKDB_LIB_DIR, set by
//! .cargo/config.toml) as an rpath so binaries and tests find libduckdb.so at run time,
//! and names the target triple (`TAILSCOPE_BUILD_TARGET`) for the dependency-DAG test.
fn main() {
    // the target triple, for tests that resolve `cargo metadata` for this platform only
    if let Ok(target) = std::env::var("TARGET") {
        println!("cargo:rustc-env=TAILSCOPE_BUILD_TARGET={target}");
    }
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    if let Ok(dir) = std::env::var("DUCKDB_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
