//! `cargo +nightly fuzz run command_handling` (from crates/actioncable): sequences of client
//! frames (one per line; `tick` advances the clock) through a connection's command handling,
//! with the invariants of [`actioncable_fuzz::command_handling`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    actioncable_fuzz::command_handling(data);
});
