# What a Rails app hands out and sends, made by Rails' own Ruby code, for the actioncable-server
# tests to check against: Redis broadcasts (ActionCable.server.broadcast), remote disconnects,
# Turbo's signed stream names (turbo-rails' exact calls), AnyCable's signed $pubsub names, an
# encrypted cookie (ActionDispatch::Cookies) and a cookie-store session cookie
# (ActionDispatch::Session::CookieStore behind ActionDispatch::Cookies, as in a Rails app).
#
# It runs on Debian's packages (ruby-actioncable 6.1, ruby-redis, ruby-globalid, which
# scripts/test.sh installs); turbo-rails is not packaged, so its two calls are written out below
# as turbo-rails makes them.
#
# It reads one JSON request on stdin and prints its answer as JSON (cable_test_support's
# run_json_script). Every request has "command" and "config":
#   config: {"secret_key_base", "key_digest": "sha256"|"sha1" (the key generator's
#           hash_digest_class), "turbo_streams_secret" (config.turbo.signed_stream_verifier_key),
#           "streams_secret" ($pubsub; default secret_key_base), "redis_url", "channel_prefix"}
#   {"command": "broadcast", "stream": S, "message": M}
#       ActionCable.server.broadcast(S, M) through the Redis adapter
#       -> {"payload": the JSON text Rails published}
#   {"command": "disconnect", "identifier": NAME, "value": V}
#       ActionCable.server.remote_connections.where(NAME => v).disconnect, v the GlobalID record V
#       names when it is gid://…, else V -> {"connection_identifier": what Rails named it by}
#   {"command": "turbo_signed", "name": N}      -> {"signed": Turbo's signed stream name}
#   {"command": "pubsub_signed", "name": N}     -> {"signed": the $pubsub signed name (AnyCable's)}
#   {"command": "encrypted_cookie", "name": N, "value": V}
#       cookies.encrypted[N] = V -> {"cookie": "N=…", the pair a browser sends back}
#   {"command": "session_cookie", "cookie": C, "session": {…}}
#       a cookie-store session (cookie C) holding the keys given -> {"cookie": "C=…"}
require "json"
require "logger"
require "openssl"
require "uri"
require "action_cable"
require "action_dispatch"
require "action_dispatch/middleware/cookies"
require "action_dispatch/middleware/session/cookie_store"
require "active_support/core_ext/hash/indifferent_access"
require "active_support/key_generator"
require "active_support/message_verifier"
require "active_support/messages/rotation_configuration"
require "global_id"
require "rack/mock"

def fail_with(message)
  abort "rails.rb: #{message}"
end

REQUEST = JSON.parse($stdin.read)
CONFIG = REQUEST.fetch("config", {})

def setting(name)
  value = CONFIG[name]
  value.to_s.empty? ? nil : value
end

def secret_key_base
  setting("secret_key_base") || fail_with("config.secret_key_base is not set")
end

def digest_class
  case CONFIG.fetch("key_digest", "sha256")
  when "sha256" then OpenSSL::Digest::SHA256
  when "sha1" then OpenSSL::Digest::SHA1
  else fail_with("config.key_digest must be sha256 or sha1")
  end
end

def arg(name)
  REQUEST.key?(name) ? REQUEST[name] : fail_with("#{REQUEST["command"]} needs #{name}")
end

def answer(object)
  puts JSON.generate(object)
end

# Rails 7.0's ActiveSupport::KeyGenerator#generate_key, for the Rails 6.1 that Debian ships,
# whose KeyGenerator derives with SHA1 only and ignores `hash_digest_class:` (7.0 added it).
# Used only when the installed KeyGenerator cannot take the digest.
class KeyGenerator70
  def initialize(secret, iterations:, hash_digest_class:)
    @secret = secret
    @iterations = iterations
    @hash_digest_class = hash_digest_class
  end

  def generate_key(salt, key_size = 64)
    OpenSSL::PKCS5.pbkdf2_hmac(@secret, salt, @iterations, key_size, @hash_digest_class.new)
  end
end

# Rails.application.key_generator: KeyGenerator.new(secret_key_base, iterations: 1000,
# hash_digest_class: config.active_support.key_generator_hash_digest_class), cached.
def key_generator
  generator =
    if ActiveSupport::KeyGenerator.respond_to?(:hash_digest_class) || digest_class == OpenSSL::Digest::SHA1
      ActiveSupport::KeyGenerator.new(secret_key_base, iterations: 1000, hash_digest_class: digest_class)
    else
      KeyGenerator70.new(secret_key_base, iterations: 1000, hash_digest_class: digest_class)
    end
  ActiveSupport::CachingKeyGenerator.new(generator)
end

# The request env a Rails app gives ActionDispatch's cookie code (Rails::Application#env_config),
# with the defaults of a Rails app on load_defaults 6.0 to 7.0: authenticated (AES-256-GCM)
# encryption, cookies with purpose metadata, the JSON serializer.
def cookie_env
  {
    "action_dispatch.key_generator" => key_generator,
    "action_dispatch.secret_key_base" => secret_key_base,
    "action_dispatch.signed_cookie_salt" => "signed cookie",
    "action_dispatch.encrypted_cookie_salt" => "encrypted cookie",
    "action_dispatch.encrypted_signed_cookie_salt" => "signed encrypted cookie",
    "action_dispatch.authenticated_encrypted_cookie_salt" => "authenticated encrypted cookie",
    "action_dispatch.use_authenticated_cookie_encryption" => true,
    "action_dispatch.encrypted_cookie_cipher" => "aes-256-gcm",
    "action_dispatch.use_cookies_with_metadata" => true,
    "action_dispatch.cookies_serializer" => :json,
    "action_dispatch.cookies_rotations" => ActiveSupport::Messages::RotationConfiguration.new,
  }
end

# `name=value` of the first Set-Cookie line, as the browser stores and sends it back.
def cookie_pair(set_cookie)
  line = Array(set_cookie).join("\n").split("\n").first or fail_with("no Set-Cookie was written")
  line.split(";").first
end

def configure_cable(identifier = nil)
  config = ActionCable.server.config
  cable = { adapter: "redis", url: setting("redis_url") || "redis://127.0.0.1:6379/1" }
  cable[:channel_prefix] = setting("channel_prefix") if setting("channel_prefix")
  config.cable = cable.with_indifferent_access
  config.logger = Logger.new($stderr, level: Logger::WARN)
  return unless identifier

  connection = Class.new(ActionCable::Connection::Base) { identified_by identifier.to_sym }
  config.connection_class = -> { connection }
end

# A record GlobalID can identify, found by id (GlobalID::Locator is not needed: the record is
# only turned into its GlobalID).
class GidRecord
  include GlobalID::Identification
  attr_reader :id

  def initialize(id)
    @id = id
  end
end

case REQUEST["command"]
when "broadcast"
  stream = arg("stream")
  message = arg("message")
  configure_cable
  ActionCable.server.broadcast(stream, message)
  # What ActionCable::Server::Broadcasting published: coder.encode(message), the coder being
  # ActiveSupport::JSON.
  answer(payload: ActiveSupport::JSON.encode(message))
when "disconnect"
  name = arg("identifier")
  value = arg("value").to_s
  configure_cable(name)
  target =
    if value.start_with?("gid://")
      uri = URI::GID.parse(value)
      GlobalID.app = uri.app
      record_class = Object.const_set(uri.model_name, Class.new(GidRecord)) unless Object.const_defined?(uri.model_name)
      (record_class || Object.const_get(uri.model_name)).new(uri.model_id)
    else
      value
    end
  ActionCable.server.remote_connections.where(name.to_sym => target).disconnect
  answer(connection_identifier: target.respond_to?(:to_gid_param) ? target.to_gid_param : target)
when "turbo_signed"
  name = arg("name")
  # turbo-rails' engine.rb and lib/turbo-rails.rb:
  #   Turbo.signed_stream_verifier_key = config.turbo.signed_stream_verifier_key ||
  #     Rails.application.key_generator.generate_key("turbo/signed_stream_verifier_key")
  #   ActiveSupport::MessageVerifier.new(signed_stream_verifier_key, digest: "SHA256", serializer: JSON)
  key = setting("turbo_streams_secret") || key_generator.generate_key("turbo/signed_stream_verifier_key")
  verifier = ActiveSupport::MessageVerifier.new(key, digest: "SHA256", serializer: JSON)
  # Turbo::Streams::StreamName#signed_stream_name(streamables) for a string streamable.
  answer(signed: verifier.generate(name))
when "pubsub_signed"
  name = arg("name")
  secret = setting("streams_secret") || secret_key_base
  # AnyCable's docs/signed_streams.md: Base64.strict_encode64(JSON.dump(name)), "--", and
  # OpenSSL::HMAC.hexdigest("SHA256", secret, encoded): a MessageVerifier's message.
  answer(signed: ActiveSupport::MessageVerifier.new(secret, digest: "SHA256", serializer: JSON).generate(name))
when "encrypted_cookie"
  name = arg("name")
  request = ActionDispatch::Request.new(Rack::MockRequest.env_for("/", cookie_env))
  request.cookie_jar.encrypted[name] = arg("value")
  headers = {}
  request.cookie_jar.write(headers)
  answer(cookie: cookie_pair(headers["Set-Cookie"]))
when "session_cookie"
  cookie = arg("cookie")
  values = arg("session")
  fail_with("the session must be a JSON object") unless values.is_a?(Hash)
  # A Rails app's middleware stack, as far as sessions go: the cookie-store session writes
  # through the cookie jar, and ActionDispatch::Cookies turns the jar into Set-Cookie.
  app = lambda do |env|
    values.each { |k, v| env["rack.session"][k] = v }
    [200, {}, ["ok"]]
  end
  stack = ActionDispatch::Cookies.new(ActionDispatch::Session::CookieStore.new(app, key: cookie))
  _status, headers, _body = stack.call(Rack::MockRequest.env_for("/", cookie_env))
  answer(cookie: cookie_pair(headers["Set-Cookie"]))
else
  fail_with("unknown command #{REQUEST["command"].inspect}; see the comment at the top of rails.rb")
end
