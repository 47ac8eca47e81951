// Values made by Node's `crypto` for AnyCable's signed streams, for tests/it/signed_streams.rs.
// Reads one JSON request on stdin, prints one JSON answer on stdout.
//
// Signing is the JavaScript version in AnyCable's docs/signed_streams.md ("Signing algorithm",
// github.com/anycable/anycable); verifying recomputes that digest and compares in constant time.
//
// Requests ({"mode": …}):
//   sign:   {secret, names}    → {signed: [signed]}
//   verify: {secret, messages} → {verified: [name or null]}

import { createHmac, timingSafeEqual } from "node:crypto";

function sign(secret, streamName) {
  const encoded = Buffer.from(JSON.stringify(streamName)).toString("base64");
  const digest = createHmac("sha256", secret).update(encoded).digest("hex");
  return `${encoded}--${digest}`;
}

function verify(secret, message) {
  const at = message.lastIndexOf("--");
  if (at <= 0) return null;
  const [encoded, digest] = [message.slice(0, at), message.slice(at + 2)];
  const expected = createHmac("sha256", secret).update(encoded).digest("hex");
  if (digest.length !== expected.length || !timingSafeEqual(Buffer.from(digest), Buffer.from(expected))) return null;
  const value = JSON.parse(Buffer.from(encoded, "base64").toString("utf8"));
  return typeof value === "string" ? value : null;
}

let input = "";
for await (const chunk of process.stdin) input += chunk;
const request = JSON.parse(input);
let answer;
switch (request.mode) {
  case "sign":
    answer = { signed: request.names.map((name) => sign(request.secret, name)) };
    break;
  case "verify":
    answer = { verified: request.messages.map((message) => verify(request.secret, message)) };
    break;
  default:
    throw new Error(`unknown mode ${request.mode}`);
}
process.stdout.write(JSON.stringify(answer) + "\n");
