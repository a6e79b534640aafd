// The publisher's view of one instance: channels, stats, a publish box and a live pane.
// Everything goes through the push-api with the instance's publisher credentials.

import {$, busy, el, localTime, report, words} from './dom.js';
import {LivePane} from './live.js';
import {every} from './poll.js';

const STATS_EVERY_MS = 2000;
const CHANNELS_EVERY_MS = 5000;

const GLOBAL_FIGURES = [
  ['subscribers', 'Subscribers'], ['channels', 'Channels'],
  ['published_messages', 'Published'], ['stored_messages', 'Stored'],
  ['delivered', 'Delivered'], ['lag', 'Lag'], ['agents', 'Agents reporting'],
];

const enc = encodeURIComponent;

export class InstanceView {
  constructor(root, api, identity, showError) {
    this.root = root;
    this.api = api;
    this.identity = identity;
    this.showError = showError;
    this.rows = new Map();
    this.stoppers = [];
    this.latestSubscribers = 0;
    this.live = new LivePane(root, () => this.latestSubscribers);

    $('#publish-form', root).onsubmit = (event) => this.publish(event);
    $('#channel-form', root).onsubmit = (event) => this.createChannel(event);
  }

  async start() {
    $('#instance-name', this.root).textContent = this.identity.instance;
    this.stoppers.push(
      every(CHANNELS_EVERY_MS, () => this.loadChannels(), this.showError),
      every(STATS_EVERY_MS, () => this.loadStats(), this.showError));

    // Without the push-stream URL only the live pane is lost; the rest keeps working.
    try {
      const config = await this.api.get('api/v1/config');
      $('#push-stream-url', this.root).textContent = config.pushStream.url;
      this.live.start(config.pushStream.url);
    } catch (error) {
      report($('#live-state', this.root), `Live pane unavailable: ${error.message}`, 'error');
    }
  }

  stop() {
    this.stoppers.forEach((stop) => stop());
    this.stoppers = [];
    this.live.stop();
    this.rows.clear();
    $('#channels tbody', this.root).replaceChildren();
    $('#global-stats', this.root).replaceChildren();
    for (const id of ['publish-result', 'channel-result']) report($(`#${id}`, this.root), '');
  }

  async loadStats() {
    const stats = await this.api.get('api/v1/stats/global');
    this.latestSubscribers = Number(stats.aggregated.subscribers) || 0;
    $('#global-stats', this.root).replaceChildren(...GLOBAL_FIGURES.map(([key, label]) =>
      el('div', {}, el('dt', {}, label), el('dd', {}, String(stats.aggregated[key] ?? 0)))));

    await Promise.all([...this.rows.keys()].map((id) => this.loadChannelStats(id)));
    this.showError('');
  }

  async loadChannelStats(id) {
    const answer = await this.api.send('GET', `api/v1/stats/channels/${enc(id)}`);
    const row = this.rows.get(id);
    if (!row || !answer.ok) return;
    const stats = JSON.parse(answer.text).aggregated;
    row.subscribers.textContent = String(stats.subscribers);
    row.messages.textContent = String(stats.published_messages);
  }

  async loadChannels() {
    const channels = await this.api.get('api/v1/channels');
    const listed = new Set(channels.map((channel) => channel.id));
    for (const [id, row] of this.rows) {
      if (!listed.has(id)) {
        row.tr.remove();
        this.rows.delete(id);
      }
    }
    for (const channel of channels) {
      if (!this.rows.has(channel.id)) this.addRow(channel);
    }
    $('#channels-empty', this.root).hidden = this.rows.size > 0;
  }

  addRow(channel) {
    const cell = (label, text, className) =>
      el('td', {'data-label': label, class: className}, text);
    const row = {
      subscribers: cell('Subscribers', '…', 'number'),
      messages: cell('Messages', '…', 'number'),
    };
    row.tr = el('tr', {'data-channel': channel.id},
      el('th', {scope: 'row'}, channel.id),
      cell('TTL', channel.ttl ? `${channel.ttl} s` : 'persistent'),
      cell('Created', localTime(channel.created)),
      row.subscribers, row.messages,
      el('td', {class: 'actions'}, el('div', {},
        el('button', {type: 'button', class: 'quiet', 'aria-label': `Watch ${channel.id} live`,
          onclick: () => this.live.watch(channel.id)}, 'Watch live'),
        el('button', {type: 'button', class: 'danger', 'aria-label': `Delete ${channel.id}`,
          onclick: (event) => this.deleteChannel(channel.id, event.currentTarget)},
        'Delete'))));

    this.rows.set(channel.id, row);
    const rows = [...this.rows.keys()].sort();
    const before = this.rows.get(rows[rows.indexOf(channel.id) + 1]);
    $('#channels tbody', this.root).insertBefore(row.tr, before ? before.tr : null);
    this.loadChannelStats(channel.id).catch(() => {});
  }

  async createChannel(event) {
    event.preventDefault();
    const form = event.currentTarget;
    const result = $('#channel-result', this.root);
    const body = {id: form.elements.id.value.trim(), ttl: Number(form.elements.ttl.value)};

    await busy(form.querySelector('button'), async () => {
      try {
        const channel = await this.api.call('POST', 'api/v1/channels', {json: body});
        report(result, `Channel ${channel.id} created.`);
        form.elements.id.value = '';
        await this.loadChannels();
      } catch (error) {
        report(result, error.message, 'error');
      }
    });
  }

  async deleteChannel(id, button) {
    const result = $('#channel-result', this.root);
    await busy(button, async () => {
      try {
        await this.api.call('DELETE', `api/v1/channels/${enc(id)}`);
        report(result, `Channel ${id} deleted.`);
        await this.loadChannels();
      } catch (error) {
        report(result, error.message, 'error');
      }
    });
  }

  async publish(event) {
    event.preventDefault();
    const form = event.currentTarget;
    const result = $('#publish-result', this.root);
    const body = {channels: words(form.elements.channels.value),
      content: form.elements.content.value};

    await busy(form.querySelector('button'), async () => {
      try {
        const sent = await this.api.call('POST', 'api/v1/messages', {json: body});
        report(result, `Published: id ${sent.id} to ${sent.channels.join(', ')}.`);
      } catch (error) {
        report(result, error.message, 'error');
      }
    });
  }
}
