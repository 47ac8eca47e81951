//! Replays the committed fuzz corpus (`crates/actioncable/fuzz/corpus/<target>/`) through the
//! same checks the fuzz targets run, so every seed (and every crash input ever added to the
//! corpus) is re-checked by a plain `cargo test`, without nightly or cargo-fuzz.

#[allow(unreachable_pub, dead_code)]
#[path = "../../fuzz/src/lib.rs"]
mod fuzz_checks;

use actioncable::protocol::Command;
use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_command_decode_corpus_file_passes_the_fuzz_checks() {
    let files = corpus("command_decode");
    assert!(
        files.len() >= 40,
        "the seed corpus is missing: {} files",
        files.len()
    );
    let mut failed = Vec::new();
    for (name, bytes) in &files {
        let bytes = bytes.clone();
        if std::panic::catch_unwind(move || fuzz_checks::command_decode(&bytes)).is_err() {
            failed.push(name.clone());
        }
    }
    assert!(
        failed.is_empty(),
        "corpus files failing the checks: {failed:?}"
    );
}

#[test]
fn the_real_frames_in_the_seed_corpus_decode_and_the_malformed_ones_do_not() {
    let files = corpus("command_decode");
    let mut good = 0;
    let mut bad = 0;
    for (name, bytes) in &files {
        // Seeds are named by what they are; crash inputs added later (hex names) are only
        // replayed by the test above.
        let text = String::from_utf8_lossy(bytes);
        let real = [
            "subscribe-",
            "unsubscribe-",
            "message-perform",
            "message-receive",
        ]
        .iter()
        .any(|p| name.starts_with(p))
            || name == "message-mark-read"
            || name == "extra-keys";
        let malformed = [
            "empty",
            "whitespace",
            "not-json",
            "truncated",
            "array",
            "number",
            "string",
            "null",
            "unknown-command",
            "command-number",
            "command-null",
            "missing-identifier",
            "identifier-object",
            "message-data-object",
            "message-missing-data",
            "huge-number",
            "deep-nesting",
            "trailing-garbage",
            "two-objects",
            "bom",
            "ping-shaped",
            "internal-disconnect",
        ]
        .contains(&name.as_str());
        let decoded = Command::decode(&text);
        if real {
            assert!(decoded.is_ok(), "{name}: {decoded:?}");
            good += 1;
        } else if malformed {
            assert!(decoded.is_err(), "{name} decoded: {decoded:?}");
            bad += 1;
        }
    }
    assert!(good >= 10 && bad >= 20, "good {good}, bad {bad}");
}

#[cfg(feature = "testing")]
#[test]
fn every_command_handling_corpus_file_passes_the_fuzz_checks() {
    let files = corpus("command_handling");
    assert!(
        files.len() >= 16,
        "the seed corpus is missing: {} files",
        files.len()
    );
    let mut failed = Vec::new();
    for (name, bytes) in &files {
        let bytes = bytes.clone();
        // Each input runs on a runtime of its own, as under the fuzzer.
        let run = std::thread::spawn(move || fuzz_checks::command_handling(&bytes));
        if run.join().is_err() {
            failed.push(name.clone());
        }
    }
    assert!(
        failed.is_empty(),
        "corpus files failing the checks: {failed:?}"
    );
}
