//! Remote collection: the bearer token on both receivers (401 / UNAUTHENTICATED,
//! counted, nothing stored) and TLS on both, with a certificate made here.

use super::{good_span, request, MemorySink};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use std::path::Path;
use std::sync::Arc;
use tailscope_ingest::{BearerToken, Collector, CollectorConfig, IngestStats, Pipeline, TlsFiles};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

const TOKEN: &str = "s3cret-t0ken";

async fn start(tls: Option<TlsFiles>) -> (Collector, Arc<MemorySink>, Arc<IngestStats>) {
    let sink = Arc::new(MemorySink::default());
    let stats = Arc::new(IngestStats::default());
    let cfg = CollectorConfig {
        grpc: Some("127.0.0.1:0".parse().unwrap()),
        http: Some("127.0.0.1:0".parse().unwrap()),
        token: Some(BearerToken::new(TOKEN, "in the test").unwrap()),
        tls,
        ..CollectorConfig::default()
    };
    let c = Collector::start(&cfg, Pipeline::new(sink.clone(), stats.clone()))
        .await
        .unwrap();
    (c, sink, stats)
}

fn with_auth<T>(msg: T, auth: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(a) = auth {
        r.metadata_mut().insert("authorization", a.parse().unwrap());
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_receivers_require_the_token() {
    let (c, sink, stats) = start(None).await;
    let url = format!("http://{}/v1/traces", c.http_addr.unwrap());
    let http = reqwest::Client::new();
    let body = request(vec![good_span(1)]).encode_to_vec();
    let right = format!("Bearer {TOKEN}");
    let wrong = format!("Bearer {TOKEN}x");
    for auth in [None, Some(wrong.as_str()), Some("Basic czNjcmV0LXQwa2Vu")] {
        let mut r = http
            .post(&url)
            .header("content-type", "application/json")
            .body("{}");
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        let resp = r.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{auth:?}");
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(v["code"], 16, "{v}");
        assert!(
            v["message"].as_str().unwrap().contains("bearer token"),
            "{v}"
        );
    }
    assert_eq!(sink.spans(), 0);
    let resp = http
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .header("authorization", &right)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(sink.spans(), 1);

    let mut client = TraceServiceClient::connect(format!("http://{}", c.grpc_addr.unwrap()))
        .await
        .unwrap();
    for auth in [None, Some(wrong.as_str())] {
        let err = client
            .export(with_auth(request(vec![good_span(2)]), auth))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{auth:?}: {err}");
        assert!(err.message().contains("bearer token"), "{err}");
    }
    assert_eq!(sink.spans(), 1);
    client
        .export(with_auth(request(vec![good_span(2)]), Some(&right)))
        .await
        .unwrap();
    assert_eq!(sink.spans(), 2);
    let s = stats.snapshot();
    assert_eq!(s.unauthenticated_requests, 5);
    assert_eq!(s.spans_accepted, 2);
    c.shutdown().await;
}

/// A CA and a certificate for localhost / 127.0.0.1 signed by it, in `dir`.
fn certificates(dir: &Path) -> (Vec<u8>, TlsFiles) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "tailscope test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &Issuer::from_params(&ca, &ca_key))
        .unwrap();
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&files.cert, leaf.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    (ca_cert.pem().into_bytes(), files)
}

/// One HTTP/1.1 request over TLS; the answer's status line.
async fn https_post(addr: std::net::SocketAddr, ca_pem: &[u8], auth: &str, body: &[u8]) -> String {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem).unwrap())
        .unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/x-protobuf\r\n\
         authorization: {auth}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_both_receivers() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, files) = certificates(dir.path());
    let (c, sink, stats) = start(Some(files)).await;
    let right = format!("Bearer {TOKEN}");
    let body = request(vec![good_span(1)]).encode_to_vec();

    let http = c.http_addr.unwrap();
    assert_eq!(
        https_post(http, &ca_pem, &right, &body).await,
        "HTTP/1.1 200 OK"
    );
    assert_eq!(
        https_post(http, &ca_pem, "Bearer nope", &body).await,
        "HTTP/1.1 401 Unauthorized"
    );
    // plain HTTP to the TLS port gets no answer
    let plain = reqwest::Client::new()
        .post(format!("http://{http}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .header("authorization", &right)
        .body(body.clone())
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
    assert_eq!(sink.spans(), 1);

    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&ca_pem))
        .domain_name("localhost");
    let channel =
        tonic::transport::Endpoint::from_shared(format!("https://{}", c.grpc_addr.unwrap()))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
    let mut client = TraceServiceClient::new(channel);
    client
        .export(with_auth(request(vec![good_span(2)]), Some(&right)))
        .await
        .unwrap();
    let err = client
        .export(with_auth(request(vec![good_span(3)]), None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
    assert_eq!(sink.spans(), 2);
    assert_eq!(stats.snapshot().unauthenticated_requests, 2);
    c.shutdown().await;
}

#[test]
fn unusable_tls_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (_, files) = certificates(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let start = |files: TlsFiles| {
        let cfg = CollectorConfig {
            grpc: Some("127.0.0.1:0".parse().unwrap()),
            http: Some("127.0.0.1:0".parse().unwrap()),
            tls: Some(files),
            ..CollectorConfig::default()
        };
        rt.block_on(Collector::start(
            &cfg,
            Pipeline::new(Arc::new(MemorySink::default()), Arc::default()),
        ))
        .err()
        .expect("must refuse")
        .to_string()
    };
    let missing = dir.path().join("missing.pem");
    let e = start(TlsFiles {
        cert: missing.clone(),
        key: files.key.clone(),
    });
    assert!(e.contains(&missing.display().to_string()), "{e}");
    // the key given as the certificate
    let e = start(TlsFiles {
        cert: files.key.clone(),
        key: files.key.clone(),
    });
    assert!(e.contains("no PEM certificate"), "{e}");
    let e = start(TlsFiles {
        cert: files.cert.clone(),
        key: files.cert.clone(),
    });
    assert!(e.contains("no PEM private key"), "{e}");
}
