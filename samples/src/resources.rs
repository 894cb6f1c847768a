//! The services of the simulated deployment and their OTLP resources.

use tailscope_model::{AttrValue, Attribute, Resource};

/// A service instance emitting telemetry. The discriminant indexes [`Resources::all`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Svc {
    /// `agent-api`, current GenAI semantic conventions.
    AgentApi,
    /// `agent-api` on an older pod with deprecated attribute names.
    AgentApiLegacy,
    /// `support-bot`, instrumented with OpenInference.
    SupportBot,
    /// `agent-worker`, runs async sub-agents.
    AgentWorker,
    /// `batch-summarizer`, a batch tenant sending long documents.
    BatchSummarizer,
    /// `vllm` inference server.
    Vllm,
    /// `mcp-search` tool server.
    McpSearch,
    /// `mcp-crm` tool server.
    McpCrm,
    /// `pg-proxy` (PgBouncer in front of Postgres).
    PgProxy,
    /// `dcgm-exporter` on the GPU host (metrics only).
    Dcgm,
}

impl Svc {
    pub(crate) const ALL: [Svc; 10] = [
        Svc::AgentApi,
        Svc::AgentApiLegacy,
        Svc::SupportBot,
        Svc::AgentWorker,
        Svc::BatchSummarizer,
        Svc::Vllm,
        Svc::McpSearch,
        Svc::McpCrm,
        Svc::PgProxy,
        Svc::Dcgm,
    ];

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

pub(crate) const GPU_HOST: &str = "gpu-node-07";
pub(crate) const GPU_UUID: &str = "GPU-4c1e9a3b-7d2f-4e8a-b6c1-2f9d0e5a7b13";
pub(crate) const GPU_MODEL: &str = "NVIDIA H200";
pub(crate) const VLLM_ADDRESS: &str = "vllm.inference.svc.cluster.local";

/// All resources of the deployment, indexed by [`Svc`].
#[derive(Debug, Clone)]
pub(crate) struct Resources {
    pub(crate) all: Vec<Resource>,
}

fn s(k: &str, v: &str) -> Attribute {
    Attribute::new(k, AttrValue::Str(v.to_owned()))
}

impl Resources {
    pub(crate) fn new() -> Self {
        let all = Svc::ALL
            .iter()
            .map(|svc| Resource::new(Self::attrs(*svc)))
            .collect();
        Self { all }
    }

    fn attrs(svc: Svc) -> Vec<Attribute> {
        let env = s("deployment.environment.name", "production");
        let py_sdk = |ver: &str| {
            vec![
                s("telemetry.sdk.name", "opentelemetry"),
                s("telemetry.sdk.language", "python"),
                s("telemetry.sdk.version", ver),
            ]
        };
        let mut v = match svc {
            Svc::AgentApi => {
                let mut v = vec![
                    s("service.name", "agent-api"),
                    s("service.version", "2.14.0"),
                    s("service.instance.id", "agent-api-7d9f8c6b5-x2k4q"),
                    s("k8s.pod.name", "agent-api-7d9f8c6b5-x2k4q"),
                    s("host.name", "cpu-node-12"),
                ];
                v.extend(py_sdk("1.38.0"));
                v
            }
            Svc::AgentApiLegacy => {
                let mut v = vec![
                    s("service.name", "agent-api"),
                    s("service.version", "2.9.3"),
                    s("service.instance.id", "agent-api-legacy-5c8d7f9b4-m7wpz"),
                    s("k8s.pod.name", "agent-api-legacy-5c8d7f9b4-m7wpz"),
                    s("host.name", "cpu-node-04"),
                ];
                v.extend(py_sdk("1.26.0"));
                v
            }
            Svc::SupportBot => {
                let mut v = vec![
                    s("service.name", "support-bot"),
                    s("service.version", "0.31.2"),
                    s("service.instance.id", "support-bot-0"),
                    s("host.name", "cpu-node-09"),
                    s("openinference.project.name", "support"),
                ];
                v.extend(py_sdk("1.36.0"));
                v
            }
            Svc::AgentWorker => {
                let mut v = vec![
                    s("service.name", "agent-worker"),
                    s("service.version", "2.14.0"),
                    s("service.instance.id", "agent-worker-6b7c9d8f4-q9r2t"),
                    s("host.name", "cpu-node-12"),
                ];
                v.extend(py_sdk("1.38.0"));
                v
            }
            Svc::BatchSummarizer => {
                let mut v = vec![
                    s("service.name", "batch-summarizer"),
                    s("service.version", "1.2.0"),
                    s("service.instance.id", "batch-summarizer-cron-29384710"),
                    s("host.name", "cpu-node-02"),
                ];
                v.extend(py_sdk("1.38.0"));
                v
            }
            Svc::Vllm => {
                let mut v = vec![
                    s("service.name", "vllm"),
                    s("service.version", "0.11.0"),
                    s("service.instance.id", "vllm-llama-8b-0"),
                    s("host.name", GPU_HOST),
                    s("gpu.model", GPU_MODEL),
                ];
                v.extend(py_sdk("1.38.0"));
                v
            }
            Svc::McpSearch => vec![
                s("service.name", "mcp-search"),
                s("service.version", "0.8.1"),
                s("service.instance.id", "mcp-search-0"),
                s("host.name", "cpu-node-05"),
                s("telemetry.sdk.name", "opentelemetry"),
                s("telemetry.sdk.language", "nodejs"),
                s("telemetry.sdk.version", "2.1.0"),
            ],
            Svc::McpCrm => vec![
                s("service.name", "mcp-crm"),
                s("service.version", "1.4.0"),
                s("service.instance.id", "mcp-crm-0"),
                s("host.name", "cpu-node-06"),
                s("telemetry.sdk.name", "opentelemetry"),
                s("telemetry.sdk.language", "go"),
                s("telemetry.sdk.version", "1.38.0"),
            ],
            Svc::PgProxy => vec![
                s("service.name", "pg-proxy"),
                s("service.version", "1.24.1"),
                s("service.instance.id", "pgbouncer-0"),
                s("host.name", "db-node-01"),
                s("db.system.name", "postgresql"),
            ],
            Svc::Dcgm => vec![
                s("service.name", "dcgm-exporter"),
                s("service.version", "4.2.3-4.1.1"),
                s("host.name", GPU_HOST),
                s("service.instance.id", "dcgm-exporter-gpu-node-07"),
            ],
        };
        v.push(env);
        v
    }

    pub(crate) fn get(&self, svc: Svc) -> &Resource {
        &self.all[svc.index()]
    }
}
