//! `tailscope replay`: the seed scenario from one command, a stored conversation, and
//! errors that name their input.

use super::{stderr, stdout, tailscope};
use std::path::PathBuf;

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
