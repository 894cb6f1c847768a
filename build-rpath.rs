//! Shared build script: embeds the prebuilt libduckdb directory (DUCKDB_LIB_DIR, set by
//! .cargo/config.toml) as an rpath so binaries and tests find libduckdb.so at run time.
fn main() {
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    if let Ok(dir) = std::env::var("DUCKDB_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
