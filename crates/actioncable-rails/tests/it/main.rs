//! actioncable-rails against Rails itself: cookies, sessions and messages that Rails' own Ruby
//! code wrote are read here (`rails_wrote`), and what is written here Rails reads back
//! (`rails_reads`). Rails runs as `tests/ruby/cookies.rb`, with Debian's actionpack and
//! activesupport 6.1; nothing expected is written by hand.

mod rails_reads;
mod rails_wrote;
mod ruby;
