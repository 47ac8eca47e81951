# Values made by Rails' own Ruby code, for tests/it/turbo.rs. Reads one JSON request on stdin,
# prints one JSON answer on stdout.
#
# turbo-rails is not packaged by Debian, so this script makes the exact calls turbo-rails makes
# (github.com/hotwired/turbo-rails, v8.0.21), with Debian's Rails 6.1 libraries:
#
# - the key, lib/turbo/engine.rb, initializer "turbo.signed_stream_verifier_key" (lines 87-92):
#   `config.turbo.signed_stream_verifier_key || Rails.application.key_generator
#   .generate_key("turbo/signed_stream_verifier_key")`, where Rails' application key generator
#   is `ActiveSupport::KeyGenerator.new(secret_key_base, iterations: 1000)` with the app's
#   `key_generator_hash_digest_class` (railties/lib/rails/application.rb, `key_generator`);
# - the verifier, lib/turbo-rails.rb line 15: `ActiveSupport::MessageVerifier.new(key,
#   digest: "SHA256", serializer: JSON)`, whose `generate` signs and `verified` verifies
#   (app/channels/turbo/streams/stream_name.rb lines 7-14);
# - stream names, app/channels/turbo/streams/stream_name.rb lines 24-30: each streamable's
#   `try(:to_gid_param) || to_param`, joined with ":";
# - the HTML, app/helpers/turbo/streams/action_helper.rb lines 28-38
#   (`turbo_stream_action_tag`): `tag.turbo_stream(template, **attributes, action:, target:)`
#   (or `targets:`), the template `tag.template(content.html_safe)` except for remove and
#   refresh; app/models/turbo/streams/tag_builder.rb line 251 passes `method:` as the one
#   attribute; and app/helpers/turbo/streams_helper.rb lines 56-62 (`turbo_stream_from`):
#   `tag.turbo_cable_stream_source(channel: "Turbo::StreamsChannel", "signed-stream-name": …)`.
#
# Requests ({"mode": …}):
#   sign:   {secret_key_base, key_hex, names}  → {sha1: [signed], sha256: [signed], explicit: [signed]}
#           (the names signed with the key derived with each digest, and with the explicit key)
#   verify: {key_hex, messages}                → {verified: [name or null]}
#   names:  {app, records: [[model, id]], streamables: [[part]]}
#           → {gid_params: [param], stream_names: [name]}; a part is a string, an integer,
#           {"symbol": s} or {"record": [model, id]}
#   html:   {cases: [{action, target | targets, html | text, method}], stream_from: [signed]}
#           → {tags: [html], stream_sources: [html], escaped: [text escaped]}

require "json"
require "base64"
require "openssl"
require "active_support"
require "active_support/key_generator"
require "active_support/message_verifier"
require "active_support/core_ext/object/try"
require "active_support/core_ext/object/to_query"
require "action_view"
require "global_id"

SALT = "turbo/signed_stream_verifier_key"

def turbo_verifier(key)
  ActiveSupport::MessageVerifier.new(key, digest: "SHA256", serializer: JSON)
end

# Rails' application key generator with `key_generator_hash_digest_class` = digest_class.
# Rails 6.1's KeyGenerator knows only SHA1; from 7.0 it takes `hash_digest_class:`, and its
# generate_key is `OpenSSL::PKCS5.pbkdf2_hmac(@secret, salt, @iterations, key_size,
# @hash_digest_class.new)` (activesupport/lib/active_support/key_generator.rb, line 45 on Rails'
# main branch): that call is made here when the installed Rails is older.
def derived_key(secret_key_base, digest_class)
  if ActiveSupport::KeyGenerator.respond_to?(:hash_digest_class)
    ActiveSupport::KeyGenerator.new(secret_key_base, iterations: 1000, hash_digest_class: digest_class)
      .generate_key(SALT)
  elsif digest_class == OpenSSL::Digest::SHA1
    ActiveSupport::KeyGenerator.new(secret_key_base, iterations: 1000).generate_key(SALT)
  else
    OpenSSL::PKCS5.pbkdf2_hmac(secret_key_base, SALT, 1000, 64, digest_class.new)
  end
end

# A model with a GlobalID, as an Active Record model is (GlobalID::Identification).
class Record
  include GlobalID::Identification
  attr_reader :id

  def self.named(model)
    @classes ||= {}
    @classes[model] ||= Class.new(Record) { define_singleton_method(:name) { model } }
  end

  def initialize(id)
    @id = id
  end
end

def streamable(part)
  case part
  when Hash
    if part.key?("symbol") then part["symbol"].to_sym
    else Record.named(part["record"][0]).new(part["record"][1])
    end
  else part
  end
end

# turbo-rails' stream_name_from, as stream_name.rb does it.
def stream_name_from(streamables)
  if streamables.is_a?(Array)
    streamables.map { |streamable| stream_name_from(streamable) }.join(":")
  else
    streamables.then { |streamable| streamable.try(:to_gid_param) || streamable.to_param }
  end
end

class Tags
  include ActionView::Helpers::TagHelper

  # turbo_stream_action_tag with the attributes TagBuilder#action passes.
  def action_tag(action, target: nil, targets: nil, template: nil, **attributes)
    template = action.to_sym.in?(%i[remove refresh]) ? "" : tag.template(template.to_s.html_safe)
    if target
      tag.turbo_stream(template, **attributes, action: action, target: target)
    elsif targets
      tag.turbo_stream(template, **attributes, action: action, targets: targets)
    else
      tag.turbo_stream(template, **attributes, action: action)
    end
  end

  def stream_source(signed)
    tag.turbo_cable_stream_source(channel: "Turbo::StreamsChannel", "signed-stream-name": signed)
  end
end

request = JSON.parse($stdin.read)
answer =
  case request.fetch("mode")
  when "sign"
    names = request.fetch("names")
    sign_all = ->(key) { names.map { |name| turbo_verifier(key).generate(name) } }
    {
      sha1: sign_all.(derived_key(request.fetch("secret_key_base"), OpenSSL::Digest::SHA1)),
      sha256: sign_all.(derived_key(request.fetch("secret_key_base"), OpenSSL::Digest::SHA256)),
      explicit: sign_all.([request.fetch("key_hex")].pack("H*")),
    }
  when "verify"
    verifier = turbo_verifier([request.fetch("key_hex")].pack("H*"))
    { verified: request.fetch("messages").map { |message| verifier.verified(message) } }
  when "names"
    GlobalID.app = request.fetch("app")
    {
      gid_params: request.fetch("records").map { |model, id| Record.named(model).new(id).to_gid_param },
      stream_names: request.fetch("streamables").map { |parts| stream_name_from(parts.map { |p| streamable(p) }) },
    }
  when "html"
    tags = Tags.new
    {
      tags: request.fetch("cases").map do |c|
        content = c.key?("text") ? ERB::Util.html_escape(c["text"]) : c["html"]
        attributes = { method: c["method"] }
        tags.action_tag(c.fetch("action"), target: c["target"], targets: c["targets"], template: content, **attributes)
      end,
      stream_sources: request.fetch("stream_from").map { |signed| tags.stream_source(signed) },
      escaped: request.fetch("cases").filter_map { |c| c["text"] && ERB::Util.html_escape(c["text"]).to_str },
    }
  else
    abort "unknown mode #{request["mode"].inspect}"
  end
puts JSON.generate(answer)
