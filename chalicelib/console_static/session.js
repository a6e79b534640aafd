// Credentials of the signed-in user. They live in sessionStorage only (this tab, gone when
// it closes), never in localStorage or cookies, and sign-out removes them.

const KEY = 'pushaas.console.session';

export function load() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(KEY));
    const valid = saved && ['publisher', 'operator'].includes(saved.role)
      && typeof saved.username === 'string' && typeof saved.password === 'string';
    return valid ? saved : null;
  } catch {
    return null;
  }
}

export function save(session) {
  const {role, username, password} = session;
  sessionStorage.setItem(KEY, JSON.stringify({role, username, password}));
}

export function clear() {
  sessionStorage.removeItem(KEY);
}
