// Small DOM helpers shared by the page's modules. Text always goes in as text (never as HTML).

/** `el("li", { class: "x", dataset: { id: 1 } }, "text", child)`: an element with attributes and children. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** The element with this id (throws if the page lacks it: a typo should fail loudly). */
export function byId(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`the page has no #${id}`);
  return node;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** A <time> for an RFC 3339 timestamp: hours and minutes, the full date in its tooltip. */
export function timeEl(iso) {
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return el("time", {}, "");
  return el("time", { datetime: iso, title: dateTimeFormat.format(at) }, timeFormat.format(at));
}

/** Shows a field's error message (or hides it when `message` is empty) and marks the field invalid. */
export function setFieldError(input, errorNode, message) {
  errorNode.textContent = message || "";
  errorNode.hidden = !message;
  if (message) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
}

// A stable colour per user name: one of app.css's `.avatar-0` … `.avatar-7` (classes, not a
// style attribute, which the page's CSP refuses).
const AVATAR_COLOURS = 8;

/** A round badge with the user's initial, in the user's colour (decorative). */
export function avatar(name) {
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return el("span", { class: `avatar avatar-${hash % AVATAR_COLOURS}`, "aria-hidden": "true" }, [...name][0].toUpperCase());
}
