//! The ingest log's fuzz target: log files of generated batches, damaged at random
//! (then the checksums must stop the reader), or with a payload mutated and framed
//! again with a right checksum (then the payload decoder itself is exercised), read
//! back as opening a store does. Never a panic; damage is always caught before a
//! payload of damaged bytes is decoded.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use tailscope_ingest::fuzz::{mutate, traces_request, Report, Rng};
use tailscope_store::ingestlog::{encode_payload, frame_file, read_back};

/// Runs `inputs` log files from `seed` through the reader, written to `scratch`.
pub fn run(inputs: u64, seed: u64, scratch: &Path) -> Report {
    let mut rng = Rng::new(seed ^ 0x5EED_1066);
    let mut r = Report::default();
    for i in 0..inputs {
        let payloads: Vec<Vec<u8>> = (0..=rng.below(2))
            .map(|_| {
                let req = traces_request(&mut rng);
                let (batch, _) = tailscope_ingest::otlp::traces_into_model(req);
                encode_payload(&batch).unwrap_or_default()
            })
            .collect();
        // 0: the file damaged; 1: a payload mutated, framed with a right checksum
        let structured = rng.below(2) == 1;
        let bytes = if structured {
            let mut p = payloads;
            let k = rng.below(p.len());
            mutate(&mut rng, &mut p[k]);
            frame_file(1, &p)
        } else {
            let mut f = frame_file(1, &payloads);
            mutate(&mut rng, &mut f);
            f
        };
        r.inputs += 1;
        if let Err(e) = std::fs::write(scratch, &bytes) {
            r.disagreements += 1;
            r.examples
                .push(format!("writing {}: {e}", scratch.display()));
            continue;
        }
        match catch_unwind(AssertUnwindSafe(|| read_back(scratch))) {
            Err(_) => {
                r.panics += 1;
                if r.examples.len() < 5 {
                    r.examples
                        .push(format!("input {i} panicked ({} bytes)", bytes.len()));
                }
            }
            Ok(Ok((frames, decoded, _))) if decoded == frames && frames > 0 => r.accepted += 1,
            Ok(Ok((frames, decoded, _))) => {
                // a frame whose checksum held but whose payload does not decode can only
                // come from a structured mutation: plain damage must stop at the checksum
                if !structured && decoded < frames {
                    r.disagreements += 1;
                    if r.examples.len() < 5 {
                        r.examples.push(format!(
                            "input {i}: damaged bytes passed the checksum ({decoded} of {frames} frames decoded)"
                        ));
                    }
                } else {
                    r.declined += 1;
                }
            }
            Ok(Err(_)) => r.declined += 1,
        }
    }
    r
}
