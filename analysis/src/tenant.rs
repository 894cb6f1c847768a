//! The per-tenant view over a store: which key names a tenant, the traces read through
//! the store's typed reads, the view computed by [`tailscope_analysis_core::tenant`].
//!
//! A trace's tenant is the value of the tenant key on any of its spans (the smallest
//! when several differ), else on their resources. The key is the one asked for, else
//! the first of [`TENANT_KEYS`] the store has, else the root's `service.name`. Tokens
//! are those of the trace's innermost LLM client calls.

use crate::AnalysisError;
use tailscope_store::query::TraceSource;

pub use tailscope_analysis_core::tenant::{view, TenantRow, TenantView};

/// Keys tried, in order, when no key is given.
pub const TENANT_KEYS: [&str; 5] = [
    "tenant.id",
    "tenant",
    "enduser.id",
    "user.id",
    "customer.id",
];

/// What to show.
#[derive(Debug, Clone, Default)]
pub struct TenantOptions {
    /// The tail percentile (0 means the default, 99).
    pub percentile: f64,
    /// The attribute that names a tenant (default: the first of [`TENANT_KEYS`] found).
    pub key: Option<String>,
}

/// The per-tenant view over the stored analysis (run [`crate::update`] first).
pub fn tenants(
    source: &impl TraceSource,
    opts: &TenantOptions,
) -> Result<TenantView, AnalysisError> {
    let percentile = if opts.percentile == 0.0 {
        99.0
    } else {
        opts.percentile
    };
    crate::Options { percentile }.check()?;
    let found = if let Some(k) = &opts.key {
        Some((k.as_str(), source.key_presence(k)?))
    } else {
        let mut found = None;
        for k in TENANT_KEYS {
            let at = source.key_presence(k)?;
            if at.anywhere() {
                found = Some((k, at));
                break;
            }
        }
        found
    };
    let traces = source.tenant_traces(found)?;
    let key = found.map_or("service.name", |(k, _)| k).to_owned();
    Ok(view(key, percentile, &traces))
}
