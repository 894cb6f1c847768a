//! `tailscope replay`: the seed scenario from one command, a stored conversation, and
//! errors that name their input.

use super::{stderr, stdout, tailscope};
use std::path::{Path, PathBuf};

fn config(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../engine/configs")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// `tailscope replay` of a stored conversation under the seed A/B configs, one repeat.
fn replay_stored(
    db: &std::path::Path,
    conversation: &str,
    token_scale: &str,
    max_background: &str,
    max_output_tokens: &str,
) -> std::process::Output {
    let (a, b) = (config("seed-a.toml"), config("seed-b.toml"));
    tailscope(
        db,
        &[
            "replay",
            "--conversation",
            conversation,
            "--a",
            &a,
            "--b",
            &b,
            "--repeats",
            "1",
            "--token-scale",
            token_scale,
            "--max-background",
            max_background,
            "--max-output-tokens",
            max_output_tokens,
        ],
    )
}

fn turn<'a>(run: &'a serde_json::Value, session: &str, turn: u64) -> &'a serde_json::Value {
    run["turns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["session"] == session && t["turn"] == turn)
        .unwrap_or_else(|| panic!("no turn {session}/{turn}"))
}

/// The seed scenario: under A (small LRU cache) a burst evicts the conversation's
/// prefix and turn 1 re-prefills it; under B it survives. Checked on work done (prefill
/// tokens, evicted blocks and who evicted them), not on timings.
#[test]
fn seed_scenario_shows_the_evicted_turn_under_a_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.duckdb");
    let o = tailscope(
        &db,
        &[
            "replay",
            "--scenario",
            "seed",
            "--repeats",
            "1",
            "--format",
            "json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["focus"], "support-chat");
    assert_eq!(r["outputs_identical"], true);
    let (a, b) = (&r["runs_a"][0], &r["runs_b"][0]);
    let (ta, tb) = (turn(a, "support-chat", 1), turn(b, "support-chat", 1));
    assert_eq!(ta["prefix_hit_tokens"], 0, "{ta}");
    assert!(tb["prefix_hit_tokens"].as_u64().unwrap() >= 1500, "{tb}");
    assert!(ta["prefill_tokens"].as_u64().unwrap() > 10 * tb["prefill_tokens"].as_u64().unwrap());
    let evicted_focus: Vec<_> = a["evictions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["owner_session"] == "support-chat")
        .collect();
    assert!(!evicted_focus.is_empty());
    assert!(evicted_focus
        .iter()
        .all(|e| e["by_session"] == "batch-burst"));
    assert!(b["evictions"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["owner_session"] != "support-chat"));
    // The text report names the cause, and the results are in the store.
    let n = super::count(
        &db,
        "SELECT count(*) FROM replay_turns WHERE session_id = 'support-chat' AND turn = 1",
    );
    assert_eq!(n, 2, "one row per side");
    assert!(
        super::count(
            &db,
            "SELECT count(*) FROM replay_evictions WHERE side = 'A'"
        ) > 0
    );
}

#[test]
fn stored_conversation_replays_with_its_competitors() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("d.duckdb");
    let o = tailscope(&db, &["demo", "--headless", "--conversations", "8"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = tailscope(&db, &["replay", "--list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let list = stdout(&o);
    let conv = list
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no candidate in:\n{list}"))
        .to_owned();
    let o = replay_stored(&db, &conv, "0.02", "2", "4");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(&conv), "{}", stdout(&o));
    let calls = super::count(
        &db,
        &format!("SELECT count(*) FROM spans WHERE op_class = 'llm' AND kind = 'client' AND conversation_id = '{conv}' AND input_tokens > 0"),
    );
    let replayed = super::count(
        &db,
        &format!("SELECT count(*) FROM replay_turns WHERE session_id = '{conv}' AND side = 'A' AND trace_id IS NOT NULL"),
    );
    assert_eq!(
        replayed, calls,
        "every LLM call of the conversation is a replayed turn"
    );
}

#[test]
fn replay_errors_name_their_input() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("e.duckdb");
    let o = tailscope(&db, &["replay"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "model = \"huge\"\n").unwrap();
    let a = config("seed-a.toml");
    let o = tailscope(
        &db,
        &[
            "replay",
            "--scenario",
            "seed",
            "--a",
            bad.to_str().unwrap(),
            "--b",
            &a,
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("bad.toml"), "{}", stderr(&o));
    let o = tailscope(
        &db,
        &[
            "replay",
            "--conversation",
            "no-such-conv",
            "--a",
            &a,
            "--b",
            &a,
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no-such-conv"), "{}", stderr(&o));
}

/// Real instrumentation: OpenInference's LLM spans are INTERNAL, and the OTel GenAI
/// chat spans carry no conversation id (their agent span does). Both replay.
#[test]
fn conversations_of_real_instrumentation_replay() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("real.duckdb");
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/realtel/fixtures");
    let files: Vec<String> = ["openinference.jsonl", "otel-genai.jsonl"]
        .iter()
        .map(|f| fixtures.join(f).to_string_lossy().into_owned())
        .collect();
    let mut args = vec!["import"];
    args.extend(files.iter().map(String::as_str));
    let o = tailscope(&db, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = tailscope(&db, &["replay", "--list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let list = stdout(&o);
    for conv in ["openinference-conv-01", "otel-genai-conv-01"] {
        assert!(list.contains(conv), "{conv} missing from:\n{list}");
    }
    let o = replay_stored(&db, "otel-genai-conv-02", "0.01", "0", "2");
    assert!(o.status.success(), "{}", stderr(&o));
    let replayed = super::count(
        &db,
        "SELECT count(*) FROM replay_turns WHERE session_id = 'otel-genai-conv-02' AND side = 'A'",
    );
    assert_eq!(
        replayed, 8,
        "every chat call of the conversation is replayed"
    );
}

/// An empty replay list says why: the counts behind it.
#[test]
fn empty_replay_list_gives_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("none.duckdb");
    let file = dir.path().join("one.json");
    std::fs::write(&file, super::TRACE_LINE).unwrap();
    let o = tailscope(&db, &["import", file.to_str().unwrap()]);
    assert!(o.status.code().is_some(), "{}", stderr(&o));
    let o = tailscope(&db, &["replay", "--list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("1 LLM calls, 0 with a conversation"), "{out}");
}

fn metric<'a>(turn: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    turn["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == name)
        .unwrap_or_else(|| panic!("no {name} in {turn}"))
}

/// Imports the realtel fixture `stack` into a store in `dir` and replays `conversation`
/// with `--as-recorded` (JSON, one repeat, token scale 0.125); the store, the derived A's
/// path, and the successful run's output.
fn replay_as_recorded(
    dir: &Path,
    stack: &str,
    conversation: &str,
    max_output_tokens: &str,
) -> (PathBuf, PathBuf, std::process::Output) {
    let db = dir.join(format!("{stack}.duckdb"));
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../tests/realtel/fixtures/{stack}.jsonl"));
    let o = tailscope(&db, &["import", fixture.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let a_path = dir.join("as-recorded.toml");
    let o = tailscope(
        &db,
        &[
            "replay",
            "--conversation",
            conversation,
            "--as-recorded",
            a_path.to_str().unwrap(),
            "--repeats",
            "1",
            "--token-scale",
            "0.125",
            "--max-output-tokens",
            max_output_tokens,
            "--format",
            "json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    (db, a_path, o)
}

/// `--as-recorded` on a recording with real cache pressure (tests/realtel, OpenInference:
/// the server's LRU prefix cache shared with untraced background tenants). In
/// `openinference-conv-07` turn 3 lost its whole cached prefix (planted) and turn 8 lost
/// 194 of its 270 cached blocks to LRU pressure (truth: `unplanted` kv_eviction, cached
/// 1216 of 4320 tokens). Replayed as recorded, exactly those two turns lose their prefix
/// to the unseen load, turn 8 keeping the 76 blocks the server kept; B (twice the cache)
/// keeps every prefix; every other turn hits the same under A and B. The derived A is a
/// TOML file that reads back.
#[test]
fn as_recorded_reproduces_the_recorded_pressure_eviction_and_b_resolves_it() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/realtel/fixtures/openinference.jsonl");
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture.with_extension("truth.json")).unwrap())
            .unwrap();
    let (_, a_path, o) =
        replay_as_recorded(dir.path(), "openinference", "openinference-conv-07", "8");
    let a_text = std::fs::read_to_string(&a_path).unwrap();
    let a = tailscope_engine::EngineConfig::from_toml_str(&a_text).unwrap();
    let b =
        tailscope_engine::EngineConfig::from_file(dir.path().join("as-recorded.b.toml")).unwrap();
    assert_eq!(b.cache_capacity_blocks, 2 * a.cache_capacity_blocks);
    assert_eq!(a.block_size, 2, "16 recorded tokens x 0.125");
    let bursts = &a
        .background
        .as_ref()
        .expect("a [background] section")
        .bursts;
    assert_eq!(bursts.len(), 2, "one per recorded miss: {a_text}");
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["focus"], "openinference-conv-07");
    // The recorded misses of the conversation, from the truth: turn -> (cached, would cache).
    let recorded: Vec<(u64, u64, u64)> = truth["turns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["conversation_id"] == "openinference-conv-07")
        .map(|t| {
            (
                t["turn"].as_u64().unwrap(),
                t["cached_tokens"].as_u64().unwrap(),
                t["server"]["would_cache_tokens"].as_u64().unwrap(),
            )
        })
        .collect();
    let missed: Vec<u64> = recorded
        .iter()
        .filter(|(_, c, w)| c < w)
        .map(|(t, _, _)| *t)
        .collect();
    assert_eq!(
        missed,
        vec![3, 8],
        "the fixture's planted and pressure evictions"
    );
    let turns = r["focus_turns"].as_array().unwrap();
    assert_eq!(turns.len(), 8);
    let input = |k: usize| turns[k]["input_tokens"].as_u64().unwrap();
    for (k, t) in turns.iter().enumerate().skip(1) {
        let recorded_turn = k as u64 + 1;
        // all of the previous prompt's full blocks (2 tokens each), never the whole prompt
        let full = ((input(k) - 1) / 2).min(input(k - 1) / 2) as f64 * 2.0;
        let hits = metric(t, "prefix_hit_tokens");
        let (ha, hb) = (
            hits["a_mean"].as_f64().unwrap(),
            hits["b_mean"].as_f64().unwrap(),
        );
        assert!(
            (hb - full).abs() < 0.5,
            "turn {recorded_turn}: B found {hb} of {full} tokens cached"
        );
        if missed.contains(&recorded_turn) {
            let (_, cached, _) = recorded[k];
            // exactly the blocks the recorded server kept, in replay tokens
            let kept = (cached / 16 * 2) as f64;
            assert!(
                (ha - kept).abs() < 0.5,
                "turn {recorded_turn}: A found {ha} tokens cached, the recording kept {kept}"
            );
            let ev = t["evicted_before_a"].as_array().unwrap();
            assert!(!ev.is_empty(), "turn {recorded_turn}: no eviction under A");
            assert!(
                ev.iter()
                    .all(|e| e["by_session"] == "background (unseen load)"),
                "{ev:?}"
            );
            let why = t["explanation"].as_str().unwrap_or_default();
            assert!(why.contains("by the background (unseen load)"), "{why}");
            let pf = metric(t, "prefill_tokens");
            assert!(pf["a_mean"].as_f64().unwrap() > pf["b_mean"].as_f64().unwrap() + 100.0);
        } else {
            assert!(
                (ha - full).abs() < 0.5,
                "turn {recorded_turn}: A found {ha} of {full} tokens cached"
            );
        }
    }
}

/// LangChain sends every call twice (ChatOpenAI and ChatCompletion, overlapping
/// siblings): the second span is not a turn that missed the first one's prefix. In
/// `langchain-conv-07` the derived A has exactly the recorded misses, turn 3 (planted)
/// and turn 8 (LRU pressure: 2432 of 4192 tokens kept), one burst each.
#[test]
fn as_recorded_counts_duplicate_langchain_spans_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_, a_path, _) = replay_as_recorded(dir.path(), "langchain", "langchain-conv-07", "2");
    let text = std::fs::read_to_string(&a_path).unwrap();
    let a = tailscope_engine::EngineConfig::from_toml_str(&text).unwrap();
    let bursts = a.background.map(|bg| bg.bursts).unwrap_or_default();
    assert_eq!(bursts.len(), 2, "{text}");
    assert!(
        text.contains("found 0 of 2128 cached tokens") && text.contains("found 2432 of 4192"),
        "{text}"
    );
}
