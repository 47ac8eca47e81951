# Rails' own ActionCable PostgreSQL adapter (ActionCable::SubscriptionAdapter::PostgreSQL, as
# Debian's ruby-actioncable ships it) on the other end of the actioncable-postgres tests.
#
# The adapter takes its connections from Active Record, so the database comes from
# ActiveRecord::Base.establish_connection; the cable configuration names the adapter and the
# prefix. It needs Debian's ruby-actioncable, ruby-activerecord and ruby-pg.
#
# It reads one JSON request on stdin and prints its answer as JSON (cable_test_support's
# run_json_script). Every request has "url" and "channel_prefix" (null for none):
#   {"command": "broadcast", "messages": [{"stream": S, "message": M}, …]}
#       ActionCable.server.broadcast(S, M) for each -> {"sent": [the JSON text of each]}
#   {"command": "subscribe", "streams": [S, …], "ready_file": F, "expect": N}
#       subscribes to every S through the adapter, creates F once every LISTEN is done, and
#       collects the raw messages -> {"received": [[S, payload], …]} after N of them (or 15 s)
require "json"
require "logger"
require "timeout"
require "pg"
require "active_record"
require "action_cable"
require "active_support/core_ext/hash/indifferent_access"

REQUEST = JSON.parse($stdin.read)

ActiveRecord::Base.establish_connection(REQUEST.fetch("url"))
server = ActionCable.server
server.config.logger = Logger.new($stderr, level: :warn)
# Rails reads cable settings with symbol keys: without indifferent access it sees none.
server.config.cable = {
  adapter: "postgresql",
  url: REQUEST.fetch("url"),
  channel_prefix: REQUEST["channel_prefix"]
}.with_indifferent_access
pubsub = server.pubsub
unless pubsub.is_a?(ActionCable::SubscriptionAdapter::PostgreSQL)
  abort "postgresql_adapter.rb: got #{pubsub.class}, not Rails' PostgreSQL adapter"
end

case REQUEST.fetch("command")
when "broadcast"
  sent = REQUEST.fetch("messages").map do |m|
    server.broadcast(m.fetch("stream"), m.fetch("message"))
    ActiveSupport::JSON.encode(m.fetch("message"))
  end
  puts JSON.generate({ sent: sent })
when "subscribe"
  streams = REQUEST.fetch("streams")
  received = Queue.new
  confirmed = Queue.new
  streams.each do |stream|
    pubsub.subscribe(stream, ->(message) { received << [stream, message] }, -> { confirmed << stream })
  end
  Timeout.timeout(10) { streams.size.times { confirmed.pop } }
  File.write(REQUEST.fetch("ready_file"), "ready")
  messages = []
  begin
    Timeout.timeout(15) { messages << received.pop while messages.size < REQUEST.fetch("expect") }
  rescue Timeout::Error
    # Answer with what arrived; the test says what is missing.
  end
  pubsub.shutdown
  puts JSON.generate({ received: messages })
else
  abort "postgresql_adapter.rb: unknown command"
end
