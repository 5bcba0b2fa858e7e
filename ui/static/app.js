// Loom's dashboard: plain JavaScript, no framework, no build step. It
// reads the node's JSON APIs (/v1/admin/nodes, /v1/admin/actors,
// /v1/stats/calls, /traces, /v1/admin/queues, /v1/deadletters) and
// refreshes the visible view every 2 s. Nothing here renders one row per
// actor: actors are counted per node and type, and looked up one at a time.
'use strict';

(() => {
  // The API is served next to /ui, under whatever prefix a proxy adds.
  const base = location.pathname.replace(/\/ui(\/.*)?$/, '');
  const tokenKey = 'loom.token';
  const refreshMs = 2000;
  const palette = ['#2f6fdf', '#e0832b', '#2a9d6b', '#a14fc4', '#d14b5a', '#1f9fb4', '#8a7a2e', '#5b6b8a'];

  const state = {
    view: 'cluster',
    args: [],
    token: sessionStorage.getItem(tokenKey) || '',
    nodes: null, // the last /v1/admin/nodes answer
    actor: null, // [type, id] looked up
    trace: null, // the query of the traces view
    traceSel: '', // the selected trace id
    busy: false,
    bulk: false, // a replay or purge is running
    confirming: null, // resolves the question #confirm-dialog asks
    again: false,
    colors: new Map(),
  };

  const $ = (sel) => document.querySelector(sel);

  // h builds an element: h('td', {class: 'num', title: 'x'}, 'text', child).
  // Text always goes in as text, never as HTML.
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k === 'style') Object.assign(el.style, v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  const svgNS = 'http://www.w3.org/2000/svg';
  function s(tag, attrs, ...children) {
    const el = document.createElementNS(svgNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return el;
  }

  function fill(el, ...children) {
    el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  }

  const nf = new Intl.NumberFormat('en');
  const num = (v) => (v === undefined || v === null ? '–' : nf.format(v));
  const fixed = (v, d) => (v < 0 || v === undefined || v === null ? '–' : v.toFixed(d));
  function msText(v) {
    if (v === undefined || v === null || v < 0) return '–';
    if (v >= 1000) return (v / 1000).toFixed(2) + ' s';
    if (v >= 10) return v.toFixed(0) + ' ms';
    return v.toFixed(v >= 1 ? 1 : 2) + ' ms';
  }
  function clock(t) {
    const d = new Date(t);
    if (isNaN(d)) return '–';
    return d.toLocaleTimeString('en-GB', {hour12: false}) + '.' + String(d.getMilliseconds()).padStart(3, '0');
  }
  function ago(t) {
    const secs = (Date.now() - new Date(t).getTime()) / 1000;
    if (!isFinite(secs)) return '';
    if (secs < 1) return 'just now';
    if (secs < 90) return Math.round(secs) + ' s ago';
    if (secs < 5400) return Math.round(secs / 60) + ' min ago';
    return Math.round(secs / 3600) + ' h ago';
  }
  function age(secs) {
    if (!secs) return '–';
    if (secs < 90) return secs.toFixed(0) + ' s';
    if (secs < 5400) return (secs / 60).toFixed(0) + ' min';
    return (secs / 3600).toFixed(1) + ' h';
  }

  // Each node keeps one colour everywhere (ring, waterfall).
  function color(key) {
    if (!state.colors.has(key)) state.colors.set(key, palette[state.colors.size % palette.length]);
    return state.colors.get(key);
  }
  const nodeBadge = (id) => h('span', {class: 'node', style: {borderColor: color(id)}}, id);

  // ---- the API ----

  class APIError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path, opts = {}) {
    const headers = {Accept: 'application/json'};
    if (state.token) headers.Authorization = 'Bearer ' + state.token;
    const res = await fetch(base + path, {method: opts.method || 'GET', headers, cache: 'no-store'});
    let body = null;
    try {
      body = await res.json();
    } catch (e) {
      body = null;
    }
    if (!res.ok) {
      const code = body && body.error ? body.error.code : '';
      const msg = body && body.error ? body.error.message : res.status + ' ' + res.statusText;
      if (res.status === 401) askToken(state.token ? 'The node refused this token: ' + msg : '');
      throw new APIError(res.status, code, msg);
    }
    return body;
  }

  function showError(err) {
    const el = $('#error');
    if (!err) {
      el.hidden = true;
      return;
    }
    let text = err.message || String(err);
    if (err.status === 403) text = 'This token may not see this: ' + text;
    if (err.status === 401) text = 'A bearer token is needed: ' + text;
    el.textContent = text;
    el.hidden = false;
  }

  // ---- the token ----

  function askToken(why) {
    const d = $('#token-dialog');
    if (d.open) return;
    $('#token-why').textContent = (why ? why + ' ' : 'This node asks for a bearer token. ') +
      'It is kept in this tab only (sessionStorage) and sent as "Authorization: Bearer".';
    $('#token-input').value = '';
    d.showModal();
  }

  function setToken(t) {
    state.token = t;
    if (t) sessionStorage.setItem(tokenKey, t);
    else sessionStorage.removeItem(tokenKey);
    $('#token-button').textContent = t ? 'Token ✓' : 'Token';
  }

  // ---- routing: #/view/args… ----

  const views = {};

  function route() {
    const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
    const view = views[parts[0]] ? parts[0] : 'cluster';
    state.view = view;
    state.args = parts.slice(1).filter((p) => p !== '');
    for (const sec of document.querySelectorAll('.view')) sec.hidden = sec.id !== 'view-' + view;
    for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.view === view);
    if (views[view].enter) views[view].enter(state.args);
    refresh();
  }

  async function refresh() {
    if (state.busy) {
      state.again = true; // a view changed while a refresh ran: once more after it
      return;
    }
    state.busy = true;
    state.again = false;
    const live = $('#live');
    try {
      if (!state.nodes && state.view !== 'cluster' && state.view !== 'actors') {
        // Only for the header: a token without admin still sees its views.
        await loadNodes().catch(() => {});
      }
      await views[state.view].load();
      showError(null);
      live.classList.remove('stale');
      $('#updated').textContent = 'updated ' + clock(Date.now());
    } catch (err) {
      showError(err);
      live.classList.add('stale');
    } finally {
      state.busy = false;
      if (state.again) refresh();
    }
  }

  async function loadNodes() {
    state.nodes = await api('/v1/admin/nodes');
    $('#served-by').textContent = 'served by ' + state.nodes.node;
    return state.nodes;
  }

  // ---- cluster ----

  views.cluster = {
    async load() {
      const v = await loadNodes();
      const members = v.members || [];
      const alive = members.filter((m) => m.state === 'alive').length;
      const leaderRep = members.find((m) => m.id === v.leader && m.report);
      const term = leaderRep && leaderRep.report.raft ? leaderRep.report.raft.term : undefined;
      let actors = 0;
      for (const m of members) if (m.report) for (const c of Object.values(m.report.actors)) actors += c;
      const card = (label, value, id) => h('div', {class: 'card'}, h('div', {class: 'label'}, label), h('div', {class: 'value', id}, value));
      fill($('#cluster-cards'),
        card('Members alive', alive + ' / ' + members.length, 'card-members'),
        card('Raft leader', v.leader || (v.mode === 'single' ? 'single node' : 'none'), 'card-leader'),
        card('Term', term === undefined ? '–' : num(term)),
        card('Ring version', v.ring ? num(v.ring.version) : '–'),
        card('Active actors', num(actors), 'card-actors'));

      fill($('#members-table tbody'), members.map((m) => {
        const r = m.report;
        const raft = r && r.raft;
        const sess = r && r.session;
        let lease = '–';
        if (sess) {
          const frac = sess.ttlMs ? Math.max(0, Math.min(1, sess.leaseRemainingMs / sess.ttlMs)) : 0;
          lease = h('span', {class: 'lease', title: 'session ' + sess.id + (sess.valid ? '' : ' (may have lapsed)')},
            h('span', {class: 'bar'}, h('span', {class: 'fill' + (sess.valid ? '' : ' bad'), style: {width: (frac * 100).toFixed(0) + '%'}})),
            (sess.leaseRemainingMs / 1000).toFixed(1) + ' s');
        }
        const total = r ? Object.values(r.actors).reduce((a, b) => a + b, 0) : undefined;
        const role = raft ? raft.role : (r ? '–' : '');
        return h('tr', {dataset: {node: m.id}},
          h('td', {}, nodeBadge(m.id), m.id === v.node ? h('span', {class: 'muted'}, ' (this page)') : null),
          h('td', {}, h('span', {class: 'state ' + m.state}, m.state)),
          h('td', {class: raft && raft.role === 'Leader' ? 'leader' : ''}, m.error ? h('span', {class: 'bad', title: m.error}, 'no answer') : role),
          h('td', {class: 'num'}, raft ? num(raft.term) : '–'),
          h('td', {class: 'num'}, raft ? num(raft.appliedIndex) : '–'),
          h('td', {class: 'num'}, raft ? num(raft.commitIndex) : '–'),
          h('td', {}, lease),
          h('td', {class: 'num'}, total === undefined ? '–' : num(total)),
          h('td', {class: 'num'}, r ? num(r.waiting) : '–'),
          h('td', {class: 'mono'}, m.http || ''));
      }));

      // With several Raft groups (cluster.raftGroups), each one's leader
      // and voters, as the serving node sees them.
      const groups = v.raftGroups || [];
      $('#raft-groups').hidden = groups.length < 2;
      const badges = (ids) => ids && ids.length ? ids.map((id, i) => [i ? ' ' : '', nodeBadge(id)]) : '–';
      fill($('#groups-table tbody'), groups.length < 2 ? [] : groups.map((g) => h('tr', {dataset: {group: String(g.group)}},
        h('td', {class: 'num'}, String(g.group)),
        h('td', {}, g.leader ? nodeBadge(g.leader) : h('span', {class: 'bad'}, 'none')),
        h('td', {}, badges(g.voters)),
        h('td', {}, badges(g.nonvoters)),
        h('td', {class: 'num'}, num(g.appliedIndex)))));

      const ring = $('#ring');
      if (!v.ring) {
        fill(ring, h('p', {class: 'muted'}, 'A single node: no ring.'));
      } else {
        const ids = Object.keys(v.ring.loads).sort();
        fill(ring,
          h('div', {class: 'ringbar'}, ids.map((id) => h('span', {
            style: {width: (100 * v.ring.loads[id] / v.ring.partitions) + '%', background: color(id)},
            title: id + ': ' + v.ring.loads[id] + ' partitions',
          }))),
          h('p', {class: 'muted'}, num(v.ring.partitions) + ' partitions, version ' + num(v.ring.version) + ': ',
            ids.map((id, i) => [i ? ', ' : '', nodeBadge(id), ' ' + (100 * v.ring.loads[id] / v.ring.partitions).toFixed(1) + ' %'])));
      }

      const withReport = members.filter((m) => m.report);
      fill($('#actors-matrix thead'), h('tr', {}, h('th', {}, 'Type'), withReport.map((m) => h('th', {class: 'num'}, m.id)), h('th', {class: 'num'}, 'Total')));
      fill($('#actors-matrix tbody'), (v.types || []).map((t) => {
        let sum = 0;
        const cells = withReport.map((m) => {
          const c = m.report.actors[t] || 0;
          sum += c;
          return h('td', {class: 'num' + (c ? '' : ' muted')}, num(c));
        });
        return h('tr', {}, h('td', {}, t), cells, h('td', {class: 'num strong'}, num(sum)));
      }));
    },
  };

  // ---- actors ----

  views.actors = {
    enter(args) {
      if (args.length >= 2) {
        state.actor = [args[0], args.slice(1).join('/')];
        $('#actor-id').value = state.actor[1];
      }
    },
    async load() {
      const v = await loadNodes();
      const sel = $('#actor-type');
      const want = state.actor ? state.actor[0] : sel.value;
      if (sel.options.length !== v.types.length) fill(sel, v.types.map((t) => h('option', {value: t}, t)));
      if (want && v.types.includes(want)) sel.value = want;
      const totals = {};
      for (const m of v.members) if (m.report) for (const [t, c] of Object.entries(m.report.actors)) totals[t] = (totals[t] || 0) + c;
      fill($('#type-totals'), v.types.map((t) => h('span', {class: 'chip'}, t + ' ', h('b', {}, num(totals[t] || 0)), ' active')));
      if (state.actor) await lookupActor();
    },
  };

  async function lookupActor() {
    const [type, id] = state.actor;
    const out = $('#actor-result');
    let a;
    try {
      a = await api('/v1/admin/actors/' + encodeURIComponent(type) + '/' + encodeURIComponent(id));
    } catch (err) {
      if (err.status === 404 || err.status === 400) {
        fill(out, h('p', {class: 'bad'}, err.message));
        return;
      }
      throw err;
    }
    const never = a.journalLength === 0 && !a.owner && !a.active;
    const row = (label, value, id) => [h('dt', {}, label), h('dd', {id}, value)];
    fill(out, h('div', {class: 'panel', id: 'actor-panel'},
      h('h3', {}, a.actor, never ? h('span', {class: 'muted'}, ' (never written, not active)') : null),
      a.note ? h('p', {class: 'warn'}, a.note) : null,
      h('dl', {class: 'facts'},
        row('Owner (lock holder)', a.owner ? nodeBadge(a.owner) : 'none', 'actor-owner'),
        row('Ring placement', a.placement ? nodeBadge(a.placement) : '–'),
        row('Active', a.active ? 'yes, on ' + a.node : (a.kept ? 'no: evicted, its lock kept on ' + a.node : 'no'), 'actor-active'),
        row('Activated', a.activatedAt ? clock(a.activatedAt) + ' (' + ago(a.activatedAt) + ')' : '–', 'actor-activated'),
        row('Last turn', a.lastUsedAt ? clock(a.lastUsedAt) + ' (' + ago(a.lastUsedAt) + ')' : '–'),
        row('Waiting callers', num(a.waiting)),
        row('Journal length', num(a.journalLength), 'actor-journal-length'),
        row('Snapshot', a.snapshot ? 'at seq ' + num(a.snapshot.seq) + ', ' + num(a.snapshot.bytes) + ' bytes' : 'none'),
        row('Fencing token', a.token ? num(a.token) : (a.tailToken ? 'last written ' + num(a.tailToken) : '–'))),
      h('h3', {}, 'Latest journal entries'),
      a.entries.length === 0 ? h('p', {class: 'muted'}, 'No entries (or all folded into the snapshot).') :
        h('table', {id: 'actor-entries'},
          h('thead', {}, h('tr', {}, ['Seq', 'Time', 'Kind', 'Method', 'Correlation id', 'Idempotency key', 'Bytes'].map((c) => h('th', {}, c)))),
          h('tbody', {}, a.entries.map((e) => h('tr', {},
            h('td', {class: 'num'}, num(e.seq)),
            h('td', {class: 'mono', title: e.time}, clock(e.time)),
            h('td', {}, e.kind),
            h('td', {}, e.method || ''),
            h('td', {class: 'mono'}, e.correlationId ? h('a', {class: 'cid', href: '#/traces/' + encodeURIComponent(e.correlationId)}, e.correlationId) : ''),
            h('td', {class: 'mono'}, e.idempotencyKey || ''),
            h('td', {class: 'num'}, num(e.bytes))))))));
  }

  // ---- calls ----

  views.calls = {
    async load() {
      const v = await api('/v1/stats/calls');
      const bad = Object.entries(v.nodes || {}).filter(([, st]) => st !== 'ok');
      $('#calls-nodes').textContent = 'From ' + Object.keys(v.nodes || {}).sort().join(', ') +
        (bad.length ? '; no answer from ' + bad.map(([n, st]) => n + ' (' + st + ')').join(', ') : '') + '.';
      const series = v.series || [];
      const n = series.length ? series[0].calls.length : 31;
      const secs = (i) => (i === n - 1 ? Math.max(v.currentSeconds, 1) : v.bucketSeconds);
      const top = series.slice().sort((a, b) => b.total - a.total).slice(0, palette.length);
      const colorOf = new Map(top.map((sr, i) => [sr.type + '.' + sr.method, palette[i]]));
      const rate = top.map((sr) => ({name: sr.type + '.' + sr.method, values: sr.calls.map((c, i) => c / secs(i))}));
      const errs = new Array(n).fill(0);
      for (const sr of series) sr.errors.forEach((e, i) => { errs[i] += e / secs(i); });
      if (errs.some((e) => e > 0)) rate.push({name: 'errors', values: errs, dash: true});
      const axis = (x) => fixed(x, x === 0 || x >= 10 ? 0 : (x >= 1 ? 1 : 2));
      chart($('#chart-rate'), rate, colorOf, axis);
      chart($('#chart-p99'), top.map((sr) => ({name: sr.type + '.' + sr.method, values: sr.p99Ms})), colorOf, axis);
      fill($('#chart-legend'), top.map((sr) => h('span', {}, h('i', {style: {background: colorOf.get(sr.type + '.' + sr.method)}}), sr.type + '.' + sr.method)),
        errs.some((e) => e > 0) ? h('span', {}, h('i', {class: 'dash'}), 'errors (all)') : null);
      const body = $('#calls-table tbody');
      if (series.length === 0) {
        fill(body, h('tr', {}, h('td', {colspan: 9, class: 'muted'}, 'No calls in the last five minutes.')));
        return;
      }
      fill(body, series.map((sr) => h('tr', {dataset: {series: sr.type + '.' + sr.method}},
        h('td', {}, sr.type), h('td', {}, sr.method),
        h('td', {class: 'num'}, fixed(sr.ratePerSec, 2)),
        h('td', {class: 'num' + (sr.errorsLastMinute ? ' bad' : '')}, num(sr.errorsLastMinute)),
        h('td', {class: 'num'}, msText(sr.p99MsLastMinute)),
        h('td', {class: 'num'}, num(sr.total)),
        h('td', {class: 'num' + (sr.totalErrors ? ' bad' : '')}, num(sr.totalErrors)),
        h('td', {class: 'num'}, msText(sr.p99Ms5m)),
        h('td', {}, sparkline(sr.calls, colorOf.get(sr.type + '.' + sr.method) || '#888')))));
    },
  };

  // chart draws lines (one value per bucket, -1 or null for none) in an
  // SVG that scales to its box.
  function chart(el, lines, colorOf, label) {
    // Drawn at the box's width, so that the text is not stretched.
    const W = Math.max(280, el.clientWidth || 600), H = 180, L = 44, B = 18, T = 8;
    let max = 0;
    for (const ln of lines) for (const v of ln.values) if (v > max) max = v;
    max = niceMax(max);
    const n = lines.length ? lines[0].values.length : 31;
    const x = (i) => L + (W - L - 6) * (n <= 1 ? 0 : i / (n - 1));
    const y = (v) => T + (H - T - B) * (1 - v / max);
    const svg = s('svg', {viewBox: `0 0 ${W} ${H}`, role: 'img'});
    for (const f of [0, 0.5, 1]) {
      svg.append(s('line', {x1: L, x2: W - 6, y1: y(max * f), y2: y(max * f), class: 'grid'}));
      svg.append(s('text', {x: L - 4, y: y(max * f) + 4, 'text-anchor': 'end', class: 'axis'}, label(max * f)));
    }
    svg.append(s('text', {x: L, y: H - 4, class: 'axis'}, '−5 min'));
    svg.append(s('text', {x: W - 6, y: H - 4, 'text-anchor': 'end', class: 'axis'}, 'now'));
    for (const ln of lines) {
      let d = '';
      let pen = false;
      ln.values.forEach((v, i) => {
        if (v === null || v < 0) {
          pen = false;
          return;
        }
        d += (pen ? 'L' : 'M') + x(i).toFixed(1) + ' ' + y(v).toFixed(1);
        pen = true;
      });
      if (!d) continue;
      const stroke = ln.dash ? '#d14b5a' : (colorOf.get(ln.name) || '#888');
      const attrs = {d, class: 'line', stroke};
      if (ln.dash) attrs['stroke-dasharray'] = '4 3';
      svg.append(s('path', attrs, s('title', {}, ln.name)));
      // A bucket between two without calls has no line: mark each point.
      ln.values.forEach((v, i) => {
        if (v !== null && v > 0) svg.append(s('circle', {cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 2.5, fill: stroke}));
      });
    }
    if (lines.length === 0) svg.append(s('text', {x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'axis'}, 'no calls'));
    fill(el, svg);
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function sparkline(values, stroke) {
    const W = 120, H = 22;
    const max = Math.max(1, ...values);
    const pts = values.map((v, i) => (i * W / Math.max(1, values.length - 1)).toFixed(1) + ',' + (H - 1 - (H - 2) * v / max).toFixed(1));
    return s('svg', {viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: 'spark'}, s('polyline', {points: pts.join(' '), stroke}));
  }

  // ---- traces ----

  views.traces = {
    enter(args) {
      const q = args.join('/');
      if (q !== (state.trace || '')) {
        state.trace = q || null;
        state.traceSel = '';
      }
      $('#trace-q').value = q;
    },
    async load() {
      if (state.loadedTrace === (state.trace || '') && state.view === 'traces' && state.traceLoaded) return;
      const q = state.trace;
      let res;
      if (!q) {
        res = await api('/traces?limit=20&since=15m');
      } else {
        // A generated correlation id looks like a trace id (32 hex
        // digits): try it as a correlation id first.
        res = await api('/traces?limit=20&correlationId=' + encodeURIComponent(q));
        if ((res.traces || []).length === 0 && /^[0-9a-f]{32}$/i.test(q)) res = await api('/traces?limit=20&traceId=' + encodeURIComponent(q));
      }
      const traces = res.traces || [];
      // The recent list refreshes; a search that found its trace does not
      // (one that found nothing yet tries again).
      state.loadedTrace = q || '';
      state.traceLoaded = Boolean(q) && traces.length > 0;
      const list = $('#trace-list');
      if (traces.length === 0) {
        fill(list, h('p', {class: 'muted', id: 'trace-none'}, q ? 'No trace with ' + q + ' (yet): traces are kept in memory for tracing.maxTraceAge, and recorded only with tracing.enabled.' : 'No traces in the last 15 minutes.'));
        fill($('#waterfall'));
        return;
      }
      if (!traces.some((t) => t.traceId === state.traceSel)) state.traceSel = q ? traces[0].traceId : '';
      fill(list, h('table', {id: 'trace-table'},
        h('thead', {}, h('tr', {}, ['Start', 'Root', 'Correlation id', 'Nodes', 'Spans', 'Duration'].map((c, i) => h('th', {class: i >= 4 ? 'num' : ''}, c)))),
        h('tbody', {}, traces.map((t) => {
          const root = t.spans.find((sp) => sp.spanId === t.roots[0]) || t.spans[0];
          return h('tr', {class: 'clickable' + (t.traceId === state.traceSel ? ' selected' : ''), dataset: {trace: t.traceId},
            onclick: () => { state.traceSel = t.traceId; drawTraces(traces); }},
          h('td', {class: 'mono'}, clock(t.start)),
          h('td', {}, root ? root.name : ''),
          h('td', {class: 'mono'}, t.correlationId || ''),
          h('td', {}, t.nodes.map((nd) => nodeBadge(nd))),
          h('td', {class: 'num'}, num(t.spans.length)),
          h('td', {class: 'num'}, msText(t.durationMs)));
        }))));
      drawTraces(traces);
    },
  };

  function drawTraces(traces) {
    for (const tr of document.querySelectorAll('#trace-table tbody tr')) tr.classList.toggle('selected', tr.dataset.trace === state.traceSel);
    const t = traces.find((x) => x.traceId === state.traceSel);
    if (!t) {
      fill($('#waterfall'), h('p', {class: 'muted'}, 'Pick a trace to see its waterfall.'));
      return;
    }
    waterfall(t);
  }

  // waterfall draws one trace: a row per span in tree order, its bar
  // placed on the trace's time line, coloured by the node that recorded it.
  function waterfall(t) {
    const byId = new Map(t.spans.map((sp) => [sp.spanId, sp]));
    const t0 = new Date(t.start).getTime();
    const total = Math.max(t.durationMs, 0.001);
    const rows = [];
    const limit = 500;
    const walk = (id, depth) => {
      const sp = byId.get(id);
      if (!sp || rows.length >= limit) return;
      rows.push([sp, depth]);
      for (const c of sp.children || []) walk(c, depth + 1);
    };
    for (const r of t.roots) walk(r, 0);
    const ticks = [0, 0.25, 0.5, 0.75, 1];
    fill($('#waterfall'), h('div', {class: 'panel'},
      h('h3', {}, 'Trace ', h('span', {class: 'mono'}, t.traceId)),
      h('p', {class: 'muted'}, 'correlation ', h('span', {class: 'mono'}, t.correlationId || '–'), ' · ', msText(t.durationMs),
        ' · nodes ', t.nodes.map((nd) => [nodeBadge(nd), ' ']), ' · ', num(t.spans.length), ' spans'),
      h('div', {class: 'wf', id: 'waterfall-rows'},
        h('div', {class: 'wf-row wf-head'}, h('div', {class: 'wf-label'}, 'span'),
          h('div', {class: 'wf-track'}, ticks.map((f) => h('span', {class: 'tick', style: {left: (f * 100) + '%'}}, msText(f * total))))),
        rows.map(([sp, depth]) => {
          const start = (new Date(sp.start).getTime() - t0);
          const left = Math.max(0, Math.min(100, 100 * start / total));
          const width = Math.max(0.4, Math.min(100 - left, 100 * sp.durationMs / total));
          const title = [sp.name, sp.actor ? sp.actor + (sp.method ? ' ' + sp.method : '') : '', 'node ' + sp.node,
            msText(sp.durationMs) + ' at +' + msText(start), sp.error ? 'error: ' + sp.error : '']
            .concat(Object.entries(sp.attributes || {}).map(([k, v]) => k + '=' + v)).filter(Boolean).join('\n');
          return h('div', {class: 'wf-row' + (sp.status === 'error' ? ' error' : ''), dataset: {name: sp.name, node: sp.node}, title},
            h('div', {class: 'wf-label', style: {paddingLeft: (depth * 14 + 4) + 'px'}},
              nodeBadge(sp.node), ' ', h('span', {class: 'wf-name'}, sp.name),
              sp.actor ? h('span', {class: 'muted'}, ' ' + sp.actor + (sp.method ? ' ' + sp.method : '')) : null),
            h('div', {class: 'wf-track'},
              h('span', {class: 'wf-bar', style: {left: left + '%', width: width + '%', background: color(sp.node)}}),
              left + width > 85 ?
                h('span', {class: 'wf-dur inside', style: {right: Math.max(0, 100 - left - width) + '%'}}, msText(sp.durationMs)) :
                h('span', {class: 'wf-dur', style: {left: (left + width) + '%'}}, msText(sp.durationMs))));
        }),
        rows.length >= limit ? h('p', {class: 'muted'}, 'The first ' + limit + ' spans.') : null)));
  }

  // ---- queues and dead letters ----

  const deadLimit = 100;

  views.queues = {
    async load() {
      let q;
      try {
        q = await api('/v1/admin/queues');
      } catch (err) {
        if (err.status === 501) {
          fill($('#queues-table tbody'), h('tr', {}, h('td', {colspan: 6, class: 'muted'}, err.message)));
          return;
        }
        throw err;
      }
      fill($('#queues-table tbody'), q.queues.length === 0 ? h('tr', {}, h('td', {colspan: 6, class: 'muted'}, 'No queues yet.')) :
        q.queues.map((x) => h('tr', {},
          h('td', {}, x.type), h('td', {class: 'num'}, num(x.pending)), h('td', {class: 'num'}, num(x.scheduled)),
          h('td', {class: 'num' + (x.dead ? ' bad' : '')}, num(x.dead)), h('td', {class: 'num'}, num(x.reminders)),
          h('td', {class: 'num'}, age(x.oldestAgeSeconds)))));
      const sel = $('#dead-type');
      const types = q.queues.map((x) => x.type);
      if (sel.options.length !== types.length + 1) {
        const keep = sel.value;
        fill(sel, h('option', {value: ''}, 'every type'), types.map((t) => h('option', {value: t}, t)));
        sel.value = types.includes(keep) ? keep : '';
      }
      await loadDead();
    },
  };

  function deadFilter() {
    const t = $('#dead-type').value;
    return t ? 'type=' + encodeURIComponent(t) : '';
  }

  async function loadDead() {
    const f = deadFilter();
    const res = await api('/v1/deadletters?limit=' + deadLimit + (f ? '&' + f : ''));
    const dead = res.deadLetters || [];
    $('#dead-note').textContent = dead.length >= deadLimit ? 'The oldest ' + deadLimit + ' dead letters.' : num(dead.length) + ' dead letter' + (dead.length === 1 ? '' : 's') + '.';
    fill($('#dead-table tbody'), dead.map((d) => h('tr', {dataset: {msg: d.id}},
      h('td', {class: 'mono'}, d.id), h('td', {}, d.actor), h('td', {}, d.method), h('td', {class: 'num'}, num(d.attempts)),
      h('td', {class: 'mono', title: d.deadAt}, clock(d.deadAt)), h('td', {class: 'err'}, d.lastError),
      h('td', {class: 'actions'},
        h('button', {type: 'button', class: 'small secondary', onclick: () => inspectDead(d)}, 'Inspect'),
        h('button', {type: 'button', class: 'small', onclick: () => bulk('replay', 'id=' + encodeURIComponent(d.id), 'Replay message ' + d.id + ' to ' + d.actor + '.' + d.method + '?')}, 'Replay'),
        h('button', {type: 'button', class: 'small danger', onclick: () => bulk('purge', 'id=' + encodeURIComponent(d.id), 'Delete message ' + d.id + ' to ' + d.actor + '.' + d.method + ' for good?')}, 'Purge')))));
  }

  function inspectDead(d) {
    fill($('#dead-detail'), h('div', {class: 'panel', id: 'dead-inspect'},
      h('h3', {}, 'Dead letter ', h('span', {class: 'mono'}, d.id)),
      d.correlationId ? h('p', {}, 'correlation ', h('a', {class: 'cid', href: '#/traces/' + encodeURIComponent(d.correlationId)}, d.correlationId)) : null,
      h('pre', {}, JSON.stringify(d, null, 2))));
  }

  // bulk asks for confirmation, then replays or purges what filter selects.
  // Its outcome stays in #dead-result until the next one: the error banner
  // is cleared by the next refresh that succeeds, and a failed purge must
  // not vanish with it. One runs at a time.
  async function bulk(op, filter, question) {
    if (state.bulk) return;
    const purge = op === 'purge';
    const ok = await confirmDialog(purge ? 'Purge dead letters' : 'Replay dead letters', question);
    if (!ok) return;
    const result = $('#dead-result');
    const status = (text, cls) => {
      result.textContent = text;
      result.className = cls;
      result.hidden = false;
    };
    state.bulk = true;
    for (const b of [$('#dead-replay'), $('#dead-purge')]) b.disabled = true;
    status(purge ? 'Purging…' : 'Replaying…', 'muted');
    try {
      const res = await api('/v1/deadletters/' + op + '?' + filter, {method: 'POST'});
      status((purge ? 'Purged ' : 'Replayed ') + num(purge ? res.purged : res.replayed) + '.', 'good');
      fill($('#dead-detail'));
    } catch (err) {
      status((purge ? 'Purge' : 'Replay') + ' failed: ' + err.message, 'bad');
    } finally {
      state.bulk = false;
      for (const b of [$('#dead-replay'), $('#dead-purge')]) b.disabled = false;
    }
    // Through refresh, not a load of its own: a refresh already in flight
    // read the list before this and must not paint over the new one.
    refresh();
  }

  // confirmDialog asks a yes-or-no question in #confirm-dialog and
  // resolves true if it was answered OK. The dialog's close event comes in
  // a task after it closed, so a question may be asked again before the
  // last answer's event: that answer is taken here, and the late event is
  // ignored (see the close listener in init).
  function confirmDialog(title, text) {
    const d = $('#confirm-dialog');
    if (state.confirming) {
      // Asked again before the last answer's close event came (the dialog
      // is modal: it is closed by now): that answer is what it holds.
      state.confirming(d.returnValue === 'ok');
    }
    $('#confirm-title').textContent = title;
    $('#confirm-text').textContent = text;
    d.returnValue = '';
    return new Promise((resolve) => {
      state.confirming = resolve;
      d.showModal();
      $('#confirm-cancel').focus();
    });
  }

  // ---- wiring ----

  function init() {
    setToken(state.token);
    $('#token-button').addEventListener('click', () => askToken(''));
    $('#token-form').addEventListener('submit', (e) => {
      e.preventDefault();
      setToken($('#token-input').value.trim());
      $('#token-dialog').close();
      refresh();
    });
    $('#token-forget').addEventListener('click', () => {
      setToken('');
      $('#token-dialog').close();
    });
    $('#token-cancel').addEventListener('click', () => $('#token-dialog').close());
    $('#confirm-dialog').addEventListener('close', () => {
      const d = $('#confirm-dialog');
      // Open again: a late event of an earlier question, answered already.
      if (d.open || !state.confirming) return;
      const resolve = state.confirming;
      state.confirming = null;
      resolve(d.returnValue === 'ok');
    });

    $('#actor-form').addEventListener('submit', (e) => {
      e.preventDefault();
      let type = $('#actor-type').value;
      let id = $('#actor-id').value.trim();
      const slash = id.indexOf('/');
      if (slash > 0 && state.nodes && state.nodes.types.includes(id.slice(0, slash))) {
        type = id.slice(0, slash);
        id = id.slice(slash + 1);
        $('#actor-id').value = id;
      }
      if (!type || !id) return;
      location.hash = '#/actors/' + encodeURIComponent(type) + '/' + encodeURIComponent(id);
    });
    $('#trace-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const q = $('#trace-q').value.trim();
      location.hash = '#/traces' + (q ? '/' + encodeURIComponent(q) : '');
      state.traceLoaded = false;
      refresh();
    });
    $('#trace-recent').addEventListener('click', () => { location.hash = '#/traces'; });
    $('#dead-type').addEventListener('change', () => refresh());
    $('#dead-replay').addEventListener('click', () => {
      const f = deadFilter();
      const t = $('#dead-type').value;
      bulk('replay', f || 'all=true', 'Replay every dead letter' + (t ? ' of type ' + t : '') + ' back into its queue?');
    });
    $('#dead-purge').addEventListener('click', () => {
      const f = deadFilter();
      const t = $('#dead-type').value;
      bulk('purge', f || 'all=true', 'Delete every dead letter' + (t ? ' of type ' + t : '') + ' for good? This cannot be undone.');
    });

    window.addEventListener('hashchange', () => { state.traceLoaded = false; route(); });
    setInterval(() => { if (!document.hidden) refresh(); }, refreshMs);
    route();
  }

  init();
})();
