// The operator's view: every instance through the broker API, with the broker's
// credentials. Rows are updated in place so polling never steals focus from a control.

import {$, busy, el, report} from './dom.js';
import {every} from './poll.js';

const LIST_EVERY_MS = 5000;
const STATUS_EVERY_MS = 1000;
const enc = encodeURIComponent;

// GET /resources/{name}/status answers with its HTTP code, as Tsuru reads it.
const STATUS_BY_CODE = {202: 'pending', 204: 'running', 500: 'failed', 200: 'removing'};

function infoValue(info, label) {
  const item = info.find((entry) => entry.label === label);
  return item ? item.value : '?';
}

export class OperatorView {
  constructor(root, api, username, showError) {
    this.root = root;
    this.api = api;
    this.username = username;
    this.showError = showError;
    this.plans = [];
    this.rows = new Map();
    this.watchers = new Map();
    this.stopList = null;

    $('#create-form', root).onsubmit = (event) => this.create(event);
    $('#refresh', root).onclick = () => this.refresh().catch((error) => showError(error.message));
  }

  async start(plans) {
    this.plans = plans;
    const choice = $('#create-plan', this.root);
    choice.replaceChildren(...plans.map((plan) => el('option', {value: plan.name}, plan.name)));
    const describe = () => {
      const plan = plans.find((candidate) => candidate.name === choice.value);
      $('#plan-description', this.root).textContent = plan ? plan.description : '';
    };
    choice.onchange = describe;
    describe();
    this.stopList = every(LIST_EVERY_MS, () => this.refresh(), this.showError);
  }

  stop() {
    if (this.stopList) this.stopList();
    this.watchers.forEach((stop) => stop());
    this.watchers.clear();
    this.rows.clear();
    $('#instances tbody', this.root).replaceChildren();
    for (const id of ['create-result', 'instance-result']) report($(`#${id}`, this.root), '');
  }

  async refresh() {
    const listing = await this.api.get('resources');
    const names = new Set(listing.map((instance) => instance.name));
    for (const name of this.rows.keys()) {
      if (!names.has(name) && !this.watchers.has(name)) this.removeRow(name);
    }

    for (const instance of listing) {
      const row = this.rows.get(instance.name) || this.addRow(instance.name);
      this.fill(row, instance);
      if (['pending', 'removing'].includes(instance.status)) this.watch(instance.name);
    }
    $('#instances-empty', this.root).hidden = this.rows.size > 0;
    await Promise.all(listing.map((instance) => this.loadInfo(instance.name)));
    this.showError('');
  }

  async loadInfo(name) {
    const answer = await this.api.send('GET', `resources/${enc(name)}`);
    const row = this.rows.get(name);
    if (!row || !answer.ok) return;
    const info = JSON.parse(answer.text);
    row.subscribers.textContent = infoValue(info, 'Subscribers');
    row.messages.textContent = infoValue(info, 'Messages retained');
  }

  addRow(name) {
    const cell = (label, className) => el('td', {'data-label': label, class: className}, '…');
    const label = `Plan for ${name}`;
    const row = {
      status: cell('Status'), plan: cell('Plan'), replicas: cell('Replicas', 'number'),
      team: cell('Team'), subscribers: cell('Subscribers', 'number'),
      messages: cell('Messages', 'number'),
      planChoice: el('select', {'aria-label': label}, ...this.plans.map((plan) =>
        el('option', {value: plan.name}, plan.name))),
    };
    row.tr = el('tr', {'data-instance': name},
      el('th', {scope: 'row'}, name), row.status, row.plan, row.replicas, row.team,
      row.subscribers, row.messages,
      el('td', {class: 'actions'}, el('div', {}, row.planChoice,
        el('button', {type: 'button', class: 'quiet', 'aria-label': `Change plan of ${name}`,
          onclick: (event) => this.changePlan(name, event.currentTarget)}, 'Change plan'),
        el('button', {type: 'button', class: 'danger', 'aria-label': `Remove ${name}`,
          onclick: (event) => this.remove(name, event.currentTarget)}, 'Remove'))));

    this.rows.set(name, row);
    $('#instances tbody', this.root).append(row.tr);
    $('#instances-empty', this.root).hidden = true;
    return row;
  }

  removeRow(name) {
    const row = this.rows.get(name);
    if (row) row.tr.remove();
    this.rows.delete(name);
    $('#instances-empty', this.root).hidden = this.rows.size > 0;
  }

  fill(row, instance) {
    this.showStatus(row, instance.status, instance.reason);
    row.plan.textContent = instance.plan;
    row.replicas.textContent = String(instance.replicas ?? '?');
    row.team.textContent = instance.team || '—';
    if (document.activeElement !== row.planChoice) row.planChoice.value = instance.plan;
  }

  showStatus(row, status, reason) {
    const label = el('span', {class: `status status-${status}`}, status);
    row.status.replaceChildren(label, ...(reason ? [el('span', {class: 'reason'}, reason)] : []));
    row.tr.dataset.status = status;
  }

  /** Follow one instance's status every second until it settles (running, failed, gone). */
  watch(name) {
    if (this.watchers.has(name)) return;

    const stop = every(STATUS_EVERY_MS, async () => {
      const answer = await this.api.send('GET', `resources/${enc(name)}/status`);
      const row = this.rows.get(name);
      if (answer.status === 404) return this.settle(name, `${name} is gone.`, true);
      const status = STATUS_BY_CODE[answer.status];
      if (!status) throw new Error(answer.message);
      if (row) this.showStatus(row, status, status === 'failed' ? answer.text : '');
      if (status === 'running') this.settle(name, `${name} is running.`);
      if (status === 'failed') this.settle(name, `${name} failed: ${answer.text}`);
    }, this.showError);
    this.watchers.set(name, stop);
  }

  settle(name, message, gone = false) {
    const stop = this.watchers.get(name);
    if (stop) stop();
    this.watchers.delete(name);
    if (gone) this.removeRow(name);
    else this.refresh().catch((error) => this.showError(error));
    report($('#instance-result', this.root), message, message.includes('failed') ? 'error' : 'ok');
  }

  async create(event) {
    event.preventDefault();
    const form = event.currentTarget;
    const result = $('#create-result', this.root);
    const fields = {
      name: form.elements.name.value.trim(), plan: form.elements.plan.value,
      team: form.elements.team.value.trim(), user: this.username,
    };

    await busy(form.querySelector('button'), async () => {
      try {
        await this.api.call('POST', 'resources', {form: fields});
        report(result, `Instance ${fields.name} created; provisioning…`);
        form.elements.name.value = '';
        const row = this.rows.get(fields.name) || this.addRow(fields.name);
        this.fill(row, {...fields, status: 'pending', replicas: '…'});
        this.watch(fields.name);
      } catch (error) {
        report(result, error.message, 'error');
      }
    });
  }

  async changePlan(name, button) {
    const result = $('#instance-result', this.root);
    const plan = this.rows.get(name).planChoice.value;
    await busy(button, async () => {
      try {
        await this.api.call('PUT', `resources/${enc(name)}`, {form: {plan}});
        report(result, `${name} now uses plan ${plan}.`);
        await this.refresh();
      } catch (error) {
        report(result, error.message, 'error');
      }
    });
  }

  async remove(name, button) {
    const result = $('#instance-result', this.root);
    if (!window.confirm(`Remove instance ${name}? Its replicas and messages are deleted.`)) {
      return;
    }
    await busy(button, async () => {
      try {
        await this.api.call('DELETE', `resources/${enc(name)}`, {form: {user: this.username}});
        report(result, `Removing ${name}…`);
        this.showStatus(this.rows.get(name), 'removing', '');
        this.watch(name);
      } catch (error) {
        report(result, error.message, 'error');
      }
    });
  }
}
