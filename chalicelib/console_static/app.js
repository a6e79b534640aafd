// Entry point: sign in, pick the view for the credentials' role, sign out.

import {Api} from './api.js';
import {$, busy, report} from './dom.js';
import {InstanceView} from './instance.js';
import {OperatorView} from './operator.js';
import * as session from './session.js';

const alertBox = $('#alert');
let view = null;

function showError(error) {
  alertBox.textContent = typeof error === 'string' ? error : String(error?.message ?? error);
}

/** Check credentials against the API of their role; what the view needs to start. */
async function verify(credentials) {
  const api = new Api(credentials);
  if (credentials.role === 'operator') {
    return {api, plans: await api.get('resources/plans')};
  }
  return {api, identity: await api.get('api/v1/auth')};
}

function showOnly(sectionId) {
  for (const id of ['sign-in', 'operator', 'instance']) $(`#${id}`).hidden = id !== sectionId;
}

async function enter(credentials, checked) {
  const {role, username} = credentials;
  if (role === 'operator') {
    view = new OperatorView($('#operator'), checked.api, username, showError);
    showOnly('operator');
    $('#who').textContent = `Operator ${username}`;
  } else {
    view = new InstanceView($('#instance'), checked.api, checked.identity, showError);
    showOnly('instance');
    $('#who').textContent = `Publisher of ${checked.identity.instance}`;
  }
  $('#who').hidden = false;
  $('#sign-out').hidden = false;
  $('#main').focus();
  try {
    await view.start(checked.plans);
  } catch (error) {
    showError(error);
  }
}

function signOut(message = '') {
  if (view) view.stop();
  view = null;
  session.clear();
  $('#password').value = '';
  $('#who').hidden = true;
  $('#sign-out').hidden = true;
  showError('');
  showOnly('sign-in');
  report($('#sign-in-result'), message, message ? 'error' : 'ok');
  $('#username').focus();
}

async function signIn(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const credentials = {
    role: form.elements.role.value,
    username: form.elements.username.value.trim(),
    password: form.elements.password.value,
  };

  await busy(form.querySelector('button[type=submit]'), async () => {
    try {
      report($('#sign-in-result'), 'Checking…');
      const checked = await verify(credentials);
      session.save(credentials);
      report($('#sign-in-result'), '');
      form.elements.password.value = '';
      await enter(credentials, checked);
    } catch (error) {
      report($('#sign-in-result'), error.message, 'error');
    }
  });
}

async function resume() {
  const saved = session.load();
  if (!saved) return signOut();

  // The saved credentials may have been revoked (instance removed) since the last load.
  try {
    await enter(saved, await verify(saved));
  } catch (error) {
    signOut(error.message);
  }
}

$('#sign-in-form').addEventListener('submit', signIn);
$('#sign-out').addEventListener('click', () => signOut());
window.addEventListener('unhandledrejection', (event) => showError(event.reason));
resume();
