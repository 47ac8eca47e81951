// Which notification links the page turns into an <a>: a path on this site, or an http(s) URL
// with a host, in printable ASCII. The server refuses anything else when the notification is
// posted (examples/demo/src/validate.rs); the page checks again, because what it renders came
// from the server's database, whatever put it there.
//
// Refused: a backslash anywhere (browsers read `\` as `/`, so `/\evil.example` opens another
// site), `//host` (protocol-relative), spaces and control characters (browsers drop tabs and
// newlines: `/\t/evil.example` becomes `//evil.example`), non-ASCII, and every other scheme
// (`javascript:`, `data:`, …). Then the browser's own URL parser must agree: a path must
// resolve to this origin, a URL must be http(s).

const MAX_LINK_LENGTH = 2000;
const PRINTABLE_ASCII_WITHOUT_BACKSLASH = /^[\x21-\x5b\x5d-\x7e]+$/;

/**
 * The link to render for `link`, or null when it must not become a link:
 * `{ href, external }` (external: another origin, opened with rel="noopener noreferrer").
 */
export function safeLink(link, base = globalThis.location?.href) {
  if (typeof link !== "string" || link.length === 0 || link.length > MAX_LINK_LENGTH) return null;
  if (!PRINTABLE_ASCII_WITHOUT_BACKSLASH.test(link)) return null;
  let url;
  try {
    url = new URL(link, base);
  } catch {
    return null;
  }
  if (link.startsWith("/")) {
    if (link.startsWith("//")) return null;
    if (url.origin !== new URL(base).origin) return null;
    return { href: url.href, external: false };
  }
  if (!/^https?:\/\/[^/]/.test(link)) return null;
  if (url.protocol !== "https:" && url.protocol !== "http:") return null;
  return { href: url.href, external: url.origin !== new URL(base).origin };
}
