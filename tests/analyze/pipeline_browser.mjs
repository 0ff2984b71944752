// Test helper: open the pipeline test page in headless Debian Chromium (playwright-core, never a
// downloaded browser) and print what it computed as JSON, with the workers the page started.
//   node pipeline_browser.mjs job.json   job = {playwright, url, timeoutMs?}
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";

const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
const { chromium } = createRequire(job.playwright)("playwright-core");
const profile = mkdtempSync(join(tmpdir(), "wt-chromium-"));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync"],
});
const out = { pageErrors: [] };
try {
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  page.on("pageerror", (e) => out.pageErrors.push(String(e)));
  await page.goto(job.url);
  await page.waitForFunction(() => window.__pipe && (window.__pipe.ready || window.__pipe.error), null,
    { timeout: job.timeoutMs ?? 120_000 });
  out.state = await page.evaluate(() => window.__pipe);
  out.workerUrls = page.workers().map((w) => w.url());
} catch (e) {
  out.fatal = String(e?.stack ?? e);
} finally {
  await ctx.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(out));
