//! The simulated applications: routes, agents, tools and token budgets.

use crate::resources::Svc;

/// A tool an agent can call over MCP.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ToolDef {
    pub(crate) name: &'static str,
    /// Median server-side duration in ms.
    pub(crate) median_ms: f64,
    /// Tokens the result adds to the next prompt (min, max).
    pub(crate) result: (i64, i64),
}

const fn tool(name: &'static str, median_ms: f64, lo: i64, hi: i64) -> ToolDef {
    ToolDef {
        name,
        median_ms,
        result: (lo, hi),
    }
}

const COPILOT_TOOLS: [ToolDef; 4] = [
    tool("web_search", 320.0, 150, 450),
    tool("fetch_url", 380.0, 250, 700),
    tool("calculator", 35.0, 10, 40),
    tool("get_weather", 160.0, 40, 120),
];
const SUPPORT_TOOLS: [ToolDef; 4] = [
    tool("get_customer", 90.0, 60, 200),
    tool("list_tickets", 150.0, 150, 400),
    tool("refund_status", 130.0, 40, 120),
    tool("lookup_order", 110.0, 80, 220),
];
const RESEARCH_TOOLS: [ToolDef; 4] = [
    tool("web_search", 320.0, 120, 350),
    tool("search_arxiv", 450.0, 150, 400),
    tool("fetch_url", 380.0, 250, 600),
    tool("read_pdf", 700.0, 300, 800),
];

/// Which application a conversation talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum App {
    /// General assistant with web tools (`agent-api`, `POST /v1/chat`).
    Copilot,
    /// Customer support bot over a CRM (`support-bot`, OpenInference).
    Support,
    /// Research agent with fan-outs and sub-agents (`agent-api`, `POST /v1/research`).
    Research,
}

impl App {
    pub(crate) fn route(self) -> &'static str {
        match self {
            App::Copilot => "/v1/chat",
            App::Support => "/support/chat",
            App::Research => "/v1/research",
        }
    }

    pub(crate) fn agent(self) -> &'static str {
        match self {
            App::Copilot => "copilot",
            App::Support => "support_agent",
            App::Research => "research_planner",
        }
    }

    pub(crate) fn system_tokens(self) -> i64 {
        match self {
            App::Copilot => 1_400,
            App::Support => 900,
            App::Research => 2_100,
        }
    }

    /// Retrieved-context tokens added per turn (min, max).
    pub(crate) fn context_tokens(self) -> (i64, i64) {
        match self {
            App::Copilot => (300, 900),
            App::Support => (250, 700),
            App::Research => (500, 1_200),
        }
    }

    pub(crate) fn tools(self) -> &'static [ToolDef] {
        match self {
            App::Copilot => &COPILOT_TOOLS,
            App::Support => &SUPPORT_TOOLS,
            App::Research => &RESEARCH_TOOLS,
        }
    }

    /// The tool an N+1 loop calls over and over (small per-item results).
    pub(crate) fn item_tool(self) -> ToolDef {
        match self {
            App::Copilot => tool("get_document", 90.0, 40, 120),
            App::Support => tool("lookup_order", 110.0, 40, 120),
            App::Research => tool("get_paper", 120.0, 60, 150),
        }
    }

    pub(crate) fn mcp(self) -> Svc {
        match self {
            App::Support => Svc::McpCrm,
            App::Copilot | App::Research => Svc::McpSearch,
        }
    }

    pub(crate) fn mcp_address(self) -> &'static str {
        match self {
            App::Support => "mcp-crm.tools.svc.cluster.local",
            App::Copilot | App::Research => "mcp-search.tools.svc.cluster.local",
        }
    }

    pub(crate) fn data_source(self) -> &'static str {
        match self {
            App::Copilot => "kb-general",
            App::Support => "kb-support-articles",
            App::Research => "papers-index",
        }
    }

    /// Tool-calling steps before the final answer (min, max).
    pub(crate) fn tool_steps(self) -> (i64, i64) {
        match self {
            App::Copilot => (0, 1),
            App::Support | App::Research => (1, 2),
        }
    }

    /// Output tokens of the final answer (min, max).
    pub(crate) fn answer_tokens(self) -> (i64, i64) {
        match self {
            App::Copilot => (150, 350),
            App::Support => (100, 220),
            App::Research => (220, 400),
        }
    }
}
