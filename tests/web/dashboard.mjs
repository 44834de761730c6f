// The dashboard in a real browser: Debian's Chromium driven by
// playwright-core (src/web/node_modules, from src/web/package-lock.json),
// against a running `pullstats serve`. Started by tests/serve/web.rs, which
// gives, in the environment:
//   PULLSTATS_URL   the server (http://127.0.0.1:PORT)
//   TOKEN_A         a read token of namespace NAMESPACE_A
//   TOKEN_B         a read token of another namespace
//   HIDDEN          JSON {namespace, repos}: names TOKEN_B must never see
//   OUT             a directory for screenshots, the downloaded CSV and
//                   result.json (what was downloaded, for the Rust side)
// Exits 1 with a message on the first check that fails.
import { createRequire } from 'node:module';
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';

const require = createRequire(new URL('../../src/web/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const BASE = '/api/publisher/analytics/v1';
const url = process.env.PULLSTATS_URL;
const tokenA = process.env.TOKEN_A;
const tokenB = process.env.TOKEN_B;
const hidden = JSON.parse(process.env.HIDDEN);
const out = process.env.OUT;
mkdirSync(out, { recursive: true });

const problems = [];
const origin = new URL(url).origin;

function watch(page, name) {
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`${name}: console error: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`${name}: page error: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`${name}: request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on('request', (r) => {
    if (new URL(r.url()).origin !== origin) problems.push(`${name}: request to another host: ${r.url()}`);
  });
  page.on('response', (r) => { if (r.status() >= 400) problems.push(`${name}: ${r.status()} for ${r.url()}`); });
  return page;
}

async function api(token, path) {
  const r = await fetch(url + BASE + path, { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(r.status, 200, `${path}: ${r.status}`);
  return r.json();
}

async function signIn(page, token) {
  await page.waitForSelector('#sign-in:not([hidden])');
  await page.fill('#token', token);
  await page.click('#sign-in button[type=submit]');
  await page.waitForSelector('#app:not([hidden])');
  await idle(page);
}

async function idle(page) {
  await page.waitForFunction(() => window.pullstats.idle);
}

// The selection as the page's URL has it.
async function selection(page) {
  const q = new URL(page.url()).searchParams;
  return Object.fromEntries(q.entries());
}

// The chart equals the API for the page's selection: one line per
// repository with data, as many points as periods, and each point's
// tooltip numbers equal to the API's.
async function checkChart(page, token, metric, label) {
  await idle(page);
  const sel = await selection(page);
  const q = new URLSearchParams({ timespan: sel.timespan });
  if (sel.from) { q.set('from', sel.from); q.set('to', sel.to); } else q.set('period', sel.period);
  const repos = sel.repos.split(',').filter(Boolean);
  for (const r of repos) q.append('repos', `${sel.namespace}/${r}`);
  const answer = await api(token, `/repos/pulls?${q}`);
  const lines = repos.filter((r) => answer.repos[`${sel.namespace}/${r}`]);
  assert.ok(lines.length > 0, `${label}: a line to draw`);
  const drawn = await page.evaluate(() => {
    const u = window.pullstats.chart;
    return { series: u.series.slice(1).map((s) => s.label), points: u.data[0].length };
  });
  assert.deepEqual(drawn.series, lines, `${label}: one line per repository`);
  const periods = answer.repos[`${sel.namespace}/${lines[0]}`].pulls;
  assert.equal(drawn.points, periods.length, `${label}: one point per period`);
  for (let i = 0; i < periods.length; i++) {
    const [x, y] = await page.evaluate((i) => {
      const u = window.pullstats.chart;
      const box = u.over.getBoundingClientRect();
      // Just inside the plot at its edges (the first and last points).
      const x = Math.min(Math.max(u.valToPos(u.data[0][i], 'x'), 1), box.width - 1);
      return [box.left + x, box.top + box.height / 2];
    }, i);
    await page.mouse.move(x, y, { steps: 3 });
    await page.waitForFunction((i) => window.pullstats.chart.cursor.idx === i
      && !document.getElementById('tooltip').hidden, i, { timeout: 10000 })
      .catch((e) => { throw new Error(`${label}: no tooltip for period ${i} (${e.message})`); });
    const tip = await page.$$eval('#tooltip .row', (rows) => rows.map((r) => [r.dataset.series, Number(r.dataset.value)]));
    const when = await page.$eval('#tooltip .when', (w) => w.textContent);
    const want = lines.map((r) => [r, answer.repos[`${sel.namespace}/${r}`].pulls[i][metric]]);
    assert.deepEqual(tip, want, `${label}: tooltip of period ${i}`);
    assert.equal(when, `${periods[i].start.slice(0, 10)} to ${periods[i].end.slice(0, 10)}`, `${label}: dates of period ${i}`);
  }
  return sel;
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--no-first-run', '--disable-quic', '--disable-sync'],
});
const result = {};
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  const page = watch(await context.newPage(), 'first page');
  await page.goto(`${url}/`);
  await page.screenshot({ path: join(out, 'sign-in.png') });
  assert.ok(!page.url().includes(tokenA));
  await signIn(page, tokenA);
  assert.ok(!page.url().includes(tokenA), 'the token is never in the URL');

  // Default view: weeks over the last 3 months, the top five repositories.
  let sel = await checkChart(page, tokenA, 'pullCount', 'default');
  const top = (await api(tokenA, `/namespaces/${sel.namespace}/repositories`)).repositories.slice(0, 5).map((r) => r.name);
  assert.deepEqual(sel.repos.split(','), top, 'the top five by pulls');
  assert.equal(sel.timespan, 'weeks');
  await page.mouse.move(10, 10);
  await page.screenshot({ path: join(out, 'overview.png'), fullPage: true });

  // Breakdowns and totals are the API's.
  const names = new URLSearchParams({ timespan: sel.timespan, period: sel.period });
  for (const r of sel.repos.split(',')) names.append('repos', r);
  const b = await api(tokenA, `/namespaces/${sel.namespace}/breakdowns?${names}`);
  const shown = await page.$eval('#totals dd', (d) => Number(d.dataset.value));
  assert.equal(shown, b.total.pullCount, 'total pulls');
  const countries = await page.$$eval('[data-dimension=country] tbody tr', (rows) => rows.length);
  assert.equal(countries, b.breakdowns.country.rows.length + (b.breakdowns.country.otherRows > 0 ? 1 : 0));
  const refs = await api(tokenA, `/namespaces/${sel.namespace}/references?${names}`);
  const refRows = await page.$$eval('#references tbody tr', (rows) => rows.length);
  assert.equal(refRows, refs.references.length, 'one row per reference');

  // Months, then 12 months, then unique IPs.
  await page.selectOption('#timespan', 'months');
  await checkChart(page, tokenA, 'pullCount', 'months');
  await page.selectOption('#period', 'last-12-months');
  await checkChart(page, tokenA, 'pullCount', '12 months');
  await page.check('input[name=metric][value=ipCount]');
  sel = await checkChart(page, tokenA, 'ipCount', 'unique IPs');
  await page.mouse.move(10, 10);
  await page.screenshot({ path: join(out, 'months-unique-ips.png'), fullPage: true });
  // A legend click hides a line (the tooltip then leaves it out).
  await page.click('.u-legend .u-series:nth-child(2)');
  const shownLines = await page.evaluate(() => window.pullstats.chart.series.slice(1).filter((s) => s.show).length);
  assert.equal(shownLines, sel.repos.split(',').length - 1, 'a legend click hides one line');
  await page.click('.u-legend .u-series:nth-child(2)');

  // A share link restores the selection in a new page, after sign-in.
  await page.click('#share');
  const link = await page.inputValue('#share-link');
  assert.equal(link, page.url());
  const second = watch(await context.newPage(), 'shared link');
  await second.goto(link);
  await signIn(second, tokenA);
  assert.deepEqual(await selection(second), await selection(page), 'the same selection');
  for (const id of ['#namespace', '#timespan', '#period']) {
    assert.equal(await second.inputValue(id), await page.inputValue(id), id);
  }
  const checked = (p) => p.$$eval('#repo-list input:checked', (xs) => xs.map((x) => x.value));
  assert.deepEqual(await checked(second), await checked(page));
  await second.close();

  // A view past serve's deadline (503 + Retry-After) is asked again, the
  // page saying so meanwhile, and drawn once answered. (Not watched: its
  // 503 is the point.)
  const slow = await context.newPage();
  let refused = 0;
  await slow.route('**/breakdowns?*', (route) => {
    refused += 1;
    if (refused > 1) return route.continue();
    return route.fulfill({
      status: 503,
      headers: { 'Retry-After': '2', 'Content-Type': 'application/json' },
      body: JSON.stringify({ detail: 'not answered in time; try again shortly' }),
    });
  });
  await slow.goto(link);
  await slow.waitForSelector('#sign-in:not([hidden])');
  await slow.fill('#token', tokenA);
  await slow.click('#sign-in button[type=submit]');
  await slow.waitForFunction(() => document.getElementById('status').textContent.includes('asking again in 2 s'));
  await idle(slow);
  assert.equal(refused, 2, 'the refused view is asked once more');
  assert.equal(await slow.$eval('#status', (x) => x.className), '', 'no error shown');
  const again = new URLSearchParams({ timespan: sel.timespan, period: sel.period });
  for (const r of sel.repos.split(',')) again.append('repos', r);
  const slowTotal = (await api(tokenA, `/namespaces/${sel.namespace}/breakdowns?${again}`)).total.pullCount;
  assert.equal(await slow.$eval('#totals dd', (d) => Number(d.dataset.value)), slowTotal, 'the total, once answered');
  await slow.close();

  // A download is the API's signed link: the Rust side compares it with
  // `pullstats export`.
  await page.selectOption('#dl-view', 'summary');
  await page.selectOption('#dl-timespan', 'weeks');
  await page.waitForFunction(() => document.querySelector('#dl-number').options.length > 0);
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#dl-go')]);
  const file = join(out, 'download.csv');
  await download.saveAs(file);
  Object.assign(result, {
    namespace: sel.namespace,
    view: 'summary',
    year: Number(await page.inputValue('#dl-year')),
    week: Number(await page.inputValue('#dl-number')),
    file,
  });

  // A phone's width: the page still lays out (and is captured).
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(out, 'phone.png'), fullPage: true });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `no sideways scrolling at a phone's width (${overflow}px)`);

  // Another namespace's token sees none of the first namespace's names,
  // even through a link to it.
  const other = await browser.newContext();
  const third = watch(await other.newPage(), 'other namespace');
  await third.goto(link);
  await signIn(third, tokenB);
  // Names as the page shows them: namespaces, repositories (list, chart,
  // references) and the URL; the namespace's name anywhere in the text.
  const seen = await third.evaluate(() => [
    ...[...document.querySelectorAll('#namespace option, #repo-list input')].map((o) => o.value),
    ...[...document.querySelectorAll('#references tbody td:first-child')].map((td) => td.textContent),
    ...(window.pullstats.chart ? window.pullstats.chart.series.map((s) => s.label) : []),
    ...new URL(location.href).searchParams.values(),
  ]);
  const text = await third.evaluate(() => document.body.innerText);
  assert.ok(!text.includes(hidden.namespace), `token B sees ${hidden.namespace}`);
  for (const name of [hidden.namespace, ...hidden.repos]) {
    assert.ok(!seen.some((v) => v === name || v.split(',').includes(name)), `token B sees ${name}`);
  }
  await third.screenshot({ path: join(out, 'other-namespace.png'), fullPage: true });
  await other.close();
  await context.close();
} catch (e) {
  // What the pages said, beside the failed check.
  for (const context of browser.contexts()) {
    for (const [i, p] of context.pages().entries()) {
      const status = await p.$eval('#status', (x) => x.textContent).catch(() => '?');
      console.error(`page ${i} at ${p.url()}: status "${status}"`);
      await p.screenshot({ path: join(out, `failure-${i}.png`), fullPage: true }).catch(() => {});
    }
  }
  console.error(problems.join('\n'));
  throw e;
} finally {
  await browser.close();
}
writeFileSync(join(out, 'result.json'), JSON.stringify(result));
if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.log('dashboard checks passed');
