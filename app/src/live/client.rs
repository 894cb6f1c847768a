//! The live service's client: the commands send their work here when another process
//! holds the store.

use super::protocol::{from_ipc, info_path, is_held, LiveInfo, Reply};
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;
use tailscope_store::{RecordBatch, StoreError};

/// The running process that holds `db`, if one does.
pub fn held(db: &Path) -> Option<Client> {
    Client::find(db)
}

/// A client of the live service of the process that holds `db`.
pub struct Client {
    pub info: LiveInfo,
    agent: ureq::Agent,
}

impl Client {
    /// The running process that holds `db`, from `<db>.live`; `None` when there is no
    /// such file or its process no longer answers.
    pub fn find(db: &Path) -> Option<Client> {
        let text = std::fs::read(info_path(db)).ok()?;
        let info: LiveInfo = serde_json::from_slice(&text).ok()?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let c = Client { info, agent };
        // a file left by a process that died: nobody listens there
        let addr = c.info.url.strip_prefix("http://")?.parse().ok()?;
        std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1)).ok()?;
        Some(c)
    }

    fn post(&self, route: &str, content_type: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        let url = format!("{}{route}", self.info.url);
        let mut resp = self
            .agent
            .post(&url)
            .header("Authorization", &format!("Bearer {}", self.info.token))
            .header("Content-Type", content_type)
            .send(body)
            .with_context(|| {
                format!(
                    "asking the running tailscope process (pid {}) at {url}",
                    self.info.pid
                )
            })?;
        let status = resp.status().as_u16();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .context("reading the running process's answer")?;
        Ok((status, bytes))
    }

    /// Runs read-only SQL in the running process.
    pub fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let (status, bytes) = self.post("/query", "text/plain", sql.as_bytes())?;
        if status != 200 {
            anyhow::bail!("{}", String::from_utf8_lossy(&bytes).trim());
        }
        from_ipc(&bytes)
    }

    /// Runs a command in the running process; prints what it printed, fails with its
    /// error.
    pub fn run<T: Serialize>(&self, route: &str, req: &T) -> Result<()> {
        let (status, bytes) = self.post(route, "application/json", &serde_json::to_vec(req)?)?;
        if status != 200 {
            anyhow::bail!("{}", String::from_utf8_lossy(&bytes).trim());
        }
        let reply: Reply =
            serde_json::from_slice(&bytes).context("the running process's answer is not JSON")?;
        print!("{}", reply.stdout);
        match reply.error {
            Some(e) => anyhow::bail!("{e}"),
            None => Ok(()),
        }
    }

    /// The line said on stderr when work goes to the running process.
    pub fn announce(&self, what: &str) {
        eprintln!(
            "the store is held by a running tailscope process (pid {}); {what} through it",
            self.info.pid
        );
    }
}

/// Opening `db` failed with `e`: the running process to talk to instead, or the error
/// as one sentence naming the store.
pub fn held_by_other(db: &Path, e: StoreError) -> Result<Client> {
    if is_held(&e) {
        if let Some(c) = Client::find(db) {
            return Ok(c);
        }
        anyhow::bail!(
            "cannot open {}: it is held by another tailscope process that offers no live access (an older version, or it is still starting); stop it or retry",
            db.display()
        );
    }
    Err(anyhow::Error::new(e).context(format!("opening store {}", db.display())))
}
