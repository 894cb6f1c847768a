//! `tailscope compare`: what the slow traces share (the tail against the median band,
//! attribute value by value), or with `--by-tenant` the per-tenant view.

use crate::analyze::Format;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::Path;
use tailscope_analysis::compare::{compare, CompareOptions};
use tailscope_analysis::tenant::{tenants, TenantOptions};
use tailscope_store::query::TraceSource;
use tailscope_store::Store;

#[derive(Args, Debug, Clone)]
pub struct CompareArgs {
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// The tail: traces at or above this percentile, against the 40th–60th band.
    #[arg(long, default_value_t = 99.0)]
    percentile: f64,
    /// Most attribute values listed.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Per tenant instead: traces, tokens, p50, p99 and share of the tail per tenant.
    #[arg(long)]
    by_tenant: bool,
    /// The attribute naming a tenant (default: the first of tenant.id, tenant,
    /// enduser.id, user.id, customer.id the store has, else service.name).
    #[arg(long, value_name = "KEY", requires = "by_tenant")]
    tenant_key: Option<String>,
}

/// Opens an existing store read-write (refusing to create one) and brings its analysis
/// up to date, with a progress bar on stderr while chunks are written.
pub(crate) fn open_analysed(db: &Path) -> Result<Store> {
    if !db.exists() {
        bail!(
            "no store at {}: run `tailscope import` or `tailscope serve` first",
            db.display()
        );
    }
    let store = Store::open(db).with_context(|| format!("opening store {}", db.display()))?;
    crate::analyze::analyse_new(&store, true)
        .with_context(|| format!("analysing {}", db.display()))?;
    Ok(store)
}

pub fn run(db: &Path, args: &CompareArgs) -> Result<()> {
    // before any work: a bad percentile is refused without analysing
    tailscope_analysis::Options {
        percentile: args.percentile,
    }
    .check()?;
    if let Some(live) = crate::live::client::held(db) {
        live.announce("comparing");
        return live.run("/cli", &crate::live::protocol::forwarded_args("compare"));
    }
    let store = open_analysed(db)?;
    print!("{}", output(&store, args)?);
    Ok(())
}

/// What `compare` prints for an analysed source.
pub fn output(store: &impl TraceSource, args: &CompareArgs) -> Result<String> {
    if args.by_tenant {
        let v = tenants(
            store,
            &TenantOptions {
                percentile: args.percentile,
                key: args.tenant_key.clone(),
            },
        )
        .context("computing the per-tenant view")?;
        return Ok(match args.format {
            Format::Text => v.to_text(),
            Format::Json => format!("{}\n", serde_json::to_string(&v)?),
        });
    }
    let c = compare(
        store,
        &CompareOptions {
            percentile: args.percentile,
            limit: args.limit,
        },
    )
    .context("comparing the tail with the median band")?;
    Ok(match args.format {
        Format::Text => c.to_text(),
        Format::Json => format!("{}\n", serde_json::to_string(&c)?),
    })
}
