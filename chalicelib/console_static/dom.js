// Small DOM helpers. Text always goes in as text nodes, never as HTML, so nothing the API
// or a publisher sends can become markup in the console.

export const $ = (selector, root = document) => root.querySelector(selector);

/** el('td', {class: 'x', 'data-label': 'Name'}, 'text', childNode) */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

/** Show a request's outcome under its form: the API's message on failure. */
export function report(target, message, kind = 'ok') {
  target.textContent = message;
  target.classList.toggle('error', kind === 'error');
  target.classList.toggle('ok', kind === 'ok');
}

/** Run fn with the button disabled, so a double click cannot send twice. */
export async function busy(button, fn) {
  button.disabled = true;
  try {
    return await fn();
  } finally {
    button.disabled = false;
  }
}

/** Words of a "a, b c" field: how several channels are typed. */
export const words = (text) => text.split(/[\s,]+/).filter(Boolean);

export function localTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleTimeString();
}
