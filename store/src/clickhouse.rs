//! A ClickHouse server over its HTTP interface: the `clickhouse://` source address,
//! and a small blocking client that sends SQL and moves `RowBinary` both ways, over
//! plain HTTP or (`?secure=true`) HTTPS.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What went wrong talking to ClickHouse.
#[derive(Debug, thiserror::Error)]
pub enum ClickHouseError {
    #[error(
        "not a ClickHouse address `{0}`: want clickhouse://[user[:password]@]HOST[:8123]/DATABASE[?secure=true[&ca=PEM]]"
    )]
    Address(String),
    #[error("the CA certificate {path} for ClickHouse: {message}")]
    Ca { path: String, message: String },
    #[error("cannot reach ClickHouse at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("ClickHouse error {code}: {message}")]
    Server { code: String, message: String },
    #[error("ClickHouse answered something unexpected: {0}")]
    Format(String),
}

/// `clickhouse://[user[:password]@]host[:port]/database[?traces_table=NAME]`; with
/// `secure=true` over HTTPS (port 8443 unless given), trusting the Mozilla roots or,
/// with `ca=PATH`, the PEM certificates in that file (a private CA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickHouseUrl {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    pub database: String,
    /// The exporter's span table (`otel_traces` unless `?traces_table=` says otherwise).
    pub traces_table: String,
    /// How late spans may reach the table after newer ones (`?late_secs=`, default
    /// 300): a later run reads again the traces with spans this close to the newest
    /// span an earlier run saw.
    pub late_ns: i64,
    /// HTTPS instead of HTTP (`?secure=true`).
    pub secure: bool,
    /// PEM file of the certificates to trust instead of the Mozilla roots (`?ca=`).
    pub ca: Option<String>,
}

impl std::str::FromStr for ClickHouseUrl {
    type Err = ClickHouseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ClickHouseError::Address(s.to_owned());
        let rest = s.strip_prefix("clickhouse://").ok_or_else(bad)?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, database) = rest.split_once('/').ok_or_else(bad)?;
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((u, p)) => (Some(u.to_owned()), Some(p.to_owned())),
                None => (Some(u.to_owned()), None),
            },
            None => (None, None),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p.parse().map_err(|_| bad())?)),
            None => (hostport, None),
        };
        let database = database.trim_end_matches('/');
        let ident = |x: &str| {
            !x.is_empty()
                && x.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if host.is_empty() || !ident(database) {
            return Err(bad());
        }
        let mut traces_table = "otel_traces".to_owned();
        let mut late_ns = 300_000_000_000;
        let (mut secure, mut ca) = (false, None);
        for kv in query.split('&').filter(|kv| !kv.is_empty()) {
            match kv.split_once('=') {
                Some(("secure", "true" | "1")) => secure = true,
                Some(("secure", "false" | "0")) => secure = false,
                Some(("ca", v)) if !v.is_empty() => ca = Some(v.to_owned()),
                Some(("traces_table", v)) if ident(v) => v.clone_into(&mut traces_table),
                Some(("late_secs", v)) => {
                    late_ns = v
                        .parse::<u32>()
                        .map(|s| i64::from(s) * 1_000_000_000)
                        .map_err(|_| bad())?;
                }
                _ => return Err(bad()),
            }
        }
        if ca.is_some() && !secure {
            return Err(bad());
        }
        Ok(Self {
            host: host.to_owned(),
            port: port.unwrap_or(if secure { 8443 } else { 8123 }),
            user,
            password,
            database: database.to_owned(),
            traces_table,
            late_ns,
            secure,
            ca,
        })
    }
}

impl ClickHouseUrl {
    /// The address without the password, for messages.
    pub fn shown(&self) -> String {
        let user = self
            .user
            .as_deref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        format!(
            "clickhouse://{user}{}:{}/{}{}",
            self.host,
            self.port,
            self.database,
            if self.secure { "?secure=true" } else { "" }
        )
    }

    /// `` `database`.`table` `` quoted for SQL.
    pub fn table(&self, name: &str) -> String {
        format!("`{}`.`{name}`", self.database)
    }
}

/// A ClickHouse server reached over HTTP; counts the bytes each way.
pub struct ClickHouse {
    pub url: ClickHouseUrl,
    http: String,
    agent: ureq::Agent,
    received: AtomicU64,
    sent: AtomicU64,
}

impl ClickHouse {
    /// Connects and checks the server answers.
    pub fn connect(url: ClickHouseUrl) -> Result<Self, ClickHouseError> {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)));
        if let Some(path) = &url.ca {
            let ca_error = |message: String| ClickHouseError::Ca {
                path: path.clone(),
                message,
            };
            let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
            let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                    Ok(_) => None,
                    Err(e) => Some(Err(ca_error(e.to_string()))),
                })
                .collect::<Result<_, _>>()?;
            if certs.is_empty() {
                return Err(ca_error("no PEM certificate in it".into()));
            }
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                    .build(),
            );
        }
        let agent = config.build().new_agent();
        let scheme = if url.secure { "https" } else { "http" };
        let c = Self {
            http: format!("{scheme}://{}:{}/", url.host, url.port),
            url,
            agent,
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        };
        let one = c.query("SELECT 1 FORMAT TabSeparated")?;
        if one.trim_ascii() != b"1" {
            return Err(ClickHouseError::Format(format!(
                "`SELECT 1` gave {:?}",
                String::from_utf8_lossy(&one)
            )));
        }
        Ok(c)
    }

    /// Bytes received from and sent to the server so far.
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.received.load(Ordering::Relaxed),
            self.sent.load(Ordering::Relaxed),
        )
    }

    /// Sends `body` with `query` (if any) in the URL; the answer's bytes.
    fn post(&self, query: Option<&str>, body: &[u8]) -> Result<Vec<u8>, ClickHouseError> {
        // no `database` parameter: every statement names its tables in full, and one
        // that creates the database must run before it exists
        let mut req = self.agent.post(&self.http);
        if let Some(q) = query {
            req = req.query("query", q);
        }
        if let Some(u) = &self.url.user {
            req = req.header("X-ClickHouse-User", u);
        }
        if let Some(p) = &self.url.password {
            req = req.header("X-ClickHouse-Key", p);
        }
        let unreachable = |e: ureq::Error| ClickHouseError::Unreachable {
            url: self.url.shown(),
            message: e.to_string(),
        };
        self.sent.fetch_add(body.len() as u64, Ordering::Relaxed);
        let mut resp = req.send(body).map_err(unreachable)?;
        let status = resp.status().as_u16();
        let code = resp
            .headers()
            .get("X-ClickHouse-Exception-Code")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .map_err(unreachable)?;
        self.received
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if status != 200 || code.is_some() {
            let text = String::from_utf8_lossy(&bytes);
            return Err(ClickHouseError::Server {
                code: code.unwrap_or_else(|| format!("HTTP {status}")),
                message: text.trim().chars().take(2000).collect(),
            });
        }
        Ok(bytes)
    }

    /// Runs `sql` (its `FORMAT` clause says what comes back) and returns the answer.
    pub fn query(&self, sql: &str) -> Result<Vec<u8>, ClickHouseError> {
        self.post(None, sql.as_bytes())
    }

    /// Runs a statement that returns nothing (DDL).
    pub fn execute(&self, sql: &str) -> Result<(), ClickHouseError> {
        self.post(None, sql.as_bytes()).map(drop)
    }

    /// `INSERT ... FORMAT RowBinary` with `rows` as the body.
    pub fn insert(&self, insert: &str, rows: &[u8]) -> Result<(), ClickHouseError> {
        self.post(Some(insert), rows).map(drop)
    }

    /// The columns of `table` in the source's database, in order.
    pub fn columns(&self, table: &str) -> Result<Vec<String>, ClickHouseError> {
        let sql = format!(
            "SELECT name FROM system.columns WHERE database = '{}' AND table = '{table}' ORDER BY position FORMAT TabSeparated",
            self.url.database
        );
        let out = self.query(&sql)?;
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .map(str::to_owned)
            .collect())
    }
}

/// ClickHouse SQL: the `DateTime64` column `column` in `[from_ns, to_ns)`.
pub(crate) fn ns_window(column: &str, from_ns: i64, to_ns: i64) -> String {
    format!(
        "{column} >= fromUnixTimestamp64Nano(toInt64({from_ns})) AND {column} < fromUnixTimestamp64Nano(toInt64({to_ns}))"
    )
}

/// A ClickHouse string literal: its backslash escapes, where DuckDB's
/// ([`crate::sql_lit`]) only doubles quotes.
pub(crate) fn ch_lit(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let u: ClickHouseUrl = "clickhouse://bob:s3cret@ch.internal:9000/otel?traces_table=spans"
            .parse()
            .unwrap();
        assert_eq!(u.host, "ch.internal");
        assert_eq!(u.port, 9000);
        assert_eq!(u.user.as_deref(), Some("bob"));
        assert_eq!(u.password.as_deref(), Some("s3cret"));
        assert_eq!(u.database, "otel");
        assert_eq!(u.traces_table, "spans");
        assert_eq!(u.shown(), "clickhouse://bob@ch.internal:9000/otel");
        let d: ClickHouseUrl = "clickhouse://localhost/default".parse().unwrap();
        assert_eq!((d.port, d.traces_table.as_str()), (8123, "otel_traces"));
        assert_eq!(d.late_ns, 300_000_000_000);
        let l: ClickHouseUrl = "clickhouse://h/db?late_secs=0".parse().unwrap();
        assert_eq!(l.late_ns, 0);
        assert!(!l.secure);
        let tls: ClickHouseUrl = "clickhouse://h/db?secure=true&ca=/etc/ch/ca.pem"
            .parse()
            .unwrap();
        assert_eq!(
            (tls.secure, tls.port, tls.ca.as_deref()),
            (true, 8443, Some("/etc/ch/ca.pem"))
        );
        assert_eq!(tls.shown(), "clickhouse://h:8443/db?secure=true");
        let port: ClickHouseUrl = "clickhouse://h:9443/db?secure=1".parse().unwrap();
        assert_eq!((port.secure, port.port, port.ca), (true, 9443, None));
        for bad in [
            "http://localhost:8123/db",
            "clickhouse://localhost:8123",
            "clickhouse://localhost:x/db",
            "clickhouse://localhost/db;drop",
            "clickhouse://localhost/db?traces_table=a`b",
            "clickhouse:///db",
            "clickhouse://h/db?secure=yes",
            "clickhouse://h/db?ca=/x.pem",
        ] {
            assert!(bad.parse::<ClickHouseUrl>().is_err(), "{bad}");
        }
    }
}
