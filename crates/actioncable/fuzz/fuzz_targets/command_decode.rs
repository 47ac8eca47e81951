//! `cargo +nightly fuzz run command_decode` (from crates/actioncable): any text frame a client
//! can send, through `Command::decode` and `Identifier::parse`, with the invariants of
//! [`actioncable_fuzz::command_decode`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    actioncable_fuzz::command_decode(data);
});
