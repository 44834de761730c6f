// The Insights & Analytics page of `pullstats serve`. Everything it shows
// comes from the publisher API under BASE, with the read token the user
// signs in with (kept in sessionStorage, never in the URL). The selection is
// in the URL query with the API's own parameter names, so a link restores it.
'use strict';

(() => {
  const BASE = '/api/publisher/analytics/v1';
  const TOKEN_KEY = 'pullstats.token';
  const DEFAULT_REPOS = 5;
  const COLORS = ['#1d63ed', '#e8590c', '#2b8a3e', '#ae3ec9', '#c92a2a', '#0b7285',
    '#5f3dc4', '#a61e4d', '#5c940d', '#364fc7'];
  const DIMENSIONS = [
    ['country', 'Country', 'unknown'],
    ['host', 'Cloud provider', 'not a cloud provider'],
    ['type', 'Origin type', 'unknown'],
    ['client', 'Client and version', 'unknown'],
    ['platform', 'OS / arch', 'not given'],
  ];
  const EMPTY_TOTAL = { pullCount: 0, pullByTagCount: 0, pullByDigestCount: 0, versionCheckCount: 0, ipCount: 0 };
  const EMPTY_BREAKDOWNS = Object.fromEntries(DIMENSIONS.map(([k]) => [k, { rows: [], otherRows: 0, otherPulls: 0 }]));
  const METRICS = {
    pullCount: 'Pulls',
    ipCount: 'Unique IPs',
    versionCheckCount: 'Version checks',
  };

  const $ = (id) => document.getElementById(id);
  const state = {
    token: sessionStorage.getItem(TOKEN_KEY),
    namespace: null,
    repositories: [],
    selected: [],
    series: null,
    references: [],
    sort: { key: 'pullCount', desc: true },
    chart: null,
    request: 0,
    // False from sign-in until the selection's data is drawn.
    idle: false,
  };

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  // How long a request is asked again while the server answers 503 (the
  // first view of a long span on a large table is a scan that can outlast
  // the server's deadline; the scan goes on and a later try gets it).
  const LONGEST_WAIT_MS = 15 * 60 * 1000;

  const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

  // GET of an API path. A 503 is asked again after its Retry-After
  // (1 to 60 s) while `wait.current()` holds (the view is still the one
  // asked for), telling `wait.note(seconds)`.
  async function api(path, token = state.token, wait = {}) {
    const started = Date.now();
    for (;;) {
      const response = await fetch(BASE + path, {
        headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' },
      });
      let body = null;
      try {
        body = await response.json();
      } catch (_) {
        body = null;
      }
      const current = !wait.current || wait.current();
      if (response.status === 503 && current && Date.now() - started < LONGEST_WAIT_MS) {
        const seconds = Math.min(Math.max(Number(response.headers.get('Retry-After')) || 5, 1), 60);
        if (wait.note) wait.note(seconds);
        await sleep(seconds * 1000);
        continue;
      }
      if (!response.ok) {
        throw new ApiError(response.status, (body && body.detail) || response.statusText);
      }
      return body;
    }
  }

  const enc = encodeURIComponent;
  const fmt = (n) => Number(n).toLocaleString('en-US');
  const day = (iso) => iso.slice(0, 10);

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (k === 'dataset') Object.assign(node.dataset, v);
      else if (k in node) node[k] = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  }

  function setStatus(text, kind = '') {
    const s = $('status');
    s.textContent = text;
    s.className = kind;
  }

  // ---- sign-in ---------------------------------------------------------

  function showSignIn(message) {
    $('app').hidden = true;
    $('sign-out').hidden = true;
    $('sign-in').hidden = false;
    const error = $('sign-in-error');
    error.hidden = !message;
    error.textContent = message || '';
    $('token').focus();
  }

  async function signIn(event) {
    event.preventDefault();
    const token = $('token').value.trim();
    try {
      await api('/namespaces', token);
    } catch (e) {
      showSignIn(e.status === 401 || e.status === 403
        ? 'This token is not a valid read token.'
        : `Cannot sign in: ${e.message}`);
      return;
    }
    state.token = token;
    sessionStorage.setItem(TOKEN_KEY, token);
    $('token').value = '';
    start();
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    if (state.chart) state.chart.destroy();
    state.chart = null;
    showSignIn(message);
  }

  function failed(e) {
    state.idle = true;
    if (e.status === 401) {
      signOut('Your token is no longer valid; sign in again.');
      return;
    }
    setStatus(`Something went wrong: ${e.message}`, 'error');
  }

  // ---- selection and URL -------------------------------------------------

  function custom() {
    return $('period').value === 'custom';
  }

  function spanQuery() {
    const q = new URLSearchParams({ timespan: $('timespan').value });
    if (custom()) {
      q.set('from', $('from').value);
      q.set('to', $('to').value);
    } else {
      q.set('period', $('period').value);
    }
    return q;
  }

  function syncUrl() {
    const q = new URLSearchParams({ namespace: state.namespace });
    q.set('repos', state.selected.join(','));
    for (const [k, v] of spanQuery()) q.set(k, v);
    history.replaceState(null, '', `${location.pathname}?${q}`);
  }

  function isoDay(d) {
    return d.toISOString().slice(0, 10);
  }

  function showCustom() {
    for (const f of document.querySelectorAll('.field.custom')) f.hidden = !custom();
    if (custom() && !($('from').value && $('to').value)) {
      const today = new Date();
      $('to').value = isoDay(today);
      $('from').value = isoDay(new Date(today.getTime() - 30 * 86400e3));
    }
  }

  async function start() {
    $('sign-in').hidden = true;
    $('app').hidden = false;
    $('sign-out').hidden = false;
    const url = new URLSearchParams(location.search);
    let namespaces;
    try {
      namespaces = await api('/namespaces');
    } catch (e) {
      failed(e);
      return;
    }
    const select = $('namespace');
    select.replaceChildren(...namespaces.map((n) => el('option', { value: n.namespace, textContent: n.namespace })));
    if (namespaces.length === 0) {
      setStatus('This token sees no namespace with pulls yet.', 'empty');
      state.idle = true;
      return;
    }
    const wanted = url.get('namespace');
    select.value = namespaces.some((n) => n.namespace === wanted) ? wanted : namespaces[0].namespace;
    if (['weeks', 'months'].includes(url.get('timespan'))) $('timespan').value = url.get('timespan');
    if (url.get('from') && url.get('to')) {
      $('period').value = 'custom';
      $('from').value = url.get('from');
      $('to').value = url.get('to');
    } else if ([...$('period').options].some((o) => o.value === url.get('period'))) {
      $('period').value = url.get('period');
    }
    showCustom();
    const repos = url.get('repos');
    await loadNamespace(repos === null ? null : repos.split(',').filter(Boolean));
  }

  async function loadNamespace(wanted) {
    state.namespace = $('namespace').value;
    let answer;
    try {
      answer = await api(`/namespaces/${enc(state.namespace)}/repositories`);
    } catch (e) {
      failed(e);
      return;
    }
    state.repositories = answer.repositories;
    const known = new Set(state.repositories.map((r) => r.name));
    // The link's repositories this token sees; none (or no link): the top five.
    const linked = (wanted || []).filter((r) => known.has(r));
    state.selected = linked.length
      ? linked
      : state.repositories.slice(0, DEFAULT_REPOS).map((r) => r.name);
    renderRepoList();
    loadYears();
    refresh();
  }

  function renderRepoList() {
    const filter = $('repo-filter').value.toLowerCase();
    const chosen = new Set(state.selected);
    const items = state.repositories
      .filter((r) => r.name.toLowerCase().includes(filter))
      .map((r) => {
        const box = el('input', { type: 'checkbox', value: r.name, checked: chosen.has(r.name) });
        box.addEventListener('change', () => {
          state.selected = state.repositories.map((x) => x.name)
            .filter((n) => (n === r.name ? box.checked : state.selected.includes(n)));
          $('repos-count').textContent = state.selected.length;
          refresh();
        });
        return el('li', {}, el('label', {}, box, ` ${r.name} `, el('span', { className: 'hint', textContent: `${fmt(r.pulls)} pulls all time` })));
      });
    $('repo-list').replaceChildren(...items);
    $('repos-count').textContent = state.selected.length;
  }

  // ---- data ----------------------------------------------------------------

  async function refresh() {
    if (!state.namespace) return;
    if (custom() && !($('from').value && $('to').value && $('from').value < $('to').value)) {
      setStatus('Choose a custom range whose first day is before its last.', 'error');
      state.idle = true;
      return;
    }
    syncUrl();
    const request = ++state.request;
    state.idle = false;
    setStatus('Loading…', 'loading');
    document.body.classList.add('busy');
    const span = spanQuery();
    const names = new URLSearchParams(span);
    for (const r of state.selected) names.append('repos', r);
    const full = new URLSearchParams(span);
    for (const r of state.selected) full.append('repos', `${state.namespace}/${r}`);
    const ns = enc(state.namespace);
    try {
      // Without repos= the API counts the whole namespace: ask nothing.
      const nothing = state.selected.length === 0;
      const none = { repos: {}, references: [], total: EMPTY_TOTAL, breakdowns: EMPTY_BREAKDOWNS };
      const wait = {
        current: () => request === state.request,
        note: (seconds) => {
          if (request === state.request) {
            setStatus(`Counting this span for the first time; asking again in ${seconds} s…`, 'loading');
          }
        },
      };
      const [series, breakdowns, references] = nothing ? [none, none, none] : await Promise.all([
        api(`/repos/pulls?${full}`, state.token, wait),
        api(`/namespaces/${ns}/breakdowns?${names}`, state.token, wait),
        api(`/namespaces/${ns}/references?${names}`, state.token, wait),
      ]);
      if (request !== state.request) return;
      state.series = series;
      state.references = references.references;
      renderChart();
      renderTotals(breakdowns.total);
      renderBreakdowns(breakdowns);
      renderReferences(references.truncated);
      const t = breakdowns.total;
      if (nothing) setStatus('Select at least one repository.', 'empty');
      else if (t.pullCount === 0 && t.versionCheckCount === 0) setStatus('No pulls in this span.', 'empty');
      else setStatus(`${breakdowns.from} to ${breakdowns.to} (excluded), ${state.selected.length} repositories.`);
    } catch (e) {
      if (request === state.request) failed(e);
    } finally {
      if (request === state.request) {
        document.body.classList.remove('busy');
        state.idle = true;
      }
    }
  }

  // ---- chart ----------------------------------------------------------------

  function metric() {
    return document.querySelector('input[name=metric]:checked').value;
  }

  function chartRows() {
    const lines = state.selected
      .map((r) => [r, state.series.repos[`${state.namespace}/${r}`]])
      .filter(([, s]) => s && s.pulls.length > 0);
    const periods = lines.length ? lines[0][1].pulls.map((p) => ({ start: p.start, end: p.end })) : [];
    return { lines, periods };
  }

  function renderChart() {
    const box = $('chart');
    if (state.chart) state.chart.destroy();
    state.chart = null;
    $('tooltip').hidden = true;
    box.replaceChildren();
    const { lines, periods } = chartRows();
    if (lines.length === 0) {
      box.append(el('p', { className: 'empty', textContent: 'No series to draw for this selection.' }));
      return;
    }
    const key = metric();
    $('chart-title').textContent = `${METRICS[key]} per ${$('timespan').value === 'weeks' ? 'week' : 'month'}`;
    const xs = periods.map((p) => Date.parse(p.start) / 1000);
    const data = [xs, ...lines.map(([, s]) => s.pulls.map((p) => p[key]))];
    const opts = {
      width: Math.max(280, box.clientWidth),
      height: 320,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.05)] } },
      axes: [{}, { values: (u, vals) => vals.map(fmt), size: 70 }],
      series: [
        { label: 'Period starting', value: (u, v) => (v == null ? '' : isoDay(new Date(v * 1000))) },
        ...lines.map(([name], i) => ({
          label: name,
          stroke: COLORS[i % COLORS.length],
          width: 2,
          points: { show: true, size: 6 },
          value: (u, v) => (v == null ? '' : fmt(v)),
        })),
      ],
      hooks: { setCursor: [(u) => tooltip(u, periods)] },
    };
    state.chart = new uPlot(opts, data, box);
  }

  function tooltip(u, periods) {
    const tip = $('tooltip');
    const i = u.cursor.idx;
    if (i == null || u.cursor.left < 0) {
      tip.hidden = true;
      return;
    }
    const rows = [el('div', { className: 'when', textContent: `${day(periods[i].start)} to ${day(periods[i].end)}` })];
    u.series.forEach((s, k) => {
      if (k === 0 || !s.show) return;
      const v = u.data[k][i];
      rows.push(el('div', { className: 'row', dataset: { series: s.label, value: String(v) } },
        el('span', { className: 'swatch' }), `${s.label}: `, el('strong', { textContent: fmt(v) })));
    });
    tip.replaceChildren(...rows);
    for (const [k, s] of u.series.entries()) {
      const sw = tip.querySelector(`.row[data-series="${CSS.escape(String(s.label))}"] .swatch`);
      if (k > 0 && sw) sw.style.background = s.stroke();
    }
    tip.hidden = false;
    // Beside the cursor, inside the plot, relative to the chart's section.
    const frame = tip.parentElement.getBoundingClientRect();
    const plot = u.over.getBoundingClientRect();
    const left = Math.min(plot.left + u.cursor.left + 12, plot.right - tip.offsetWidth) - frame.left;
    tip.style.left = `${Math.max(0, left)}px`;
    tip.style.top = `${plot.top - frame.top + Math.max(0, u.cursor.top - 20)}px`;
  }

  // ---- totals, breakdowns, references -----------------------------------

  function renderTotals(t) {
    const items = [
      ['Pulls', t.pullCount], ['By tag', t.pullByTagCount], ['By digest', t.pullByDigestCount],
      ['Version checks', t.versionCheckCount], ['Unique IPs', t.ipCount],
    ];
    $('totals').replaceChildren(...items.flatMap(([k, v]) => [
      el('dt', { textContent: k }), el('dd', { textContent: fmt(v), dataset: { value: String(v) } })]));
  }

  function renderBreakdowns(answer) {
    const blocks = DIMENSIONS.map(([key, title, none]) => {
      const b = answer.breakdowns[key];
      const body = b.rows.map((r) => {
        const bar = el('span', { className: 'bar' });
        bar.style.width = `${(r.share * 100).toFixed(1)}%`;
        return el('tr', {},
          el('th', { scope: 'row', textContent: r.value ?? none, className: r.value == null ? 'none' : '' }),
          el('td', { className: 'barcell' }, bar),
          el('td', { className: 'num', textContent: fmt(r.pulls) }),
          el('td', { className: 'num', textContent: `${(r.share * 100).toFixed(1)}%` }));
      });
      if (b.otherRows > 0) {
        body.push(el('tr', {}, el('th', { scope: 'row', textContent: `${b.otherRows} others` }), el('td'),
          el('td', { className: 'num', textContent: fmt(b.otherPulls) }), el('td')));
      }
      if (body.length === 0) body.push(el('tr', {}, el('td', { colSpan: 4, className: 'empty', textContent: 'No pulls in this span.' })));
      return el('figure', { className: 'breakdown', dataset: { dimension: key } },
        el('figcaption', { textContent: title }),
        el('table', {},
          el('thead', {}, el('tr', {}, el('th', { scope: 'col', textContent: title }), el('th', { scope: 'col', textContent: 'Share' }),
            el('th', { scope: 'col', className: 'num', textContent: 'Pulls' }), el('th', { scope: 'col', className: 'num', textContent: '%' }))),
          el('tbody', {}, ...body)));
    });
    $('breakdowns').replaceChildren(...blocks);
  }

  function renderReferences(truncated) {
    const filter = $('reference-filter').value.toLowerCase();
    const { key, desc } = state.sort;
    const rows = state.references
      .filter((r) => `${r.repo} ${r.reference}`.toLowerCase().includes(filter))
      .sort((a, b) => {
        const c = typeof a[key] === 'number' ? a[key] - b[key] : String(a[key]).localeCompare(String(b[key]));
        return desc ? -c : c;
      });
    const numeric = ['pullCount', 'pullByTagCount', 'pullByDigestCount', 'versionCheckCount', 'ipCount'];
    $('references').tBodies[0].replaceChildren(...rows.map((r) => el('tr', {},
      el('td', { textContent: r.repo }),
      el('td', { className: 'ref', textContent: r.reference }),
      ...numeric.map((k) => el('td', { className: 'num', textContent: fmt(r[k]) })))));
    for (const th of $('references').tHead.rows[0].cells) {
      const k = th.querySelector('button').dataset.key;
      th.setAttribute('aria-sort', k === key ? (desc ? 'descending' : 'ascending') : 'none');
    }
    if (truncated !== undefined) {
      $('references-note').textContent = truncated ? 'Showing the busiest 1,000 references.' : '';
    }
    if (rows.length === 0) {
      $('references').tBodies[0].append(el('tr', {}, el('td', { colSpan: 7, className: 'empty', textContent: 'No references match.' })));
    }
  }

  // ---- downloads -------------------------------------------------------------

  function exportsPath() {
    return `/namespaces/${enc(state.namespace)}/pulls/exports/years`;
  }

  async function loadYears() {
    try {
      const { years } = await api(exportsPath());
      const list = years.map((y) => y.year).sort((a, b) => b - a);
      $('dl-year').replaceChildren(...list.map((y) => el('option', { value: y, textContent: y })));
      await loadNumbers();
    } catch (e) {
      failed(e);
    }
  }

  async function loadNumbers() {
    const year = $('dl-year').value;
    const ts = $('dl-timespan').value;
    const unit = ts === 'weeks' ? 'week' : 'month';
    if (!year) {
      $('dl-number').replaceChildren();
      $('dl-go').disabled = true;
      $('dl-status').textContent = 'No complete week or month to download yet.';
      return;
    }
    const answer = await api(`${exportsPath()}/${enc(year)}/${ts}`);
    const numbers = answer[`${unit}s`].map((p) => p[unit]).sort((a, b) => b - a);
    $('dl-number').replaceChildren(...numbers.map((n) => el('option', { value: n, textContent: `${unit} ${n}` })));
    $('dl-go').disabled = numbers.length === 0;
    $('dl-status').textContent = numbers.length ? '' : `No complete ${unit} in ${year}.`;
  }

  async function download(event) {
    event.preventDefault();
    const path = `${exportsPath()}/${enc($('dl-year').value)}/${$('dl-timespan').value}/${enc($('dl-number').value)}/${$('dl-view').value}`;
    $('dl-status').textContent = 'Preparing the file…';
    try {
      const { data } = await api(path, state.token, {
        note: (seconds) => {
          $('dl-status').textContent = `Preparing the file (a large one); asking again in ${seconds} s…`;
        },
      });
      for (const part of data) {
        const a = el('a', { href: part.url, download: '' });
        document.body.append(a);
        a.click();
        a.remove();
      }
      const bytes = data.reduce((n, p) => n + p.size, 0);
      $('dl-status').textContent = `${data.length} file${data.length === 1 ? '' : 's'}, ${fmt(bytes)} bytes.`;
    } catch (e) {
      $('dl-status').textContent = `Cannot download: ${e.message}`;
    }
  }

  // ---- wiring ------------------------------------------------------------------

  function share() {
    const link = $('share-link');
    link.value = location.href;
    link.hidden = false;
    link.select();
    const done = () => setStatus('Link copied. It restores this view after sign-in.');
    if (navigator.clipboard) navigator.clipboard.writeText(location.href).then(done, () => setStatus('Copy the link shown.'));
    else setStatus('Copy the link shown.');
  }

  function wire() {
    $('sign-in-form').addEventListener('submit', signIn);
    $('sign-out').addEventListener('click', () => signOut());
    $('selection').addEventListener('submit', (e) => e.preventDefault());
    $('namespace').addEventListener('change', () => loadNamespace(null));
    $('timespan').addEventListener('change', refresh);
    $('period').addEventListener('change', () => {
      showCustom();
      refresh();
    });
    $('from').addEventListener('change', refresh);
    $('to').addEventListener('change', refresh);
    for (const r of document.querySelectorAll('input[name=metric]')) r.addEventListener('change', renderChart);
    $('share').addEventListener('click', share);
    $('repo-filter').addEventListener('input', renderRepoList);
    $('reference-filter').addEventListener('input', () => renderReferences());
    for (const b of $('references').tHead.querySelectorAll('button')) {
      b.addEventListener('click', () => {
        const key = b.dataset.key;
        state.sort = { key, desc: state.sort.key === key ? !state.sort.desc : key !== 'repo' && key !== 'reference' };
        renderReferences();
      });
    }
    $('dl-year').addEventListener('change', () => loadNumbers().catch(failed));
    $('dl-timespan').addEventListener('change', () => loadNumbers().catch(failed));
    $('downloads').addEventListener('submit', download);
    let resize = null;
    window.addEventListener('resize', () => {
      clearTimeout(resize);
      resize = setTimeout(() => {
        if (state.chart) state.chart.setSize({ width: Math.max(280, $('chart').clientWidth), height: 320 });
      }, 100);
    });
  }

  // For tests and the curious: the chart as drawn, and whether the page
  // has drawn its current selection.
  window.pullstats = {
    get chart() { return state.chart; },
    get idle() { return state.idle; },
  };

  wire();
  if (state.token) start();
  else showSignIn();
})();
