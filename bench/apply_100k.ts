/**
 * Peak memory of one large pull: builds 100,000 server rows, applies them in
 * one `applyServerChanges` call to a fresh file database, and prints one JSON
 * line with the resident set size (RSS) seen.
 *
 * Run in its own process by `core.bench.ts`, so the figure is not polluted by
 * the other benchmarks; it also runs alone:
 *
 * ```sh
 * node --expose-gc --import tsx bench/apply_100k.ts          # the library
 * node --expose-gc --import tsx bench/apply_100k.ts --raw    # raw libSQL: one UPSERT per row
 * ```
 *
 * The rows are built as a pull response delivers them (parsed from JSON), then
 * a full collection runs where the runtime allows it (`--expose-gc`; Bun
 * always), so that the garbage of building them is not counted as the apply's.
 * RSS is sampled every 10 ms with `setInterval`, plus once before and after
 * the apply; the OS high-water mark (`process.resourceUsage().maxRSS`, KB on
 * all three runtimes) is reported too, as it also sees peaks inside a
 * synchronous native call, when timers cannot fire.
 *
 * @module
 */

import { join } from "node:path";
import process from "node:process";
import { createHlc } from "../mod.ts";
import {
  makeIds,
  openRawDatabase,
  openTasksDatabase,
  rawUpsertStatements,
  serverRows,
} from "./fixtures.ts";
import { tempDir } from "./lib.ts";

/** What the script prints (one JSON line on stdout). */
export interface ApplyMemoryReport {
  /** `ours` (applyServerChanges) or `raw` (one client.batch of UPSERTs). */
  readonly mode: "ours" | "raw";
  /** Rows applied. */
  readonly rows: number;
  /** Duration of the apply, ms. */
  readonly ms: number;
  /** RSS when the script starts (runtime and modules loaded), MB. */
  readonly rssStartMb: number;
  /** RSS once the rows are built, just before the apply, MB. */
  readonly rssBeforeMb: number;
  /** Highest sampled RSS, MB. */
  readonly peakRssMb: number;
  /** The process's maximum RSS according to the OS, MB (`null` where unavailable). */
  readonly maxRssMb: number | null;
  /**
   * RSS after the database is closed and a full collection ran, the input rows
   * still alive, MB: what `rssBeforeMb` does not explain was kept by the
   * native side.
   */
  readonly rssAfterCloseMb: number;
}

const MB = 1024 * 1024;
const ROWS = 100_000;

// A full collection where the runtime offers one (node/deno with --expose-gc, bun always),
// so that the garbage of building the rows is not counted as the apply's.
function collectGarbage(): void {
  const g = globalThis as { gc?: () => void; Bun?: { gc(force: boolean): void } };
  if (g.Bun !== undefined) g.Bun.gc(true);
  else g.gc?.();
}

const rssStart = process.memoryUsage().rss;
const mode = process.argv.includes("--raw") ? "raw" : "ours";
const dir = tempDir();
try {
  const url = `file:${join(dir.path, `apply-100k-${mode}.db`)}`;
  const rows = serverRows(makeIds(ROWS), createHlc({ nodeId: "server" }));

  collectGarbage();
  // Open (and migrate) before sampling starts: only the apply is of interest.
  const ours = mode === "ours" ? await openTasksDatabase(url) : undefined;
  const raw = mode === "raw" ? await openRawDatabase(url) : undefined;

  let peak = 0;
  const sample = () => {
    peak = Math.max(peak, process.memoryUsage().rss);
  };
  const rssBefore = process.memoryUsage().rss;
  sample();
  const timer = setInterval(sample, 10);
  const start = performance.now();
  if (ours !== undefined) {
    await ours.applyServerChanges({ tasks: { rows, cursor: 1 } });
  } else {
    await raw!.batch(rawUpsertStatements(rows), "write");
  }
  const ms = performance.now() - start;
  sample();
  clearInterval(timer);

  await ours?.close();
  raw?.close();
  collectGarbage();
  const rssAfterClose = process.memoryUsage().rss;

  const maxRssKb = typeof process.resourceUsage === "function"
    ? process.resourceUsage().maxRSS
    : undefined;
  const report: ApplyMemoryReport = {
    mode,
    rows: rows.length,
    ms,
    rssStartMb: rssStart / MB,
    rssBeforeMb: rssBefore / MB,
    peakRssMb: peak / MB,
    maxRssMb: maxRssKb === undefined ? null : maxRssKb / 1024,
    rssAfterCloseMb: rssAfterClose / MB,
  };
  console.log(JSON.stringify(report));
} finally {
  dir.cleanup();
}
