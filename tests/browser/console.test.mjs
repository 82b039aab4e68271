// The web console in a real browser: Debian's headless Chromium, driven by playwright-core,
// against `rapport serve --demo` (the demo organization with the example plugins). One scenario,
// step by step, each step a test that saves a screenshot of the page it ends on in
// target/screenshots/. Run by `make test` after `cargo test --workspace`, or alone:
//
//   cd tests/browser && npm ci && node --test console.test.mjs
//
// RAPPORT_README_SHOT=1 also writes docs/console.png (the README's picture of the console).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { ROOT, WASM, api, checkPrerequisites, launchBrowser, screenshot, startServer } from './harness.mjs';

describe('the web console in Chromium', { concurrency: 1 }, () => {
  let server;
  let browser;
  let page;
  let work;
  let rival;
  let profileUrl;

  const go = (path) => page.goto(server.url + path);

  /** Sign in with another key in place of the current session (one profile, one cookie jar). */
  async function signInAs(token) {
    await browser.context.clearCookies();
    await go('/sign-in');
    await page.getByLabel('API key or admin token').fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(/\/orgs\/demo$/);
  }

  before(async () => {
    checkPrerequisites();
    work = mkdtempSync(join(tmpdir(), 'rapport-browser-work-'));
    server = await startServer();
    // Another organization with a customer of its own: the console must never show it to a
    // demo key, whatever URL is typed.
    await api(server, 'POST', '/v1/orgs', server.adminToken, { slug: 'rival', name: 'Rival Direct' });
    const key = await api(server, 'POST', '/v1/orgs/rival/keys', server.adminToken, { name: 'ops', role: 'owner' });
    const created = await api(server, 'POST', '/v1/orgs/rival/customers', key.token, {
      name: 'Rival Secret Person', email: 'secret@rival.example', external_ids: [{ source: 'shop', id: 'secret-1' }],
    });
    rival = { id: created.id };
    assert.ok(rival.id, `the rival customer's id, from ${JSON.stringify(created)}`);
    browser = await launchBrowser({ downloads: join(work, 'downloads') });
    page = await browser.context.newPage();
    // Generous: the debug binary on a busy CI machine.
    page.setDefaultTimeout(30_000);
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('sends a visitor to sign in, and signs in with an API key', async () => {
    await go('/');
    assert.match(page.url(), /\/sign-in/);
    await page.getByLabel('API key or admin token').fill('rk_not_a_key');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await assert.doesNotReject(page.getByRole('alert').filter({ hasText: 'not valid' }).waitFor());
    await screenshot(page, 'sign-in-refused');
    await page.getByLabel('API key or admin token').fill(server.ownerKey);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(/\/orgs\/demo$/);
    const cookie = (await browser.context.cookies()).find((c) => c.name === 'rapport_session');
    assert.ok(cookie, 'a session cookie');
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, 'Strict');
    assert.ok(!(await page.content()).includes(server.ownerKey), 'the key is never written into a page');
    await screenshot(page, 'dashboard');
  });

  it('reaches every page from the navigation', async () => {
    const nav = page.getByRole('navigation', { name: 'Main' });
    for (const name of ['Dashboard', 'Customers', 'Distributors', 'Import', 'Plugins', 'Reports', 'Audit log']) {
      await nav.getByRole('link', { name, exact: true }).click();
      await page.waitForLoadState();
      const current = nav.getByRole('link', { name, exact: true });
      assert.equal(await current.getAttribute('aria-current'), 'page', `${name} is marked as the current page`);
      await screenshot(page, `page-${name.toLowerCase().replace(' ', '-')}`);
    }
  });

  it('searches customers with the filter language', async () => {
    await go('/orgs/demo/customers');
    // The search updates the results in place (htmx) or reloads the page: wait for what it shows.
    const search = page.getByRole('searchbox').first();
    await search.fill('branch = "bkk-01"');
    await search.press('Enter');
    await page.waitForURL(/[?&]q=branch/);
    const rows = page.locator('main table tbody tr');
    await rows.first().waitFor();
    assert.ok((await rows.count()) > 0, 'customers of branch bkk-01 are listed');
    await screenshot(page, 'customers-search');
    await search.fill('branch = ');
    await search.press('Enter');
    const error = page.locator('main [role=alert]').first();
    await error.waitFor();
    assert.match(await error.innerText(), /\S/, 'a bad filter shows its error');
    await screenshot(page, 'customers-bad-filter');
  });

  it('opens a profile', async () => {
    await go('/orgs/demo/customers?q=' + encodeURIComponent('email ~ "example.com"'));
    const first = page.locator('main table tbody tr a[href*="/customers/"]').first();
    await first.click();
    await page.waitForURL(/\/orgs\/demo\/customers\/\d+$/);
    profileUrl = new URL(page.url()).pathname;
    assert.ok(await page.locator('h1').isVisible());
    await screenshot(page, 'profile');
    if (process.env.RAPPORT_README_SHOT) {
      mkdirSync(join(ROOT, 'docs'), { recursive: true });
      await page.screenshot({ path: join(ROOT, 'docs/console.png') });
    }
  });

  it('shows a policy deny next to the field it names when an edit removes the contact', async () => {
    assert.ok(profileUrl, 'the step before opened a profile');
    await go(profileUrl);
    const edit = page.getByRole('link', { name: /^edit$/i }).or(page.getByRole('button', { name: /^edit$/i })).first();
    if (await edit.count()) await edit.click();
    await page.getByLabel(/^email/i).fill('');
    await page.getByLabel(/^phone/i).fill('');
    await page.getByRole('button', { name: /^save/i }).click();
    const email = page.getByLabel(/^email/i);
    await email.waitFor();
    assert.equal(await email.getAttribute('aria-invalid'), 'true', 'the email field is marked invalid');
    const describedBy = await email.getAttribute('aria-describedby');
    assert.ok(describedBy, 'the email field points at its error');
    const reason = page.locator(`[id="${describedBy.split(' ')[0]}"]`);
    assert.match(await reason.innerText(), /email or a phone/, 'the policy\'s reason sits at the email field');
    await screenshot(page, 'profile-edit-denied');
    const id = profileUrl.split('/').at(-1);
    const stored = await api(server, 'GET', `/v1/orgs/demo/customers/${id}`, server.ownerKey);
    assert.ok(stored.email || stored.phone, 'the denied edit changed nothing');
  });

  it('imports a CSV file and watches it finish, with the rows to look at', async () => {
    const lines = ['source,external_id,name,email,phone,branch'];
    for (let i = 1; i <= 40; i++) lines.push(`browser,imp-${i},Imported Person ${i},imp${i}@example.com,,bkk-01`);
    lines.push('browser,imp-no-contact,Nobody Reachable,,,bkk-01'); // line 42: denied by require-contact
    lines.push('browser,imp-no-name,,noname@example.com,,bkk-01'); // line 43: warned (no name)
    lines.push(',imp-no-source,No Source,nosource@example.com,,bkk-01'); // line 44: rejected
    const file = join(work, 'customers.csv');
    writeFileSync(file, lines.join('\n') + '\n');

    await go('/orgs/demo/import');
    await page.getByLabel('What the file holds').selectOption('customers');
    await page.getByLabel('File (CSV or NDJSON)').setInputFiles(file);
    await page.getByRole('button', { name: 'Import', exact: true }).click();
    await page.waitForURL(/\/orgs\/demo\/import\/imp_/);
    // htmx polls the progress until the report replaces it.
    await page.locator('#import-state[data-state="done"]').waitFor({ timeout: 60_000 });
    assert.equal(await page.locator('#import-progress').getAttribute('value'), '100');
    assert.equal(await page.locator('#import-accepted').innerText(), '41');
    assert.equal(await page.locator('#import-denied').innerText(), '1');
    assert.equal(await page.locator('#import-rejected').innerText(), '1');
    assert.equal(await page.locator('#import-warnings').innerText(), '1');
    const denied = page.locator('#import-rows tr[data-outcome="denied"]');
    assert.equal(await denied.locator('td').first().innerText(), '42');
    assert.match(await denied.innerText(), /require-contact/);
    await screenshot(page, 'import-finished');

    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('link', { name: 'Download the row report (CSV)' }).click(),
    ]);
    const csv = readFileSync(await download.path(), 'utf8').trim().split('\n');
    assert.equal(csv[0], 'line,outcome,message');
    assert.deepEqual(csv.slice(1).map((l) => l.split(',').slice(0, 2).join(',')), ['42,denied', '43,warning', '44,rejected']);

    // Importing the same file again changes nothing.
    await go('/orgs/demo/import');
    await page.getByLabel('File (CSV or NDJSON)').setInputFiles(file);
    await page.getByRole('button', { name: 'Import', exact: true }).click();
    await page.locator('#import-state[data-state="done"]').waitFor({ timeout: 60_000 });
    assert.equal(await page.locator('#import-created').innerText(), '0');
    assert.equal(await page.locator('#import-unchanged').innerText(), '41');
    // Interactions as NDJSON, onto a customer the CSV created.
    const orders = join(work, 'orders.ndjson');
    writeFileSync(orders, [1, 2].map((n) => JSON.stringify({
      source: 'browser', external_id: `order-${n}`, customer: { source: 'browser', external_id: 'imp-1' },
      kind: 'purchase', channel: 'web', occurred_at: `2026-0${n}-01T00:00:00Z`, amount_minor: 12_345, currency: 'THB',
    })).join('\n') + '\n');
    await go('/orgs/demo/import');
    await page.getByLabel('What the file holds').selectOption('interactions');
    await page.getByLabel('File (CSV or NDJSON)').setInputFiles(orders);
    await page.getByRole('button', { name: 'Import', exact: true }).click();
    await page.locator('#import-state[data-state="done"]').waitFor({ timeout: 60_000 });
    assert.equal(await page.locator('#import-accepted').innerText(), '2');
    assert.equal(await page.locator('#import-rejected').innerText(), '0');
  });

  it('refuses an import of a file that is neither CSV nor NDJSON, at the file field', async () => {
    const file = join(work, 'customers.xlsx');
    writeFileSync(file, 'not a spreadsheet');
    await go('/orgs/demo/import');
    await page.getByLabel('File (CSV or NDJSON)').setInputFiles(file);
    await page.getByRole('button', { name: 'Import', exact: true }).click();
    const field = page.getByLabel('File (CSV or NDJSON)');
    await page.locator('#import-file-error').waitFor();
    assert.equal(await field.getAttribute('aria-invalid'), 'true');
    assert.match(await page.locator('#import-file-error').innerText(), /neither CSV nor NDJSON/);
  });

  it('installs a plugin, refuses a configuration at the field the schema names, then saves a good one', async () => {
    await go('/orgs/demo/plugins');
    await page.getByLabel('Component (.wasm)').setInputFiles(join(WASM, 'require_contact.wasm'));
    await page.getByLabel('Name', { exact: true }).fill('contact-check');
    await page.getByLabel('Version label (optional)').fill('1.0.0');
    await page.getByRole('button', { name: 'Install', exact: true }).click();
    await page.waitForURL(/\/orgs\/demo\/plugins\/contact-check\?done=installed/);
    assert.equal(await page.locator('#plugin-status').innerText(), 'disabled');

    const config = page.getByLabel('Configuration (JSON)');
    await config.fill('{"welcome_tag": 42}');
    await page.getByRole('button', { name: 'Save the configuration' }).click();
    await page.locator('#plugin-config-error').waitFor();
    assert.equal(await config.getAttribute('aria-invalid'), 'true');
    assert.match(await page.locator('#plugin-config-error').innerText(), /\/welcome_tag/);
    const row = page.locator('#field-welcome_tag');
    assert.equal(await row.getAttribute('aria-invalid'), 'true', 'the schema row of the bad field is marked');
    assert.match(await row.locator('.error').innerText(), /42/);
    await screenshot(page, 'plugin-config-refused');

    await config.fill('{"welcome_tag": "vip", "normalize_email": true}');
    await page.getByRole('button', { name: 'Save the configuration' }).click();
    await page.waitForURL(/done=saved/);
    assert.deepEqual(JSON.parse(await config.inputValue()), { welcome_tag: 'vip', normalize_email: true });

    await page.getByRole('button', { name: 'Enable contact-check' }).click();
    await page.waitForURL(/done=saved/);
    assert.equal(await page.locator('#plugin-status').innerText(), 'enabled');
    await screenshot(page, 'plugin');
    // Policies run in the list's order: move the new one (installed last) up by one.
    await go('/orgs/demo/plugins');
    const policies = () => page.locator('#plugins tbody tr').evaluateAll((rows) =>
      rows.filter((r) => r.children[1].innerText.trim() === 'policy')
        .map((r) => [r.children[2].innerText.trim(), r.dataset.plugin])
        .sort((a, b) => Number(a[0]) - Number(b[0]))
        .map(([, name]) => name));
    const before = await policies();
    assert.equal(before.at(-1), 'contact-check', 'a new policy runs last');
    await page.getByRole('button', { name: 'Move up contact-check' }).click();
    await page.waitForURL(/\/orgs\/demo\/plugins$/);
    const expected = [...before.slice(0, -2), 'contact-check', before.at(-2)];
    assert.deepEqual(await policies(), expected);
    await screenshot(page, 'plugins');
  });

  it('shows a policy\'s execution trace, the import\'s denial among its calls', async () => {
    await go('/orgs/demo/plugins/require-contact');
    const denials = page.locator('table.trace tbody tr').filter({ has: page.locator('td:nth-child(4):text-is("deny")') });
    assert.ok((await denials.count()) > 0, 'the denied import row left a trace');
    await screenshot(page, 'plugin-trace');
  });

  it('refuses a file that is not a plugin component, at the file field, and installs nothing', async () => {
    await go('/orgs/demo/plugins');
    const before = await page.locator('#plugins tbody tr').count();
    await page.getByLabel('Component (.wasm)').setInputFiles(join(WASM, 'not-a-plugin.wasm'));
    await page.getByLabel('Name', { exact: true }).fill('not-a-plugin');
    await page.getByRole('button', { name: 'Install', exact: true }).click();
    const error = page.locator('#plugin-component-error');
    await error.waitFor();
    assert.match(await error.innerText(), /refused/);
    assert.equal(await page.getByLabel('Component (.wasm)').getAttribute('aria-invalid'), 'true');
    assert.equal(await page.getByLabel('Name', { exact: true }).inputValue(), 'not-a-plugin', 'the form keeps what was typed');
    assert.equal(await page.locator('#plugins tbody tr').count(), before);
    await screenshot(page, 'plugin-install-refused');
  });

  it('dry-runs a candidate version beside the shadow report', async () => {
    await go('/orgs/demo/plugins');
    await page.getByLabel('Component (.wasm)').setInputFiles(join(WASM, 'require_contact.wasm'));
    await page.getByLabel('Name', { exact: true }).fill('contact-check');
    await page.getByLabel('Version label (optional)').fill('1.1.0');
    await page.getByLabel('Make it the active version').uncheck();
    await page.getByRole('button', { name: 'Install', exact: true }).click();
    await page.waitForURL(/\/plugins\/contact-check\?done=installed/);
    await page.getByLabel('Candidate version').selectOption('2');
    await page.getByRole('button', { name: 'Run the dry-run' }).click();
    await page.locator('#dry-run-result').waitFor();
    assert.ok(await page.locator('#shadow-result').isVisible(), 'the shadow report sits beside the dry-run');
    await screenshot(page, 'plugin-dry-run');
    // Roll forward to the candidate, then back: the active version follows.
    await page.locator('#versions tr[data-version="2"]').getByRole('button', { name: 'Make active contact-check' }).click();
    await page.waitForURL(/done=saved/);
    assert.match(await page.locator('#versions tr[data-version="2"]').innerText(), /active/);
    await page.locator('#versions tr[data-version="1"]').getByRole('button', { name: 'Make active contact-check' }).click();
    await page.waitForURL(/done=saved/);
    assert.match(await page.locator('#versions tr[data-version="1"]').innerText(), /active/);
  });

  it('runs a report, shows its table and chart, and downloads its CSV', async () => {
    await go('/orgs/demo/reports');
    await page.getByLabel('Reporter').selectOption('customers-by-branch');
    await page.getByLabel('Parameters (JSON)').fill('{}');
    await page.getByRole('button', { name: 'Run the report' }).click();
    await page.locator('#report-table').waitFor();
    assert.ok(await page.locator('#report svg').isVisible(), 'the chart is drawn');
    const shown = await page.locator('#report-table tbody tr').count();
    assert.ok(shown > 0);
    await screenshot(page, 'report');

    const [download] = await Promise.all([page.waitForEvent('download'), page.locator('#download-csv').click()]);
    const csv = readFileSync(await download.path(), 'utf8').trim().split('\n');
    assert.equal(csv[0], 'branch,customers');
    assert.equal(csv.length - 1, shown, 'the CSV has the rows the page shows');
    const total = csv.slice(1).reduce((sum, l) => sum + Number(l.split(',').at(-1)), 0);
    const api = await fetch(`${server.url}/v1/orgs/demo/reports/customers-by-branch/run`, {
      method: 'POST', headers: { authorization: `Bearer ${server.ownerKey}` }, body: '{}',
    }).then((r) => r.json());
    assert.equal(total, api.rows.reduce((sum, r) => sum + r[1], 0), 'the same numbers as the API');
    const [html] = await Promise.all([page.waitForEvent('download'), page.locator('#download-html').click()]);
    assert.match(readFileSync(await html.path(), 'utf8'), /<svg[^]*<table>/, 'the standalone page has the chart and the table');

    await page.getByLabel('Parameters (JSON)').fill('{"tag": ');
    await page.getByRole('button', { name: 'Run the report' }).click();
    await page.locator('#report-params-error').waitFor();
    assert.match(await page.locator('#report-params-error').innerText(), /not JSON/);
  });

  it('browses the sponsor tree with downline volume', async () => {
    await go('/orgs/demo/distributors');
    const top = page.locator('#distributors tbody tr');
    assert.ok((await top.count()) > 0, 'the top of the tree is listed');
    await screenshot(page, 'distributors');
    // Into a top sponsor with a downline; its recruits' numbers add up to its downline's.
    const withDownline = top.filter({ has: page.locator('td:nth-child(6):not(:text-is("0"))') }).first();
    await withDownline.locator('a').click();
    await page.locator('#downline-size').waitFor();
    const size = Number((await page.locator('#downline-size').innerText()).replaceAll(',', ''));
    const recruits = page.locator('#distributors tbody tr');
    let counted = 0;
    for (let i = 0; i < (await recruits.count()); i++) {
      counted += 1 + Number((await recruits.nth(i).locator('td').nth(5).innerText()).replaceAll(',', ''));
    }
    assert.equal(counted, size, 'the downline is the recruits and their downlines');
    await screenshot(page, 'distributor');
  });

  it('refuses an upload that does not carry the session\'s CSRF token, and nothing lands', async () => {
    const before = await api(server, 'GET', '/v1/orgs/demo/plugins', server.ownerKey);
    // A real component, which the install would take with the right token: only the token stops it.
    const component = [...readFileSync(join(WASM, 'require_contact.wasm'))];
    const status = await page.evaluate(async (bytes) => {
      const form = new FormData();
      form.append('name', 'forged');
      form.append('component', new Blob([new Uint8Array(bytes)]), 'forged.wasm');
      const res = await fetch('/orgs/demo/plugins?_csrf=not-the-token', { method: 'POST', body: form });
      return res.status;
    }, component);
    assert.equal(status, 403);
    const now = await api(server, 'GET', '/v1/orgs/demo/plugins', server.ownerKey);
    assert.deepEqual(now.items.map((p) => p.name), before.items.map((p) => p.name));
  });

  it('shows a read-only key the plugins without the owner\'s forms, and refuses it an import', async () => {
    const key = await api(server, 'POST', '/v1/orgs/demo/keys', server.adminToken, { name: 'viewer', role: 'read-only' });
    try {
      await signInAs(key.token);
      await go('/orgs/demo/plugins');
      assert.ok((await page.locator('#plugins tbody tr').count()) > 0, 'the plugins are listed');
      assert.equal(await page.locator('#install').count(), 0, 'no install form');
      assert.equal(await page.getByRole('button', { name: /^Disable / }).count(), 0, 'no buttons that change plugins');
      await screenshot(page, 'plugins-read-only');
      const response = await go('/orgs/demo/import');
      assert.equal(response.status(), 403);
    } finally {
      await signInAs(server.ownerKey);
    }
  });

  it('sums a branch agent\'s sponsor tree over the customers the agent may see only', async () => {
    const volume = async () => {
      await go('/orgs/demo/distributors');
      return Number((await page.locator('.card .big').nth(1).innerText()).replaceAll(',', ''));
    };
    const whole = await volume();
    const key = await api(server, 'POST', '/v1/orgs/demo/keys', server.adminToken,
      { name: 'bkk-agent', role: 'agent', branch: 'bkk-01' });
    try {
      await signInAs(key.token);
      const scoped = await volume();
      assert.ok(scoped > 0 && scoped < whole, `the agent's volume ${scoped} is part of the whole ${whole}`);
      assert.ok(await page.getByText('Counting only the customers your key may see.').isVisible());
      await screenshot(page, 'distributors-agent');
    } finally {
      await signInAs(server.ownerKey);
    }
  });

  it('answers another organization\'s URLs with the 404 page, never its data', async () => {
    for (const path of [
      `/orgs/rival/customers/${rival.id}`,
      `/orgs/demo/customers/${rival.id}`,
      '/orgs/rival/plugins',
      '/orgs/rival/distributors',
      '/orgs/rival/reports?plugin=customers-by-branch',
    ]) {
      const response = await go(path);
      assert.equal(response.status(), 404, `${path} answers 404`);
      const html = await page.content();
      assert.ok(html.includes('Page not found'), `${path} shows the 404 page`);
      assert.ok(!html.includes('Rival Secret Person') && !html.includes('secret@rival.example'), `${path} shows no data`);
    }
    await screenshot(page, 'not-found');
  });

  it('switches to Thai', async () => {
    await go('/orgs/demo/plugins');
    await page.getByRole('link', { name: 'ไทย' }).click();
    await page.waitForLoadState();
    assert.equal(await page.locator('html').getAttribute('lang'), 'th');
    const nav = page.getByRole('navigation', { name: 'Main' });
    assert.ok(await nav.getByRole('link', { name: 'ลูกค้า', exact: true }).isVisible());
    assert.ok(await page.getByRole('heading', { name: 'ติดตั้งปลั๊กอิน' }).isVisible(), 'the page\'s own labels too');
    await screenshot(page, 'plugins-thai');
    for (const path of ['/orgs/demo', '/orgs/demo/import', '/orgs/demo/reports', '/orgs/demo/distributors']) {
      await go(path);
      assert.equal(await page.locator('html').getAttribute('lang'), 'th');
    }
    await screenshot(page, 'distributors-thai');
  });
});
