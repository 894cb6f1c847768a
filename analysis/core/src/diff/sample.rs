//! One period's observations, grouped as `diff` compares them, built from the rows a
//! trace source reads ([`PeriodRows`]).

use super::Window;
use crate::hash::FastMap;
use std::collections::{BTreeMap, BTreeSet};
use tailscope_model::samples::PeriodRows;
use tailscope_model::Cause;

/// Observations and the cluster each belongs to (a hash of its conversation, else of
/// its trace): one conversation's traces and calls resemble each other, so intervals
/// count clusters, not values.
#[derive(Debug, Clone, Default)]
pub struct Obs {
    pub values: Vec<f64>,
    pub clusters: Vec<u64>,
}

impl Obs {
    pub fn push(&mut self, value: f64, cluster: u64) {
        self.values.push(value);
        self.clusters.push(cluster);
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The values sorted (ties by cluster, so that any order of the same observations
    /// gives the same result), with dense cluster ids in the same order.
    pub(super) fn sorted(&self) -> (Vec<f64>, Vec<u32>) {
        let mut pairs: Vec<(f64, u64)> = self
            .values
            .iter()
            .copied()
            .zip(self.clusters.iter().copied())
            .collect();
        pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut ids: FastMap<u64, u32> = FastMap::default();
        let mut dense = Vec::with_capacity(pairs.len());
        let mut values = Vec::with_capacity(pairs.len());
        for (v, c) in pairs {
            let next = ids.len() as u32;
            dense.push(*ids.entry(c).or_insert(next));
            values.push(v);
        }
        (values, dense)
    }
}

/// Row-major `rows` (`stride` columns per observation) summed per cluster, with the
/// count of observations as a last column: the rows a cluster bootstrap resamples.
pub(super) fn per_cluster(rows: &[f64], clusters: &[u64], stride: usize) -> Vec<f64> {
    let mut at: FastMap<u64, usize> = FastMap::default();
    let mut out: Vec<f64> = Vec::new();
    for (row, c) in rows.chunks_exact(stride).zip(clusters) {
        let i = *at.entry(*c).or_insert_with(|| {
            out.extend(std::iter::repeat_n(0.0, stride + 1));
            out.len() - stride - 1
        });
        for (o, v) in out[i..i + stride].iter_mut().zip(row) {
            *o += v;
        }
        out[i + stride] += 1.0;
    }
    out
}

/// The durations and per-cause critical-path times of one route's traces.
#[derive(Debug, Clone, Default)]
pub struct RouteSample {
    pub durations: Obs,
    /// Row-major, [`Cause::ALL`] per trace, in the order of `durations`.
    pub causes: Vec<f64>,
}

/// Per-call measures of one (model, server).
#[derive(Debug, Clone, Default)]
pub struct LlmSample {
    pub ttft_ns: Obs,
    pub decode_ns_per_token: Obs,
    pub tokens_per_chunk: Obs,
    pub output_tokens: Obs,
    /// Row-major (cache-read tokens, input tokens) per call with both known.
    pub cache: Vec<f64>,
    pub cache_clusters: Vec<u64>,
    /// The routes (service, operation) whose traces made these calls.
    pub routes: BTreeSet<(String, String)>,
}

/// Everything `diff` needs of one period, read once.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub window: Option<Window>,
    pub traces: usize,
    pub routes: BTreeMap<(String, String), RouteSample>,
    pub operations: BTreeMap<(String, String), Obs>,
    pub llm: BTreeMap<(String, String), LlmSample>,
}

/// Routes (`service operation`) as (service, operation), split once per distinct route.
#[derive(Default)]
struct RouteKeys(FastMap<String, (String, String)>);

impl RouteKeys {
    fn get(&mut self, route: String) -> &(String, String) {
        self.0.entry(route).or_insert_with_key(|r| {
            let (svc, op) = r.split_once(' ').unwrap_or(("", r));
            (svc.to_owned(), op.to_owned())
        })
    }
}

impl Sample {
    /// The sample of `window` from the rows a source read for it: per route the
    /// traces' durations and cause times; per (service, name) the spans' durations; per
    /// (model, server) each call's TTFT (the client's time to first chunk, else the
    /// server span's TTFT), decode time per output token after the first (the client's
    /// duration after its first chunk, else the server span's decode time), output
    /// tokens per streamed chunk, output tokens and cache reads over input tokens.
    pub fn of(window: Window, mut rows: PeriodRows) -> Sample {
        rows.canonical();
        let mut s = Sample {
            window: Some(window),
            ..Sample::default()
        };
        let mut keys = RouteKeys::default();
        for t in rows.traces {
            let key = keys.get(t.route);
            if !s.routes.contains_key(key) {
                s.routes.insert(key.clone(), RouteSample::default());
            }
            if let Some(r) = s.routes.get_mut(key) {
                r.durations.push(t.duration_ns as f64, t.cluster);
                r.causes.extend(t.by_cause_ns.map(|v| v as f64));
            }
            s.traces += 1;
        }
        for o in rows.operations {
            let obs = s.operations.entry((o.service, o.name)).or_default();
            for (v, k) in o.durations_ns.iter().zip(&o.clusters) {
                obs.push(*v as f64, *k);
            }
        }
        for c in rows.calls {
            let k = c.cluster;
            let l = s.llm.entry((c.model, c.server)).or_default();
            if let Some(r) = c.route {
                let key = keys.get(r);
                if !l.routes.contains(key) {
                    l.routes.insert(key.clone());
                }
            }
            let out = c.output_tokens.filter(|o| *o > 0);
            let ttfc = c.time_to_first_chunk_ns.filter(|t| *t >= 0);
            if let Some(t) = ttfc.or(c.server_ttft_ns) {
                l.ttft_ns.push(t as f64, k);
            }
            if let Some(o) = out.filter(|o| *o >= 2) {
                let decode = match ttfc {
                    Some(t) => Some(c.duration_ns - t),
                    None => c.server_decode_ns,
                };
                if let Some(d) = decode.filter(|d| *d >= 0) {
                    l.decode_ns_per_token.push(d as f64 / (o - 1) as f64, k);
                }
            }
            if let (Some(o), Some(ev)) = (out, c.event_count) {
                if c.stream && ev >= 2 {
                    l.tokens_per_chunk.push(o as f64 / ev as f64, k);
                }
            }
            if let Some(o) = out {
                l.output_tokens.push(o as f64, k);
            }
            if let (Some(cached), Some(inp)) = (c.cache_read_tokens, c.input_tokens) {
                if inp > 0 {
                    l.cache.push(cached.clamp(0, inp) as f64);
                    l.cache.push(inp as f64);
                    l.cache_clusters.push(k);
                }
            }
        }
        s
    }
}

/// The width of a trace's row in [`RouteSample::causes`].
pub(super) const CAUSES: usize = Cause::COUNT;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tailscope_model::samples::{PeriodCall, PeriodOperation, PeriodTrace};

    fn call(model: &str, route: Option<&str>, cluster: u64) -> PeriodCall {
        PeriodCall {
            model: model.into(),
            server: "srv".into(),
            route: route.map(Into::into),
            duration_ns: 1_000,
            time_to_first_chunk_ns: None,
            output_tokens: None,
            input_tokens: None,
            cache_read_tokens: None,
            event_count: None,
            stream: false,
            server_ttft_ns: None,
            server_decode_ns: None,
            cluster,
        }
    }

    /// Routes split at their first space; a call's TTFT and decode come from its own
    /// first chunk, else from its server span; chunks count only when streamed.
    #[test]
    fn rows_become_per_group_observations() {
        let mut by_cause_ns = [0; Cause::COUNT];
        by_cause_ns[7] = 40;
        let trace = |route: &str, d: i64, cluster: u64| PeriodTrace {
            route: route.into(),
            duration_ns: d,
            cluster,
            by_cause_ns,
        };
        let streamed = PeriodCall {
            time_to_first_chunk_ns: Some(100),
            output_tokens: Some(11),
            event_count: Some(5),
            stream: true,
            input_tokens: Some(200),
            cache_read_tokens: Some(300),
            ..call("m", Some("api POST /chat"), 1)
        };
        let served = PeriodCall {
            output_tokens: Some(3),
            server_ttft_ns: Some(70),
            server_decode_ns: Some(500),
            event_count: Some(5),
            ..call("m", Some("api POST /chat"), 2)
        };
        let rows = PeriodRows {
            traces: vec![
                trace("api POST /chat", 90, 1),
                trace("cron", 50, 2),
                trace("api POST /chat", 70, 3),
            ],
            operations: vec![PeriodOperation {
                service: "api".into(),
                name: "db".into(),
                durations_ns: vec![5, 6],
                clusters: vec![1, 2],
            }],
            calls: vec![streamed, served, call("", None, 3)],
        };
        let w = Window {
            from_ns: 0,
            to_ns: 10,
        };
        // the same rows in another order (another engine's) give the same sample
        let mut reversed = rows.clone();
        reversed.traces.reverse();
        reversed.calls.reverse();
        let s = Sample::of(w, rows);
        assert_eq!(format!("{s:?}"), format!("{:?}", Sample::of(w, reversed)));
        assert_eq!((s.window, s.traces), (Some(w), 3));
        let chat = &s.routes[&("api".to_owned(), "POST /chat".to_owned())];
        // in canonical order: by cluster, then duration
        assert_eq!(chat.durations.values, [90.0, 70.0]);
        assert_eq!(chat.durations.clusters, [1, 3]);
        assert_eq!(chat.causes.len(), 2 * CAUSES);
        assert_eq!(chat.causes[7..9], [40.0, 0.0]);
        assert!(s.routes.contains_key(&(String::new(), "cron".to_owned())));
        assert_eq!(
            s.operations[&("api".to_owned(), "db".to_owned())].values,
            [5.0, 6.0]
        );
        let m = &s.llm[&("m".to_owned(), "srv".to_owned())];
        // calls in canonical order: by cluster (the streamed one's is 1)
        assert_eq!(m.ttft_ns.values, [100.0, 70.0]);
        assert_eq!(m.decode_ns_per_token.values, [90.0, 250.0]);
        assert_eq!(m.tokens_per_chunk.values, [11.0 / 5.0]);
        assert_eq!(m.output_tokens.values, [11.0, 3.0]);
        assert_eq!(
            (m.cache.as_slice(), m.cache_clusters.as_slice()),
            (&[200.0, 200.0][..], &[1][..])
        );
        assert_eq!(m.routes.len(), 1);
        let none = &s.llm[&(String::new(), "srv".to_owned())];
        assert!(none.ttft_ns.is_empty() && none.routes.is_empty());
    }
}
