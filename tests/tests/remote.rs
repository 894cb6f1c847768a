//! Remote collection with the OpenTelemetry Python SDK's own exporters: the bearer
//! token from `OTEL_EXPORTER_OTLP_HEADERS` (URL-encoded, as the OTel spec says),
//! wrong and missing tokens refused (401 / UNAUTHENTICATED), counted and not stored,
//! and TLS over gRPC and HTTP with `OTEL_EXPORTER_OTLP_CERTIFICATE`.

use super::{bin, one, python};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "tok-3f9a.Remote_test";

/// Exports one span named `remote <run_id>` of service `remote-<run_id>` with the SDK's
/// exporter, calling it directly: prints whether it succeeded and what it logged.
const EXPORT_ONE: &str = r#"
import json, logging, sys
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

protocol, endpoint, run_id = sys.argv[1:4]
logged = []
class Keep(logging.Handler):
    def emit(self, record):
        logged.append(record.getMessage())
logging.getLogger().addHandler(Keep())
logging.getLogger().setLevel(logging.WARNING)
if protocol == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    exporter = OTLPSpanExporter(endpoint=endpoint)  # http:// plain, https:// TLS
else:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    exporter = OTLPSpanExporter(endpoint=endpoint + "/v1/traces")
ended = []
class Collect(SpanProcessor):
    def on_end(self, span):
        ended.append(span)
provider = TracerProvider(resource=Resource.create({"service.name": "remote-" + run_id}))
provider.add_span_processor(Collect())
with provider.get_tracer("remote-test").start_as_current_span("remote " + run_id):
    pass
result = exporter.export(ended)
print(json.dumps({"ok": result == SpanExportResult.SUCCESS, "logged": logged}))
"#;

struct Serve {
    child: Child,
    grpc: String,
    http: String,
    rest: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl Serve {
    fn start(db: &Path, token_env: Option<&str>, extra: &[&str]) -> Result<Serve> {
        let mut cmd = Command::new(bin());
        cmd.arg("--db")
            .arg(db)
            .args(["serve", "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .args(["--status-every", "0", "--no-gpu"])
            .args(extra)
            .env_remove("TAILSCOPE_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(t) = token_env {
            cmd.env("TAILSCOPE_TOKEN", t);
        }
        let mut child = cmd.spawn().context("starting tailscope serve")?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let first = lines.next().context("serve printed nothing")??;
        let after = |tag: &str| -> Result<String> {
            Ok(first
                .split(tag)
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .with_context(|| format!("no {tag} in {first:?}"))?
                .to_owned())
        };
        let (grpc, http) = (after("OTLP/gRPC ")?, after("OTLP/HTTP ")?);
        let rest = std::thread::Builder::new()
            .name("serve-stdout".into())
            .spawn(move || lines.map_while(std::result::Result::ok).collect())?;
        Ok(Serve {
            child,
            grpc,
            http,
            rest: Some(rest),
        })
    }

    /// SIGINT, wait; what serve printed after its first line.
    fn stop(mut self) -> Result<String> {
        Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()?;
        let t = Instant::now();
        while self.child.try_wait()?.is_none() {
            if t.elapsed() > Duration::from_secs(30) {
                self.child.kill()?;
                bail!("serve did not stop within 30 s of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = self.child.wait()?;
        let out = self
            .rest
            .take()
            .and_then(|r| r.join().ok())
            .unwrap_or_default()
            .join("\n");
        if !status.success() {
            bail!("serve exited with {status}: {out}");
        }
        Ok(out)
    }
}

impl Drop for Serve {
    /// A failed test leaves no collector behind.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The Python SDK exports one span; (exported, what it logged).
fn export_one(
    protocol: &str,
    endpoint: &str,
    run_id: &str,
    token: Option<&str>,
    ca: Option<&Path>,
) -> Result<(bool, String)> {
    let mut cmd = Command::new(python());
    cmd.args(["-c", EXPORT_ONE, protocol, endpoint, run_id])
        .env_remove("OTEL_EXPORTER_OTLP_HEADERS")
        .env_remove("OTEL_EXPORTER_OTLP_CERTIFICATE")
        // `requests` lets these override the exporter's certificate (psf/requests#3829)
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .env("OTEL_EXPORTER_OTLP_TIMEOUT", "10");
    if let Some(t) = token {
        // the spec's form: URL-encoded values, so the space is %20
        cmd.env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("authorization=Bearer%20{t}"),
        );
    }
    if let Some(ca) = ca {
        cmd.env("OTEL_EXPORTER_OTLP_CERTIFICATE", ca);
    }
    let out = cmd.output()?;
    if !out.status.success() {
        bail!(
            "{protocol} {run_id}: python failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| String::from_utf8_lossy(&out.stdout).into_owned())?;
    Ok((v["ok"] == true, v["logged"].to_string()))
}

fn stored(db: &Path, run_id: &str) -> Result<i64> {
    let n = one(
        db,
        &format!("SELECT count(*) FROM spans WHERE service_name = 'remote-{run_id}'"),
    )?;
    n.as_i64().context("count")
}

/// The count in serve's last line "... N unauthenticated requests".
fn unauthenticated(out: &str) -> Option<u64> {
    let line = out.lines().find(|l| l.starts_with("stored "))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let k = words.iter().position(|w| *w == "unauthenticated")?;
    words.get(k.checked_sub(1)?)?.parse().ok()
}

#[test]
fn python_sdk_needs_the_bearer_token() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("remote.duckdb");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n"))?;
    // the token from a file; --allow-remote on a loopback address (a test cannot listen
    // on the network), which the token makes legal
    let server = Serve::start(
        &db,
        Some("not-this-one"),
        &[
            "--allow-remote",
            "--token-file",
            token_file.to_str().unwrap_or_default(),
        ],
    )?;
    let grpc = format!("http://{}", server.grpc);
    let http = format!("http://{}", server.http);
    let mut refused = 0;
    for (proto, endpoint) in [("grpc", &grpc), ("http/protobuf", &http)] {
        let tag = proto.replace('/', "-");
        let (ok, logged) = export_one(proto, endpoint, &format!("{tag}-right"), Some(TOKEN), None)?;
        assert!(ok, "{proto} with the token: {logged}");
        for (case, token) in [("wrong", Some("not-this-one")), ("missing", None)] {
            let (ok, logged) = export_one(proto, endpoint, &format!("{tag}-{case}"), token, None)?;
            assert!(!ok, "{proto} with a {case} token was accepted");
            let says = if proto == "grpc" {
                "UNAUTHENTICATED"
            } else {
                "401"
            };
            assert!(logged.contains(says), "{proto} {case}: {logged}");
            refused += 1;
        }
    }
    let out = server.stop()?;
    assert_eq!(unauthenticated(&out), Some(refused), "{out}");
    for tag in ["grpc", "http-protobuf"] {
        assert_eq!(stored(&db, &format!("{tag}-right"))?, 1, "{tag}");
        assert_eq!(stored(&db, &format!("{tag}-wrong"))?, 0, "{tag}");
        assert_eq!(stored(&db, &format!("{tag}-missing"))?, 0, "{tag}");
    }

    // TAILSCOPE_TOKEN works too, and a loopback collector enforces a token it is given
    let server = Serve::start(&db, Some(TOKEN), &[])?;
    let (ok, logged) = export_one(
        "grpc",
        &format!("http://{}", server.grpc),
        "env",
        Some(TOKEN),
        None,
    )?;
    assert!(ok, "{logged}");
    let (ok, _) = export_one(
        "http/protobuf",
        &format!("http://{}", server.http),
        "env-missing",
        None,
        None,
    )?;
    assert!(!ok);
    let out = server.stop()?;
    assert_eq!(unauthenticated(&out), Some(1), "{out}");
    assert_eq!(stored(&db, "env")?, 1);
    assert_eq!(stored(&db, "env-missing")?, 0);

    // --allow-remote without a token: refused with the sentence, exit 2
    let o = Command::new(bin())
        .arg("--db")
        .arg(&db)
        .args([
            "serve",
            "--allow-remote",
            "--grpc",
            "0.0.0.0:0",
            "--http",
            "0.0.0.0:0",
        ])
        .env_remove("TAILSCOPE_TOKEN")
        .output()?;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(
            "--allow-remote needs a bearer token for clients to send: pass --token-file PATH or set TAILSCOPE_TOKEN"
        ),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    Ok(())
}

/// A CA (what the SDK is told to trust) and a certificate for localhost and 127.0.0.1
/// signed by it; (ca, cert, key) files in `dir`.
pub(crate) fn certificates(dir: &Path) -> Result<[std::path::PathBuf; 3]> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "tailscope test CA");
    let ca_cert = ca.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?
        .signed_by(&key, &Issuer::from_params(&ca, &ca_key))?;
    let files = [
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    ];
    std::fs::write(&files[0], ca_cert.pem())?;
    std::fs::write(&files[1], leaf.pem())?;
    std::fs::write(&files[2], key.serialize_pem())?;
    Ok(files)
}

#[test]
fn python_sdk_exports_over_tls() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("tls.duckdb");
    let [ca, cert, key] = certificates(dir.path())?;
    let server = Serve::start(
        &db,
        Some(TOKEN),
        &[
            "--allow-remote",
            "--tls-cert",
            cert.to_str().unwrap_or_default(),
            "--tls-key",
            key.to_str().unwrap_or_default(),
        ],
    )?;
    let grpc = format!("https://{}", server.grpc);
    let http = format!("https://{}", server.http);
    for (proto, endpoint) in [("grpc", &grpc), ("http/protobuf", &http)] {
        let tag = proto.replace('/', "-");
        let (ok, logged) = export_one(
            proto,
            endpoint,
            &format!("tls-{tag}"),
            Some(TOKEN),
            Some(&ca),
        )?;
        assert!(ok, "{proto} over TLS: {logged}");
        let (ok, logged) = export_one(
            proto,
            endpoint,
            &format!("tls-{tag}-wrong"),
            Some("nope"),
            Some(&ca),
        )?;
        assert!(!ok, "{proto} over TLS with a wrong token: {logged}");
    }
    // a client that speaks plain HTTP to the TLS port gets nowhere
    let (ok, _) = export_one(
        "http/protobuf",
        &format!("http://{}", server.http),
        "tls-plain",
        Some(TOKEN),
        None,
    )?;
    assert!(!ok);
    let out = server.stop()?;
    assert_eq!(unauthenticated(&out), Some(2), "{out}");
    assert_eq!(stored(&db, "tls-grpc")?, 1);
    assert_eq!(stored(&db, "tls-http-protobuf")?, 1);
    assert_eq!(stored(&db, "tls-grpc-wrong")?, 0);
    assert_eq!(stored(&db, "tls-http-protobuf-wrong")?, 0);
    assert_eq!(stored(&db, "tls-plain")?, 0);
    Ok(())
}
