//! A generated workload moved onto another replica of the inference server, so that
//! several workloads (say one on a healthy replica and one on a slow one) can share a
//! store the way traffic behind a load balancer does.

use crate::config::Workload;
use crate::resources::{GPU_HOST, VLLM_ADDRESS};
use std::collections::HashMap;
use tailscope_model::{AttrValue, Attribute, Resource};

/// The address of replica `k` (0 is the generator's own).
pub fn replica_address(k: usize) -> String {
    if k == 0 {
        VLLM_ADDRESS.to_owned()
    } else {
        VLLM_ADDRESS.replacen("vllm.", &format!("vllm-{k}."), 1)
    }
}

/// The GPU host of replica `k` (0 is the generator's own, `gpu-node-07`).
pub fn replica_host(k: usize) -> String {
    if k == 0 {
        GPU_HOST.to_owned()
    } else {
        format!("gpu-node-{:02}", 7 + k)
    }
}

fn rename(attrs: &mut [Attribute], from: &str, to: &str) {
    for a in attrs {
        if let AttrValue::Str(s) = &mut a.value {
            if s == from {
                to.clone_into(s);
            }
        }
    }
}

impl Workload {
    /// The same workload served by replica `k` of the inference server: every
    /// `server.address` of the server becomes [`replica_address`]`(k)` (attribute and
    /// promoted column), and the GPU host's resources (vLLM, DCGM), metric attributes
    /// and instance ids move to [`replica_host`]`(k)`, with resource ids recomputed.
    /// `k = 0` changes nothing.
    #[must_use]
    pub fn on_replica(mut self, k: usize) -> Self {
        if k == 0 {
            return self;
        }
        let (address, host) = (replica_address(k), replica_host(k));
        let mut ids: HashMap<i64, i64> = HashMap::new();
        for r in &mut self.batch.resources {
            if r.attributes.iter().any(|a| {
                a.key == "host.name" && matches!(&a.value, AttrValue::Str(s) if s == GPU_HOST)
            }) {
                let mut attrs = std::mem::take(&mut r.attributes);
                rename(&mut attrs, GPU_HOST, &host);
                for a in &mut attrs {
                    if a.key == "service.instance.id" {
                        if let AttrValue::Str(s) = &mut a.value {
                            *s = format!("{s}-r{k}");
                        }
                    }
                }
                let moved = Resource::new(attrs);
                ids.insert(r.id, moved.id);
                *r = moved;
            }
        }
        for s in &mut self.batch.spans {
            rename(&mut s.attributes, VLLM_ADDRESS, &address);
            if s.promoted.server_address.as_deref() == Some(VLLM_ADDRESS) {
                s.promoted.server_address = Some(address.clone());
            }
            if let Some(id) = ids.get(&s.resource_id) {
                s.resource_id = *id;
            }
        }
        for m in &mut self.batch.metrics {
            rename(&mut m.attributes, GPU_HOST, &host);
            if let Some(id) = ids.get(&m.resource_id) {
                m.resource_id = *id;
            }
        }
        for l in &mut self.batch.logs {
            if let Some(id) = ids.get(&l.resource_id) {
                l.resource_id = *id;
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use crate::{generate, WorkloadConfig};

    #[test]
    fn a_replica_moves_address_host_and_resource_ids_only() {
        let w = generate(&WorkloadConfig::small(3, 4));
        let r = w.clone().on_replica(1);
        assert_eq!(r.batch.spans.len(), w.batch.spans.len());
        assert!(r
            .batch
            .spans
            .iter()
            .all(|s| s.promoted.server_address.as_deref() != Some(super::VLLM_ADDRESS)));
        let moved = r
            .batch
            .spans
            .iter()
            .filter(|s| {
                s.promoted.server_address.as_deref() == Some("vllm-1.inference.svc.cluster.local")
            })
            .count();
        assert!(moved > 0);
        let hosts: Vec<String> = r
            .batch
            .resources
            .iter()
            .flat_map(|x| x.attributes.iter())
            .filter(|a| a.key == "host.name")
            .map(|a| a.value.to_display())
            .collect();
        assert!(
            hosts.contains(&"gpu-node-08".to_owned()) && !hosts.contains(&"gpu-node-07".to_owned())
        );
        let ids: std::collections::HashSet<i64> = r.batch.resources.iter().map(|x| x.id).collect();
        assert!(r.batch.spans.iter().all(|s| ids.contains(&s.resource_id)));
        assert!(r.batch.metrics.iter().all(|m| ids.contains(&m.resource_id)));
        assert_eq!(crate::validate(&r).is_ok(), crate::validate(&w).is_ok());
        assert_eq!(w.clone().on_replica(0), w);
    }
}
