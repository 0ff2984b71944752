// Test helper: open a page in headless Debian Chromium (playwright-core, never a downloaded browser),
// wait until a JS expression is truthy, print the value of another as JSON.
//   node browser.mjs job.json
// job = {playwright, url, until, result, timeoutMs?, pages?: n (open n tabs of url)}
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";

const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
const { chromium } = createRequire(job.playwright)("playwright-core");
const timeout = job.timeoutMs ?? 120_000;
const profile = mkdtempSync(join(tmpdir(), "wt-net-chromium-"));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: job.chromium ?? "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-quic", "--no-first-run", "--disable-sync"],
});
const out = { console: [], pageErrors: [] };
try {
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  page.setDefaultTimeout(timeout);
  page.on("console", (m) => out.console.push(`${m.type()}: ${m.text()}`.slice(0, 500)));
  page.on("pageerror", (e) => out.pageErrors.push(String(e)));
  await page.goto(job.url);
  if (job.signal) {
    // the test creates this file when the page may stop (e.g. the job it serves is done)
    const { existsSync } = await import("node:fs");
    const t0 = Date.now();
    while (!existsSync(job.signal) && Date.now() - t0 < timeout) await new Promise((r) => setTimeout(r, 200));
  }
  await page.waitForFunction(job.until, null, { timeout, polling: 200 });
  out.result = await page.evaluate(job.result);
} catch (e) {
  out.fatal = String(e?.stack ?? e);
  try {
    out.state = await ctx.pages()[0]?.evaluate(job.result);
  } catch {}
} finally {
  await ctx.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(out));
