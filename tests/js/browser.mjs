// Test helper: drive the packaged demo in headless Debian Chromium with playwright-core.
//   node browser.mjs job.json  ->  JSON on stdout
// job = {playwright, url, queries?: string[], screenshot?, timeoutMs?, initScript?}
// Never downloads a browser: executablePath is /usr/bin/chromium.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";

const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
const { chromium } = createRequire(job.playwright)("playwright-core");
const timeout = job.timeoutMs ?? 120_000;
const profile = mkdtempSync(join(tmpdir(), "wt-chromium-"));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: job.chromium ?? "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-quic", "--no-first-run", "--disable-sync"],
  viewport: { width: 1000, height: 900 },
});
const out = { console: [], pageErrors: [], failedRequests: [] };
try {
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  page.setDefaultTimeout(timeout);
  page.on("console", (m) => out.console.push({ type: m.type(), text: m.text() }));
  page.on("pageerror", (e) => out.pageErrors.push(String(e)));
  page.on("requestfailed", (r) => out.failedRequests.push(`${r.url()} ${r.failure()?.errorText}`));
  if (job.initScript) await page.addInitScript(job.initScript);
  const t0 = Date.now();
  await page.goto(job.url);
  await page.waitForFunction(() => window.__demo && (window.__demo.ready || window.__demo.error), null, { timeout });
  out.wallLoadMs = Date.now() - t0;
  out.state = await page.evaluate(() => {
    const d = window.__demo;
    return { ready: d.ready, error: d.error, timings: d.timings, bytes: d.bytes, docs: d.docs,
      embeddings: d.embeddings, isolated: crossOriginIsolated, status: document.getElementById("status").textContent,
      threadStats: d.threadStats, model: d.modelLabel, models: d.models };
  });
  for (const [i, q] of (job.queries ?? []).entries()) {
    await page.fill("#query", "");
    await page.type("#query", q);
    await page.press("#query", "Enter");
    await page.waitForFunction((n) => window.__demo.queries.length >= n, i + 1, { timeout });
  }
  out.queries = await page.evaluate(() => window.__demo.queries);
  out.shown = await page.$$eval("#results li", (lis) => lis.map((li) => Number(li.dataset.index)));
  if (job.screenshot) await page.screenshot({ path: job.screenshot, fullPage: true });
} catch (e) {
  out.fatal = String(e?.stack ?? e);
} finally {
  await ctx.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(out));
