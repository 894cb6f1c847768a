//! `serve --allow-remote` and its bearer token, TLS options: what the command line
//! refuses, with which exit code and sentence (token enforcement itself is tested in
//! ingest and, with the Python SDK, in tests/e2e).

use super::stderr;
use std::path::Path;
use std::process::{Command, Output};

fn serve(db: &Path, token_env: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tailscope"));
    c.arg("--db")
        .arg(db)
        .args(["serve", "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(["--status-every", "0", "--no-gpu"])
        .args(args)
        .env_remove("TAILSCOPE_TOKEN");
    if let Some(t) = token_env {
        c.env("TAILSCOPE_TOKEN", t);
    }
    c.output().expect("run tailscope")
}

#[test]
fn allow_remote_without_a_token_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.duckdb");
    for env in [None, Some(""), Some("  ")] {
        let o = serve(&db, env, &["--allow-remote"]);
        assert_eq!(o.status.code(), Some(2), "{env:?}: {}", stderr(&o));
        let e = stderr(&o);
        assert_eq!(
            e.trim(),
            "error: --allow-remote needs a bearer token for clients to send: pass --token-file PATH or set TAILSCOPE_TOKEN",
            "{env:?}"
        );
    }
    assert!(!db.exists(), "refused before the store is opened");

    // a token file that cannot be used: named, runtime error
    let missing = dir.path().join("no-token");
    let o = serve(
        &db,
        None,
        &["--allow-remote", "--token-file", missing.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(missing.to_str().unwrap()),
        "{}",
        stderr(&o)
    );
    let empty = dir.path().join("empty-token");
    std::fs::write(&empty, "\n").unwrap();
    let o = serve(
        &db,
        None,
        &["--allow-remote", "--token-file", empty.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "the token in the file {} is empty",
            empty.display()
        )),
        "{}",
        stderr(&o)
    );

    // TLS needs both files
    let o = serve(&db, Some("t0ken"), &["--tls-cert", "cert.pem"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--tls-key"), "{}", stderr(&o));
    // and says which file it cannot use
    let o = serve(
        &db,
        Some("t0ken"),
        &[
            "--tls-cert",
            "/nonexistent/cert.pem",
            "--tls-key",
            "/nonexistent/key.pem",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot use /nonexistent/cert.pem for TLS"),
        "{}",
        stderr(&o)
    );
}
