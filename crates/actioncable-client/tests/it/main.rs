//! The consumer against real servers over real sockets: this project's server (in this
//! process, or restarted on its port), the Rails reference app (`interop/rails`), a proxy that
//! freezes or drops connections, and a scripted server for what a good server never sends.
//!
//! Run one module with `cargo test -p actioncable-client --test it <module>`.

mod bad_input;
mod ext;
mod ours;
mod rails;
mod raw;
mod restart;
mod stale;
mod support;
