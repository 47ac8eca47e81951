//! actioncable-rails against Rails itself, one test binary, one module per concern. Cookies,
//! sessions and messages that Rails' own Ruby code wrote are read here (`rails_wrote`), and what
//! is written here Rails reads back (`rails_reads`); Turbo's and AnyCable's signed stream names
//! are checked against Rails' Ruby and Node's `crypto` (`turbo`, `signed_streams`), and the
//! channels through a real cable on a loopback port. The scripts are in `tests/ruby` and
//! `tests/node`; nothing expected is written by hand.

mod rails_reads;
mod rails_wrote;
mod ruby;
mod signed_streams;
mod turbo;
