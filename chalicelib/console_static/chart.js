// The live pane's chart: two series over the last minute, drawn as inline SVG polylines.
// Each series is scaled to its own peak (their units differ); the caption says the values.

const SVG = 'http://www.w3.org/2000/svg';
const WIDTH = 600;
const HEIGHT = 120;
const MARGIN = 6;
export const WINDOW = 60;

function line(values, peak, className) {
  const step = WIDTH / (WINDOW - 1);
  const offset = WINDOW - values.length;
  const points = values.map((value, index) => {
    const x = (offset + index) * step;
    const y = HEIGHT - MARGIN - (value / peak) * (HEIGHT - 2 * MARGIN);
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  });
  const polyline = document.createElementNS(SVG, 'polyline');
  polyline.setAttribute('class', className);
  polyline.setAttribute('points', points.join(' '));
  return polyline;
}

/** samples: [{rate, subscribers}], oldest first, one per second. */
export function drawChart(svg, summary, samples) {
  const rates = samples.map((sample) => sample.rate);
  const subscribers = samples.map((sample) => sample.subscribers);
  const ratePeak = Math.max(1, ...rates);
  const subscriberPeak = Math.max(1, ...subscribers);

  const baseline = document.createElementNS(SVG, 'line');
  baseline.setAttribute('class', 'baseline');
  for (const [name, value] of [['x1', 0], ['x2', WIDTH], ['y1', HEIGHT - MARGIN],
    ['y2', HEIGHT - MARGIN]]) {
    baseline.setAttribute(name, value);
  }
  svg.replaceChildren(baseline, line(rates, ratePeak, 'rate'),
    line(subscribers, subscriberPeak, 'subscribers'));

  const last = samples.at(-1) || {rate: 0, subscribers: 0};
  summary.textContent = `Last ${samples.length} s: ${last.rate} messages/s now `
    + `(peak ${Math.max(0, ...rates)}); ${last.subscribers} subscribers now `
    + `(peak ${Math.max(0, ...subscribers)}).`;
}
