# Rails' own cookie jar, cookie store and message classes (Debian's actionpack and activesupport
# 6.1), driven for actioncable-rails' integration tests (tests/it). Nothing here re-implements
# Rails, except where 6.1 lacks what newer Rails does; those places say which source they follow.
#
# It reads one JSON request on stdin and prints its answer as JSON:
#   {"mode": "fixtures"}            cookies and messages Rails made, each with what Rails itself
#                                   reads back from it
#   {"mode": "read", "input": [..]} what Rails reads from each cookie/message of the list (made
#                                   by the Rust side)
require "json"
require "openssl"
require "securerandom"
require "action_dispatch"
require "action_dispatch/middleware/cookies"
require "action_dispatch/middleware/session/cookie_store"
require "active_support/core_ext/numeric/time"
require "active_support/json"
require "active_support/key_generator"
require "active_support/message_encryptor"
require "active_support/message_verifier"
require "active_support/messages/rotation_configuration"

# What follows drives 6.1's classes (their private Metadata, their KeyGenerator); another
# version needs this script revisited, not silently different fixtures.
unless ActiveSupport::VERSION::STRING.start_with?("6.1.")
  abort "cookies.rb drives Rails 6.1's cookie code; found #{ActiveSupport::VERSION::STRING}"
end

# Rails 6.1's KeyGenerator derives with PBKDF2-HMAC-SHA1 only. Rails 7.0 added
# `key_generator_hash_digest_class` (SHA256 in 7.0's defaults); its generate_key is, in
# activesupport/lib/active_support/key_generator.rb:
#   OpenSSL::PKCS5.pbkdf2_hmac(@secret, salt, @iterations, key_size, @hash_digest_class.new)
class KeyGeneratorWithDigest < ActiveSupport::KeyGenerator
  def initialize(secret, digest)
    super(secret, iterations: 1000)
    @hash_digest_class = OpenSSL::Digest.const_get(digest)
  end

  def generate_key(salt, key_size = 64)
    OpenSSL::PKCS5.pbkdf2_hmac(@secret, salt, @iterations, key_size, @hash_digest_class.new)
  end
end

# Rails.application.key_generator (railties/lib/rails/application.rb): a CachingKeyGenerator
# over a KeyGenerator with 1,000 iterations.
def key_generator(secret, digest)
  generator =
    if digest == "SHA1"
      ActiveSupport::KeyGenerator.new(secret, iterations: 1000)
    else
      KeyGeneratorWithDigest.new(secret, digest)
    end
  ActiveSupport::CachingKeyGenerator.new(generator)
end

# Rails.application.env_config's action_dispatch.* keys (railties/lib/rails/application.rb),
# with the salts' defaults from actionpack/lib/action_dispatch/railtie.rb.
def app_env(config, cookie_header = nil)
  env = Rack::MockRequest.env_for("/", "HTTP_HOST" => "example.com")
  env["HTTP_COOKIE"] = cookie_header if cookie_header
  secret = config.fetch("secret")
  env.merge(
    "action_dispatch.secret_key_base" => secret,
    "action_dispatch.key_generator" => key_generator(secret, config.fetch("key_digest")),
    "action_dispatch.signed_cookie_salt" => "signed cookie",
    "action_dispatch.encrypted_cookie_salt" => "encrypted cookie",
    "action_dispatch.encrypted_signed_cookie_salt" => "signed encrypted cookie",
    "action_dispatch.authenticated_encrypted_cookie_salt" => "authenticated encrypted cookie",
    "action_dispatch.use_authenticated_cookie_encryption" => config.fetch("authenticated", true),
    "action_dispatch.signed_cookie_digest" => config.fetch("signed_digest"),
    "action_dispatch.cookies_serializer" => config.fetch("serializer", "json").to_sym,
    "action_dispatch.use_cookies_with_metadata" => config.fetch("metadata", true),
    "action_dispatch.cookies_rotations" => rotations(config),
    "action_dispatch.cookies_same_site_protection" => proc { :lax },
  )
end

# config.action_dispatch.cookies_rotations, as the Rails 7.0 upgrade guide sets it up for a
# new key digest (guides/source/upgrading_ruby_on_rails.md): the old generator's keys for
# both jars; and `rotate :signed, digest: "SHA1"` after changing signed_cookie_digest.
def rotations(config)
  rotations = ActiveSupport::Messages::RotationConfiguration.new
  if (old = config["rotate"])
    old_keys = key_generator(old.fetch("secret"), old.fetch("key_digest"))
    rotations.rotate :encrypted, old_keys.generate_key("authenticated encrypted cookie", 32)
    rotations.rotate :signed, old_keys.generate_key("signed cookie")
  end
  if (digest = config["rotate_signed_digest"])
    rotations.rotate :signed, digest: digest
  end
  rotations
end

# `cookies.<jar>[name] = { value:, expires: }` in a request, and the Set-Cookie it sends.
def write_cookie(config, jar, name, value, expires)
  request = ActionDispatch::Request.new(app_env(config))
  options = { value: value }
  options[:expires] = expires if expires
  request.cookie_jar.public_send(jar)[name] = options
  headers = {}
  request.cookie_jar.write(headers)
  headers.fetch("Set-Cookie")
end

# `cookies.<jar>[name]` in a request carrying `cookie_header`.
def read_cookie(config, jar, name, cookie_header)
  ActionDispatch::Request.new(app_env(config, cookie_header)).cookie_jar.public_send(jar)[name]
end

# The middleware Rails puts around an app for `config.session_store :cookie_store, key:`:
# ActionDispatch::Cookies, then ActionDispatch::Session::CookieStore.
def session_stack(key, expire_after, &app)
  inner = lambda do |env|
    app.call(ActionDispatch::Request.new(env).session)
    [200, {}, []]
  end
  ActionDispatch::Cookies.new(ActionDispatch::Session::CookieStore.new(inner, key: key, expire_after: expire_after))
end

def write_session(config, key, values, expire_after)
  stack = session_stack(key, expire_after) { |session| values.each { |k, v| session[k] = v } }
  _status, headers, _body = stack.call(app_env(config))
  headers.fetch("Set-Cookie")
end

def read_session(config, key, cookie_header)
  seen = nil
  stack = session_stack(key, nil) { |session| seen = session.to_hash }
  stack.call(app_env(config, cookie_header))
  # A cookie Rails could not read gives a fresh session: empty, or only a new session_id.
  (seen.keys - ["session_id"]).empty? ? nil : seen
end

# Rails 7.1+'s metadata envelope, which 6.1 cannot write. Following
# activesupport/lib/active_support/messages/metadata.rb (Rails 7.1 to today's main):
# serialize_with_metadata, when use_message_serializer_for_metadata? holds, calls
# wrap_in_metadata_envelope({ "data" => data }, ...), which adds "exp" (pick_expiry:
# expires_at.utc, or Time.now.utc.advance(seconds: expires_in), then .iso8601(3)) and "pur"
# (purpose.to_s) only when set, and serializes the envelope with the message serializer
# (JSON: ActiveSupport::JSON.encode); without metadata there is no envelope at all.
# MessageVerifier/MessageEncryptor then sign/encrypt that string, which 6.1's do as is when
# given NullSerializer and no metadata.
def data_envelope(value, purpose: nil, expires_at: nil, expires_in: nil)
  return ActiveSupport::JSON.encode(value) unless purpose || expires_at || expires_in
  hash = { "data" => value }
  expiry = expires_at ? expires_at.utc : (expires_in && Time.now.utc.advance(seconds: expires_in))
  hash["exp"] = expiry.iso8601(3) if expiry
  hash["pur"] = purpose.to_s if purpose
  ActiveSupport::JSON.encode({ "_rails" => hash })
end

# Reading it back, as Rails 7.1+'s deserialize_with_metadata and extract_from_metadata_envelope
# (same file) do: nil when expired (`Time.now.utc >= exp`) or for another purpose, and for a
# message without envelope when a purpose is expected ("missing metadata").
def read_data_envelope(string, purpose)
  return nil if string.nil?
  envelope = ActiveSupport::JSON.decode(string)
  return (purpose ? nil : envelope) unless envelope.is_a?(Hash) && envelope.key?("_rails")
  fields = envelope["_rails"]
  return nil if fields["exp"] && Time.now.utc >= Time.iso8601(fields["exp"])
  return nil if fields["pur"].to_s != purpose.to_s
  fields["data"]
end

# 6.1's MessageVerifier#verified and MessageEncryptor#decrypt_and_verify hand the verified
# payload to 6.1's Metadata.verify, which knows only the legacy envelope (and fails on a data
# one); 7.1+ read the data envelope in deserialize_with_metadata instead. While a data-envelope
# message is read, Metadata.verify hands the payload on untouched (what NullSerializer hands
# deserialize_with_metadata in 7.1+), and read_data_envelope does the rest. Signature, cipher
# and tag are still checked by 6.1's own code.
module PassThroughMetadata
  def verify(message, purpose)
    Thread.current[:pass_through_metadata] ? message : super
  end
end
ActiveSupport::Messages::Metadata.singleton_class.prepend(PassThroughMetadata)

def with_metadata_passed_through
  Thread.current[:pass_through_metadata] = true
  yield
ensure
  Thread.current[:pass_through_metadata] = false
end

def verifier(key_hex, digest, serializer)
  ActiveSupport::MessageVerifier.new([key_hex].pack("H*"), digest: digest, serializer: serializer)
end

def encryptor(key_hex, serializer)
  ActiveSupport::MessageEncryptor.new([key_hex].pack("H*"), cipher: "aes-256-gcm", serializer: serializer)
end

NULL = ActiveSupport::MessageEncryptor::NullSerializer

def expiry(seconds)
  seconds && Time.now + seconds
end

def fixtures
  secret = SecureRandom.hex(64)
  old_secret = SecureRandom.hex(64)
  user = { "name" => "Zoë <ada>", "roles" => ["admin"], "id" => 42 }
  out = []
  add = lambda do |fixture|
    config = fixture.fetch("config")
    line = fixture.delete("line")
    fixture["set_cookie"] = line
    fixture["cookie"] = line.split(";").first
    fixture["rails_reads"] =
      if fixture["kind"] == "session"
        read_session(config, fixture["name"], fixture["cookie"])
      else
        read_cookie(config.merge(fixture.fetch("read_config", {})), fixture["kind"], fixture["name"], fixture["cookie"])
      end
    out << fixture
  end

  %w[SHA1 SHA256].product(%w[SHA1 SHA256]).each do |key_digest, signed_digest|
    config = { "secret" => secret, "key_digest" => key_digest, "signed_digest" => signed_digest }
    tag = "#{key_digest}/#{signed_digest}"
    %w[encrypted signed].each do |jar|
      [["user_id", 42, nil, "ok"], ["user", user, 3600, "ok"], ["user_id", 7, -3600, "expired"]].each do |name, value, expires_in, expect|
        add.call("id" => "#{jar} #{tag} #{name} expires_in=#{expires_in.inspect}", "kind" => jar, "config" => config,
                 "name" => name, "value" => value, "expect" => expect,
                 "line" => write_cookie(config, jar, name, value, expiry(expires_in)))
      end
    end
    session = { "user_id" => 42, "warden.user.user.key" => [[42], "$2a$12$Kz3vQ9mT1xY7bN5cD8eF0u"],
                "_csrf_token" => SecureRandom.base64(32) }
    [[nil, "ok"], [3600, "ok"], [-3600, "expired"]].each do |expire_after, expect|
      add.call("id" => "session #{tag} expire_after=#{expire_after.inspect}", "kind" => "session", "config" => config,
               "name" => "_myapp_session", "value" => session, "expect" => expect,
               "line" => write_session(config, "_myapp_session", session, expire_after))
    end
  end

  sha256 = { "secret" => secret, "key_digest" => "SHA256", "signed_digest" => "SHA256" }
  # Devise without database_authenticatable: no salt.
  add.call("id" => "session without salt", "kind" => "session", "config" => sha256, "name" => "_myapp_session",
           "value" => { "warden.user.admin.key" => [["9b2e61c0-3d5f-4a7e-8c1b-0f6d2e4a8b3c"], nil] }, "expect" => "ok",
           "line" => write_session(sha256, "_myapp_session", { "warden.user.admin.key" => [["9b2e61c0-3d5f-4a7e-8c1b-0f6d2e4a8b3c"], nil] }, nil))

  # use_cookies_with_metadata off (Rails 5.2 defaults): no purpose, so no envelope unless expiring.
  no_metadata = sha256.merge("metadata" => false)
  %w[encrypted signed].each do |jar|
    [[nil, "ok"], [3600, "ok"]].each do |expires_in, expect|
      add.call("id" => "#{jar} without metadata expires_in=#{expires_in.inspect}", "kind" => jar, "config" => no_metadata,
               "name" => "user_id", "value" => 42, "expect" => expect,
               "line" => write_cookie(no_metadata, jar, "user_id", 42, expiry(expires_in)))
    end
  end

  # cookies_serializer :marshal: Ruby's Marshal format inside.
  marshal = sha256.merge("serializer" => "marshal")
  %w[encrypted signed].each do |jar|
    add.call("id" => "#{jar} marshal", "kind" => jar, "config" => marshal, "name" => "user_id", "value" => 42,
             "expect" => "marshal", "line" => write_cookie(marshal, jar, "user_id", 42, nil))
  end

  # use_authenticated_cookie_encryption off (before Rails 5.2's defaults): AES-256-CBC.
  cbc = sha256.merge("authenticated" => false)
  add.call("id" => "encrypted aes-256-cbc", "kind" => "encrypted", "config" => cbc, "name" => "user_id", "value" => 42,
           "expect" => "legacy_cipher", "line" => write_cookie(cbc, "encrypted", "user_id", 42, nil))

  # Rotations: made under the old secret and key digest (or the old signed digest), read by
  # Rails under the new configuration with cookies_rotations.
  old = { "secret" => old_secret, "key_digest" => "SHA1", "signed_digest" => "SHA256" }
  rotated = sha256.merge("rotate" => { "secret" => old_secret, "key_digest" => "SHA1" })
  %w[encrypted signed].each do |jar|
    add.call("id" => "#{jar} rotated secret", "kind" => jar, "config" => old, "read_config" => rotated,
             "rotate" => rotated["rotate"], "name" => "user_id", "value" => 42, "expect" => "rotated",
             "line" => write_cookie(old, "#{jar}", "user_id", 42, nil))
  end
  old_digest = sha256.merge("signed_digest" => "SHA1")
  add.call("id" => "signed rotated digest", "kind" => "signed", "config" => old_digest,
           "read_config" => sha256.merge("rotate_signed_digest" => "SHA1"), "rotate_signed_digest" => "SHA1",
           "name" => "user_id", "value" => 42, "expect" => "rotated",
           "line" => write_cookie(old_digest, "signed", "user_id", 42, nil))

  { "cookies" => out, "messages" => messages(secret, user) }
end

# MessageVerifier / MessageEncryptor messages in each envelope, keys from the app's generator.
def messages(secret, value)
  keys = key_generator(secret, "SHA256")
  verifier_key = keys.generate_key("messages", 64).unpack1("H*")
  encryptor_key = keys.generate_key("messages", 32).unpack1("H*")
  out = []
  [["login", 3600, "ok"], ["login", -3600, "expired"], [nil, nil, "ok"]].each do |purpose, expires_in, expect|
    %w[verifier encryptor].each do |kind|
      key = kind == "verifier" ? verifier_key : encryptor_key
      make = lambda do |serializer, payload, **metadata|
        if kind == "verifier"
          verifier(key, "SHA256", serializer).generate(payload, **metadata)
        else
          encryptor(key, serializer).encrypt_and_sign(payload, **metadata)
        end
      end
      base = { "kind" => kind, "key" => key, "digest" => "SHA256", "purpose" => purpose, "value" => value, "expect" => expect }
      # 6.1 writes the legacy envelope itself.
      legacy = make.call(JSON, value, purpose: purpose, expires_in: expires_in)
      out << base.merge("id" => "#{kind} legacy #{purpose.inspect} #{expires_in.inspect}", "envelope" => "legacy",
                        "message" => legacy)
      data = make.call(NULL, data_envelope(value, purpose: purpose, expires_in: expires_in))
      out << base.merge("id" => "#{kind} data #{purpose.inspect} #{expires_in.inspect}", "envelope" => "data",
                        "message" => data)
    end
  end
  out
end

# What Rails reads from each cookie or message the Rust side made.
def read(requests)
  requests.map do |r|
    value =
      case r.fetch("kind")
      when "encrypted", "signed" then read_cookie(r.fetch("config"), r["kind"], r.fetch("name"), r.fetch("cookie"))
      when "session" then read_session(r.fetch("config"), r.fetch("name"), r.fetch("cookie"))
      when "verifier", "encryptor"
        purpose = r["purpose"]
        if r.fetch("envelope") == "data"
          raw = with_metadata_passed_through do
            if r["kind"] == "verifier"
              verifier(r.fetch("key"), r.fetch("digest"), NULL).verified(r.fetch("message"))
            else
              encryptor(r.fetch("key"), NULL).decrypt_and_verify(r.fetch("message"))
            end
          end
          read_data_envelope(raw, purpose)
        elsif r["kind"] == "verifier"
          verifier(r.fetch("key"), r.fetch("digest"), JSON).verified(r.fetch("message"), purpose: purpose)
        else
          encryptor(r.fetch("key"), JSON).decrypt_and_verify(r.fetch("message"), purpose: purpose)
        end
      end
    { "id" => r["id"], "value" => value }
  end
end

# The request on stdin: {"mode": "fixtures"} or {"mode": "read", "input": [...]}.
request = JSON.parse($stdin.read)
case request["mode"]
when "fixtures" then puts JSON.generate(fixtures)
when "read" then puts JSON.generate(read(request.fetch("input")))
else abort "usage: echo '{\"mode\": \"fixtures\"|\"read\", ...}' | ruby cookies.rb"
end
