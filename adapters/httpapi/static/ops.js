// gamemodes operations page: polls /api/v1/ops/status every second and
// draws it with plain DOM and hand-written SVG (no libraries, no network
// beyond this edge, so it works offline and under a 'self'-only CSP).
'use strict';
(function () {
  const STATUS_URL = '/api/v1/ops/status';
  const POLL_MS = 1000;
  const TIMEOUT_MS = 4000;
  const STALE_MS = 5000;
  const SVG = 'http://www.w3.org/2000/svg';
  const num = new Intl.NumberFormat('en-US');
  const dec = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });

  let region = null;       // selected region
  let last = null;         // last status received
  let lastOk = 0;          // Date.now() of the last successful poll
  let lastError = '';
  const stored = [];       // [{t, seq}] of the stream's last sequence, for its rate

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function setText(id, text) {
    const e = $(id);
    if (e.textContent !== text) e.textContent = text;
  }

  function showError(id, msg) {
    const e = $(id);
    e.hidden = !msg;
    e.textContent = msg || '';
  }

  function bytes(n) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return dec.format(n) + ' ' + units[i];
  }

  function clock(t) {
    return new Date(t).toLocaleTimeString('en-GB', { hour12: false });
  }

  // Stable color per worker: FNV-1a of its name picks the hue.
  function workerColor(name) {
    let h = 0x811c9dc5;
    for (let i = 0; i < name.length; i++) {
      h ^= name.charCodeAt(i);
      h = Math.imul(h, 0x01000193) >>> 0;
    }
    return 'hsl(' + (h % 360) + ', 62%, 40%)';
  }

  // niceMax rounds a chart's top up to 1, 2 or 5 times a power of ten.
  function niceMax(v) {
    if (v <= 0) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  // intSteps is how many grid steps a chart of whole numbers up to top
  // (niceMax: 1, 2 or 5 times a power of ten) gets: the first of prefer
  // that divides top, so that every tick is a whole number and none
  // repeats (top 1 gets 0 and 1, not 0, 0.25, ... rounded to 0, 0, 1, 1, 1).
  function intSteps(top, prefer) {
    for (const s of prefer) if (top % s === 0) return s;
    return 1;
  }

  // ----- connection state -----

  function setConn(state, detail) {
    document.body.classList.remove('connecting', 'live', 'stale', 'disconnected');
    document.body.classList.add(state);
    setText('conn-state', state);
    const banner = $('banner');
    if (state === 'live') {
      banner.hidden = true;
      banner.textContent = '';
      return;
    }
    if (state === 'connecting') return;
    const since = lastOk ? 'last update ' + clock(lastOk) + ' (' + Math.round((Date.now() - lastOk) / 1000) + ' s ago)' : 'no update yet';
    banner.textContent = (state === 'disconnected' ? 'Disconnected: ' : 'Stale: ') + detail + ' — ' + since + '. The figures below are not live.';
    banner.hidden = false;
  }

  function tick() {
    if (lastError) {
      setConn('disconnected', lastError);
    } else if (lastOk && Date.now() - lastOk > STALE_MS) {
      setConn('stale', 'no answer for ' + Math.round((Date.now() - lastOk) / 1000) + ' s');
    }
  }

  async function poll() {
    try {
      const ctl = new AbortController();
      const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
      let resp;
      try {
        resp = await fetch(STATUS_URL, { cache: 'no-store', signal: ctl.signal, headers: { Accept: 'application/json' } });
      } finally {
        clearTimeout(timer);
      }
      if (!resp.ok) throw new Error('HTTP ' + resp.status);
      const st = await resp.json();
      lastOk = Date.now();
      lastError = '';
      last = st;
      render(st);
      setConn('live');
    } catch (err) {
      lastError = err && err.name === 'AbortError' ? 'no answer within ' + TIMEOUT_MS / 1000 + ' s' : String(err && err.message || err);
      setConn('disconnected', lastError);
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  // ----- rendering -----

  function render(st) {
    setText('instance-id', st.instance_id || '–');
    setText('roles', (st.roles || []).join(', ') || '–');
    const b = st.build || {};
    setText('build', (b.version || '?') + (b.revision ? ' ' + b.revision.slice(0, 12) + (b.modified ? '+dirty' : '') : ''));
    setText('started-at', new Date(st.started_at).toLocaleString('en-GB', { hour12: false }));
    setText('last-update', clock(st.generated_at));
    renderCounts(st.counts);
    renderIngest(st.ingest, st.cluster.stream);
    renderArchive(st.cluster.archive, st.cluster.stream);
    renderPartitions(st.cluster);
  }

  function renderCounts(c) {
    setText('total-players', num.format(c.total));
    setText('view-state', (c.synced ? 'view synced' : 'view loading') + ' · ' + c.shards + ' shards');
    const sel = $('region-select');
    if (region === null || !c.regions.includes(region)) {
      region = c.regions.includes(location.hash.slice(1)) ? location.hash.slice(1) : c.regions[0];
    }
    const optsKey = c.regions.join(',');
    if (sel.dataset.regions !== optsKey) {
      sel.textContent = '';
      for (const r of c.regions) sel.appendChild(el('option', { value: r }, r));
      sel.dataset.regions = optsKey;
    }
    c.regions.forEach((r, i) => {
      const o = sel.options[i];
      const label = r + ' (' + num.format(c.region_totals[i]) + ')';
      if (o.textContent !== label) o.textContent = label;
    });
    sel.value = region;
    renderModeChart(c);
    renderHeatmap(c);
  }

  // axes clears an SVG chart of size box and draws its horizontal grid
  // lines with their labels and its base line; it returns the function that
  // maps a value (0 to top) to a y coordinate.
  function axes(chart, box, top, steps, label) {
    const y = (v) => box.T + (box.H - box.T - box.B) * (1 - v / top);
    chart.textContent = '';
    for (let k = 0; k <= steps; k++) {
      const v = top * k / steps;
      chart.appendChild(svg('line', { class: 'grid', x1: box.L, x2: box.W - box.R, y1: y(v), y2: y(v) }));
      chart.appendChild(svg('text', { class: 'tick', x: box.L - 6, y: y(v) + 4, 'text-anchor': 'end' }, label(v)));
    }
    chart.appendChild(svg('line', { class: 'axis', x1: box.L, x2: box.W - box.R, y1: y(0), y2: y(0) }));
    return y;
  }

  // bars draws one bar of class cls per value, with a tooltip and the
  // attribute key set to keys[i]; each(i, centerX, topY) adds labels.
  function bars(chart, box, y, values, cls, key, keys, title, each) {
    const slot = (box.W - box.L - box.R) / Math.max(1, values.length);
    const bw = Math.max(2, slot * 0.66);
    values.forEach((v, i) => {
      const x = box.L + i * slot + (slot - bw) / 2;
      const bar = svg('rect', { class: cls, x: x, y: y(v), width: bw, height: y(0) - y(v), [key]: keys[i] });
      bar.appendChild(svg('title', {}, title(i, v)));
      chart.appendChild(bar);
      each(i, x + bw / 2, y(v));
    });
  }

  function renderModeChart(c) {
    const chart = $('mode-chart');
    const box = { W: 800, H: 260, L: 56, R: 12, T: 22, B: 30 };
    const values = c.game_modes.map((_, i) => (c.player_counts[c.regions.indexOf(region)] || [])[i] || 0);
    const top = niceMax(Math.max(0, ...values));
    const y = axes(chart, box, top, intSteps(top, [4, 5, 2]), (v) => num.format(v));
    bars(chart, box, y, values, 'bar', 'data-mode', c.game_modes,
      (i, v) => region + ' mode ' + c.game_modes[i] + ': ' + num.format(v) + ' players',
      (i, cx, top) => {
        chart.appendChild(svg('text', { class: 'value', x: cx, y: top - 5, 'text-anchor': 'middle', 'data-mode': c.game_modes[i] }, num.format(values[i])));
        chart.appendChild(svg('text', { x: cx, y: box.H - box.B + 18, 'text-anchor': 'middle' }, 'mode ' + c.game_modes[i]));
      });
  }

  function renderHeatmap(c) {
    const table = $('heatmap');
    const max = Math.max(1, ...c.player_counts.flat());
    const frag = document.createDocumentFragment();
    const head = el('tr');
    head.appendChild(el('th', { class: 'region' }, 'region'));
    for (const m of c.game_modes) head.appendChild(el('th', {}, 'mode ' + m));
    head.appendChild(el('th', {}, 'total'));
    frag.appendChild(head);
    c.regions.forEach((r, ri) => {
      const tr = el('tr', r === region ? { class: 'selected' } : {});
      const th = el('th', { class: 'region' }, r);
      tr.appendChild(th);
      c.game_modes.forEach((m, mi) => {
        const v = c.player_counts[ri][mi];
        const td = el('td', { 'data-region': r, 'data-mode': String(m) }, num.format(v));
        if (v > 0) {
          const a = 0.12 + 0.88 * v / max;
          td.style.backgroundColor = 'rgba(2, 132, 199, ' + a.toFixed(3) + ')';
          if (a > 0.55) td.classList.add('hot');
        }
        tr.appendChild(td);
      });
      tr.appendChild(el('td', { class: 'total', 'data-region': r }, num.format(c.region_totals[ri])));
      tr.addEventListener('click', () => selectRegion(r));
      frag.appendChild(tr);
    });
    table.textContent = '';
    table.appendChild(frag);
  }

  function renderIngest(ing, stream) {
    const rates = ing.rates || [];
    const now = rates.length ? rates[rates.length - 1].accepted_per_second : 0;
    setText('ingest-rate', dec.format(now));
    const avg = rates.length ? rates.reduce((s, r) => s + r.accepted_per_second, 0) / rates.length : 0;
    const acc = Object.values(ing.accepted || {}).reduce((a, b) => a + b, 0);
    const rej = Object.values(ing.rejected || {}).reduce((a, b) => a + b, 0);
    setText('ingest-note', dec.format(avg) + '/s over ' + rates.length + ' s · ' + num.format(acc) + ' accepted (' +
      Object.entries(ing.accepted || {}).map(([k, v]) => k + ' ' + num.format(v)).join(', ') + ') · ' + num.format(rej) + ' rejected');
    // The stream's own rate, from its last sequence between polls: every
    // edge's and game server's events, not only this process's.
    if (!stream.error) {
      const t = Date.parse(last.cluster.read_at);
      if (!stored.length || stored[stored.length - 1].t !== t) stored.push({ t: t, seq: stream.last_seq });
      while (stored.length && t - stored[0].t > ing.window_seconds * 1000) stored.shift();
    }
    const storedRates = [];
    for (let i = 1; i < stored.length; i++) {
      const dt = (stored[i].t - stored[i - 1].t) / 1000;
      if (dt > 0) storedRates.push({ t: stored[i].t, v: Math.max(0, stored[i].seq - stored[i - 1].seq) / dt });
    }
    drawRates(rates, storedRates, ing.window_seconds);
  }

  function drawRates(rates, storedRates, windowSeconds) {
    const chart = $('rate-chart');
    const box = { W: 400, H: 180, L: 44, R: 8, T: 10, B: 22 };
    const { W, H, L, R } = box;
    const end = rates.length ? Date.parse(rates[rates.length - 1].at) : Date.now();
    const start = end - windowSeconds * 1000;
    const top = niceMax(Math.max(1, ...rates.map((r) => Math.max(r.accepted_per_second, r.rejected_per_second)), ...storedRates.map((r) => r.v)));
    const x = (t) => L + (W - L - R) * Math.min(1, Math.max(0, (t - start) / (end - start)));
    const y = axes(chart, box, top, 4, (v) => dec.format(v));
    chart.appendChild(svg('text', { x: L, y: H - 5 }, '−' + windowSeconds + ' s'));
    chart.appendChild(svg('text', { x: W - R, y: H - 5, 'text-anchor': 'end' }, 'now'));
    const line = (cls, pts) => {
      if (pts.length < 2) return;
      chart.appendChild(svg('polyline', { class: 'line ' + cls, points: pts.map((p) => x(p[0]).toFixed(1) + ',' + y(p[1]).toFixed(1)).join(' ') }));
    };
    line('stored', storedRates.map((r) => [r.t, r.v]));
    line('rejected', rates.map((r) => [Date.parse(r.at), r.rejected_per_second]));
    line('accepted', rates.map((r) => [Date.parse(r.at), r.accepted_per_second]));
  }

  function renderArchive(a, s) {
    setText('archive-lag', a.error ? 'n/a' : num.format(a.lag));
    // Archiving off: the lag is the events waiting in the stream, not a backlog being worked off.
    const off = a.off ? 'archive off (' + a.off + ')' : '';
    setText('archive-note', a.error ? (off || 'unavailable') : off ? off + ' · events wait in the stream' : num.format(a.num_pending) + ' pending · ' + num.format(a.num_ack_pending) + ' in flight');
    const offNote = $('archive-off');
    offNote.hidden = !off;
    offNote.textContent = off ? 'Archive off: this process runs the archiver with ' + a.off + ', so nothing is written to Postgres; the events wait in the stream (kept for --events-max-age) for an archiver with a database.' : '';
    setText('archive-pending', a.error ? '–' : num.format(a.num_pending));
    setText('archive-ackpending', a.error ? '–' : num.format(a.num_ack_pending));
    setText('archive-floor', a.error ? '–' : num.format(a.ack_floor_seq));
    showError('archive-error', a.error ? 'archive: ' + a.error : '');
    setText('stream-msgs', s.error ? 'n/a' : num.format(s.messages));
    setText('stream-note', s.error ? 'unavailable' : bytes(s.bytes) + ' · ' + s.consumers + ' consumers');
    setText('stream-seqs', s.error ? '–' : num.format(s.first_seq) + ' – ' + num.format(s.last_seq));
    showError('stream-error', s.error ? 'stream: ' + s.error : '');
  }

  function renderPartitions(cl) {
    const ps = cl.partitions;
    const members = cl.workers.members || [];
    setText('workers-count', cl.workers.error ? 'n/a' : String(members.length));
    const owned = ps.items.filter((p) => p.owner).length;
    setText('workers-note', owned + ' of ' + ps.count + ' partitions owned');
    showError('workers-error', cl.workers.error ? 'workers: ' + cl.workers.error : '');
    showError('leases-error', ps.leases_error ? 'leases: ' + ps.leases_error : '');
    showError('shards-error', ps.shards_error ? 'count shards: ' + ps.shards_error : '');

    const perOwner = {};
    for (const p of ps.items) if (p.owner) perOwner[p.owner] = (perOwner[p.owner] || 0) + 1;
    const legend = $('worker-legend');
    legend.textContent = '';
    for (const w of [...new Set([...members, ...Object.keys(perOwner)])].sort()) {
      const item = el('span', { 'data-worker': w });
      const key = el('span', { class: 'key' });
      key.style.backgroundColor = workerColor(w);
      item.appendChild(key);
      item.appendChild(document.createTextNode(w + ' · ' + (perOwner[w] || 0) + (members.includes(w) ? '' : ' (not live)')));
      legend.appendChild(item);
    }

    const grid = $('partition-grid');
    const frag = document.createDocumentFragment();
    for (const p of ps.items) {
      const cell = el('div', { class: 'part', 'data-partition': String(p.partition), 'data-owner': p.owner || '' });
      cell.appendChild(el('div', { class: 'p' }, 'p' + p.partition));
      cell.appendChild(el('div', { class: 'owner' }, p.owner || 'unowned'));
      cell.appendChild(el('div', { class: 'lag' }, 'lag ' + num.format(p.lag) + ' · seq ' + num.format(p.applied_seq)));
      cell.appendChild(el('div', { class: 'lag durable' }, 'durable lag ' + num.format(p.durable_lag)));
      if (p.owner) {
        cell.style.backgroundColor = workerColor(p.owner);
        if (p.shard_owner && p.shard_owner !== p.owner) cell.classList.add('moving');
      } else {
        cell.classList.add('unowned');
      }
      cell.title = 'partition ' + p.partition + '\nlease: ' + (p.owner || 'none') + '\nshard written by: ' + (p.shard_owner || 'nobody yet') +
        '\napplied up to sequence ' + p.applied_seq + '\nlag ' + p.lag +
        '\ncounted up to sequence ' + p.delivered_seq + ', durable lag ' + p.durable_lag + ' (counted, player writes not yet persisted)';
      frag.appendChild(cell);
    }
    grid.textContent = '';
    grid.appendChild(frag);
    drawLag(ps);
  }

  function drawLag(ps) {
    const chart = $('lag-chart');
    const box = { W: 800, H: 160, L: 56, R: 8, T: 18, B: 22 };
    const lags = ps.items.map((p) => p.lag);
    const top = niceMax(Math.max(1, ...lags));
    const y = axes(chart, box, top, intSteps(top, [2]), (v) => num.format(v));
    const every = Math.ceil(ps.items.length / 32);
    bars(chart, box, y, lags, 'lagbar', 'data-partition', ps.items.map((p) => p.partition),
      (i, v) => 'p' + ps.items[i].partition + ': lag ' + num.format(v),
      (i, cx) => {
        if (i % every === 0) chart.appendChild(svg('text', { x: cx, y: box.H - 6, 'text-anchor': 'middle' }, String(ps.items[i].partition)));
      });
  }

  function selectRegion(r) {
    region = r;
    history.replaceState(null, '', '#' + r);
    if (last) renderCounts(last.counts);
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('region-select').addEventListener('change', (e) => selectRegion(e.target.value));
    setInterval(tick, 1000);
    poll();
  });
})();
