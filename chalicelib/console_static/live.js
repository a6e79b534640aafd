// The live subscriber pane: an EventSource on the instance's push-stream, exactly what an
// end user's browser opens, showing each envelope {id, channel, text, time} as it arrives.

import {drawChart, WINDOW} from './chart.js';
import {$, el, localTime, report, words} from './dom.js';

const KEPT_MESSAGES = 100;

export class LivePane {
  /** subscribers(): the latest subscriber count known from the stats. */
  constructor(root, subscribers) {
    this.root = root;
    this.subscribers = subscribers;
    this.source = null;
    this.streamUrl = '';
    this.received = 0;
    this.seen = new Set();
    this.samples = [];
    this.state = $('#live-state', root);
    this.list = $('#live-messages', root);
    this.connectButton = $('#live-connect', root);
    this.disconnectButton = $('#live-disconnect', root);

    $('#live-form', root).onsubmit = (event) => {
      event.preventDefault();
      this.connect(words($('#live-channels', root).value));
    };
    this.disconnectButton.onclick = () => this.disconnect('Disconnected.');
  }

  start(streamUrl) {
    this.streamUrl = streamUrl.replace(/\/+$/, '');
    this.sampler = setInterval(() => this.sample(), 1000);
    this.sample();
  }

  stop() {
    clearInterval(this.sampler);
    this.streamUrl = '';
    this.disconnect('Not connected.');
    this.list.replaceChildren();
    this.samples = [];
  }

  watch(channel) {
    $('#live-channels', this.root).value = channel;
    this.connect([channel]);
  }

  connect(channels) {
    if (!channels.length || !this.streamUrl) return;
    this.disconnect();

    const path = channels.map(encodeURIComponent).join('/');
    const source = new EventSource(`${this.streamUrl}/ev/${path}`);
    this.source = source;
    report(this.state, `Connecting to ${channels.join(', ')}…`, 'info');
    this.connectButton.disabled = true;
    this.disconnectButton.disabled = false;

    source.onopen = () => {
      report(this.state, `Connected to ${channels.join(', ')}.`, 'info');
    };
    source.onmessage = (event) => this.show(event.data);
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        this.disconnect();
        report(this.state, 'The push stream closed the connection.', 'error');
      } else {
        report(this.state, 'Connection lost; reconnecting (missed messages are replayed)…',
          'info');
      }
    };
  }

  disconnect(message) {
    if (this.source) this.source.close();
    this.source = null;
    this.connectButton.disabled = false;
    this.disconnectButton.disabled = true;
    if (message) report(this.state, message, 'info');
  }

  show(data) {
    let envelope;
    try {
      envelope = JSON.parse(data);
    } catch {
      envelope = {text: data};
    }

    // A reconnect to another replica may replay a message: the envelope id tells.
    const key = `${envelope.id}/${envelope.channel}`;
    if (envelope.id && this.seen.has(key)) return;
    this.seen.add(key);
    this.received += 1;

    const meta = [localTime(envelope.time), envelope.channel ?? '?', `id ${envelope.id ?? '?'}`];
    this.list.prepend(el('li', {},
      el('span', {class: 'meta'}, meta.join(' · ')),
      el('span', {class: 'text'}, String(envelope.text ?? ''))));
    while (this.list.children.length > KEPT_MESSAGES) this.list.lastElementChild.remove();
    if (this.seen.size > 10 * KEPT_MESSAGES) this.seen.delete(this.seen.values().next().value);
  }

  sample() {
    this.samples.push({rate: this.received, subscribers: this.subscribers()});
    this.received = 0;
    if (this.samples.length > WINDOW) this.samples.shift();
    drawChart($('#live-chart', this.root), $('#chart-summary', this.root), this.samples);
  }
}
