# The Rails reference app: Rails' own ActionCable server (Debian's ruby-actioncable) mounted at
# /cable in a plain Rack app under puma, plus a few HTTP control routes for the tests. No full
# Rails application: nothing here but what ActionCable needs. Started by start.sh; settings are
# environment variables (see README.md).
require "json"
require "logger"
require "action_cable"
require "action_dispatch"
require "action_dispatch/middleware/cookies"
require "active_support/tagged_logging"
require "active_support/core_ext/hash/indifferent_access"

$stdout.sync = true
$stderr.sync = true

adapter = ENV.fetch("CABLE_ADAPTER", "async")
cable = { adapter: adapter }
if adapter == "redis"
  cable[:url] = ENV.fetch("REDIS_URL", "redis://127.0.0.1:6379/1")
  # A generated cable.yml sets channel_prefix in production only; here it is optional.
  cable[:channel_prefix] = ENV["CABLE_CHANNEL_PREFIX"] unless ENV["CABLE_CHANNEL_PREFIX"].to_s.empty?
end

logger = ActiveSupport::TaggedLogging.new(ActiveSupport::Logger.new($stdout))
logger.level = Logger::DEBUG

config = ActionCable.server.config
config.cable = cable.with_indifferent_access
config.logger = logger
# What a Rails app in development allows: localhost and 127.0.0.1 on any port.
config.allowed_request_origins = ["http://localhost", %r{\Ahttp://(localhost|127\.0\.0\.1)(:\d+)?\z}]
config.disable_request_forgery_protection = ENV["CABLE_DISABLE_FORGERY"] == "1"
config.mount_path = "/cable"
config.worker_pool_size = Integer(ENV.fetch("CABLE_WORKERS", "4"))

require_relative "app/channels"

config.connection_class = -> { ApplicationCable::Connection }

logger.info "[rails-app] ActionCable #{ActionCable.version} adapter=#{adapter} cable=#{cable.inspect} pid=#{Process.pid}"

# HTTP control routes (not part of ActionCable), the same as examples/rails-twin's:
#   POST /broadcast?stream=NAME            body JSON -> ActionCable.server.broadcast(NAME, body)
#   POST /broadcast_to?user=NAME[&gid=1]   body JSON -> NotificationChannel.broadcast_to(user or record, body)
#   GET  /broadcasting_for?user=NAME[&gid=1]         -> the stream name that stream_for uses
#   POST /disconnect?user=NAME                       -> remote_connections.where(current_user: NAME).disconnect
#   POST /restart                                    -> ActionCable.server.restart
#   GET  /stats                                      -> ActionCable.server.open_connections_statistics
Control = lambda do |env|
  req = Rack::Request.new(env)
  json = ->(status, obj) { [status, { "Content-Type" => "application/json" }, [JSON.generate(obj)]] }
  body = req.body ? req.body.read : ""
  model = -> { req.params["gid"] == "1" ? UserRecord.new(req.params["user"].to_s) : req.params["user"].to_s }
  begin
    case [req.request_method, req.path_info]
    when ["POST", "/broadcast"]
      stream = req.params["stream"].to_s
      ActionCable.server.broadcast(stream, body.empty? ? {} : JSON.parse(body))
      json.(200, ok: true, stream: stream)
    when ["POST", "/broadcast_to"]
      record = model.()
      NotificationChannel.broadcast_to(record, body.empty? ? {} : JSON.parse(body))
      json.(200, ok: true, broadcasting: NotificationChannel.broadcasting_for(record))
    when ["GET", "/broadcasting_for"]
      json.(200, broadcasting: NotificationChannel.broadcasting_for(model.()))
    when ["POST", "/disconnect"]
      ActionCable.server.remote_connections.where(current_user: req.params["user"].to_s).disconnect
      json.(200, ok: true)
    when ["POST", "/restart"]
      ActionCable.server.restart
      json.(200, ok: true)
    when ["GET", "/stats"]
      json.(200, connections: ActionCable.server.open_connections_statistics)
    else
      json.(404, error: "not found")
    end
  rescue => e
    json.(500, error: "#{e.class}: #{e.message}")
  end
end

map "/cable" do
  run ActionCable.server
end

map "/" do
  run Control
end
