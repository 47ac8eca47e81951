# Values made in Ruby for AnyCable's signed streams, for tests/it/signed_streams.rs. Reads one
# JSON request on stdin, prints one JSON answer on stdout.
#
# AnyCable's signing algorithm is given in Ruby in its docs/signed_streams.md ("Signing
# algorithm", github.com/anycable/anycable): the secret as the HMAC key, as it is:
#
#   encoded = ::Base64.strict_encode64(JSON.dump(stream_name))
#   digest = OpenSSL::HMAC.hexdigest("SHA256", SECRET_KEY, encoded)
#   signed_stream_name = "#{encoded}--#{digest}"
#
# The same page says it is Rails' MessageVerifier's algorithm, so names are also signed and
# verified with `ActiveSupport::MessageVerifier.new(secret, digest: "SHA256", serializer: JSON)`.
#
# Requests ({"mode": …}):
#   sign:   {secret, names}    → {documented: [signed], message_verifier: [signed]}
#   verify: {secret, messages} → {verified: [name or null]}

require "json"
require "base64"
require "openssl"
require "active_support"
require "active_support/message_verifier"

request = JSON.parse($stdin.read)
secret = request.fetch("secret")
verifier = ActiveSupport::MessageVerifier.new(secret, digest: "SHA256", serializer: JSON)
answer =
  case request.fetch("mode")
  when "sign"
    names = request.fetch("names")
    {
      documented: names.map do |stream_name|
        encoded = ::Base64.strict_encode64(JSON.dump(stream_name))
        digest = OpenSSL::HMAC.hexdigest("SHA256", secret, encoded)
        "#{encoded}--#{digest}"
      end,
      message_verifier: names.map { |name| verifier.generate(name) },
    }
  when "verify"
    { verified: request.fetch("messages").map { |message| verifier.verified(message) } }
  else
    abort "unknown mode #{request["mode"].inspect}"
  end
puts JSON.generate(answer)
