/**
 * Core benchmarks: the library against raw `@libsql/client` on the same
 * machine, in the same run, on real `file:` databases. Prints one Markdown
 * table.
 *
 * ```sh
 * node --import tsx bench/core.bench.ts
 * node_modules/.bin/deno run -A bench/core.bench.ts
 * node_modules/.bin/bun bench/core.bench.ts
 * ```
 *
 * 1. `insertMany` of 10,000 rows vs one plain INSERT per row in one `client.batch`.
 * 2. `applyServerChanges` of 10,000 new rows vs one LWW UPSERT per row in one batch.
 * 3. The same with 10,000 newer versions of rows already stored.
 * 4. `hlc.now()` throughput (mitata).
 * 5. Peak RSS of `applyServerChanges` of 100,000 rows (child process, `apply_100k.ts`).
 *
 * Every timed iteration gets a fresh database (created and migrated untimed),
 * so each starts from the same state. Times are medians of `ITERATIONS`
 * alternating runs after one warm-up of each side.
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Client } from "@libsql/client";
import { bench, run } from "mitata";
import { createHlc, type ServerRow } from "../mod.ts";
import type { ApplyMemoryReport } from "./apply_100k.ts";
import {
  makeIds,
  openRawDatabase,
  openTasksDatabase,
  rawInsertStatements,
  rawUpsertStatements,
  serverRows,
  taskData,
  type TasksDatabase,
} from "./fixtures.ts";
import {
  formatMb,
  formatMs,
  formatNumber,
  formatRate,
  markdownTable,
  measurePair,
  type PairResult,
  progress,
  removeDatabaseFiles,
  type ResultRow,
  runtimeCommand,
  runtimeInfo,
  tempDir,
  type Trial,
} from "./lib.ts";

const ROWS = 10_000;
const ITERATIONS = 7;
const MEMORY_TARGET_MB = 256;

const runtime = runtimeInfo();
const dir = tempDir();
let databases = 0;

interface OpenDb<T> {
  readonly db: T;
  readonly path: string;
}

// A fresh, migrated library database per iteration; `preload` runs untimed.
function oursTrial(
  name: string,
  body: (db: TasksDatabase) => Promise<unknown>,
  preload?: (db: TasksDatabase) => Promise<unknown>,
): Trial<OpenDb<TasksDatabase>> {
  return {
    async setup() {
      const path = join(dir.path, `${name}-ours-${databases++}.db`);
      const db = await openTasksDatabase(`file:${path}`);
      if (preload !== undefined) await preload(db);
      return { db, path };
    },
    run: ({ db }) => body(db),
    async teardown({ db, path }) {
      await db.close();
      removeDatabaseFiles(path);
    },
  };
}

// A fresh raw libSQL database with the same table per iteration; `preload` runs untimed.
function rawTrial(
  name: string,
  body: (client: Client) => Promise<unknown>,
  preload?: (client: Client) => Promise<unknown>,
): Trial<OpenDb<Client>> {
  return {
    async setup() {
      const path = join(dir.path, `${name}-raw-${databases++}.db`);
      const client = await openRawDatabase(`file:${path}`);
      if (preload !== undefined) await preload(client);
      return { db: client, path };
    },
    run: ({ db }) => body(db),
    teardown({ db, path }) {
      db.close();
      removeDatabaseFiles(path);
      return Promise.resolve();
    },
  };
}

const ms = formatMs;
const perSecond = formatRate;
const mb = formatMb;
type Row = ResultRow;

function timedRow(name: string, result: PairResult, target: number): Row {
  const ratio = result.ours / result.raw;
  return [
    name,
    `${ms(result.ours)} (${perSecond(ROWS, result.ours)} rows/s)`,
    `${ms(result.raw)} (${perSecond(ROWS, result.raw)} rows/s)`,
    formatNumber(ratio, 2),
    `≤ ${target}`,
    ratio <= target ? "yes" : "**no**",
  ];
}

// 1. insertMany vs one INSERT per row. Ids (and the baseline's versions) are made up front.
async function benchInsertMany(): Promise<Row> {
  progress(`insertMany ${formatNumber(ROWS)} rows …`);
  const ids = makeIds(ROWS);
  const clock = createHlc({ nodeId: "bench-raw" });
  const versions = ids.map(() => clock.now());
  const inputs = ids.map((id, i) => ({ system_id: id, ...taskData(i) }));
  const result = await measurePair(
    oursTrial("insert", (db) => db.insertMany("tasks", inputs)),
    rawTrial("insert", (client) => client.batch(rawInsertStatements(ids, versions), "write")),
    ITERATIONS,
  );
  return timedRow(`insertMany, ${formatNumber(ROWS)} rows`, result, 1.5);
}

// 2./3. applyServerChanges vs one LWW UPSERT per row; `stored` rows are preloaded untimed.
async function benchApply(
  name: string,
  rows: readonly ServerRow[],
  stored: readonly ServerRow[] | undefined,
): Promise<Row> {
  progress(`${name} …`);
  const result = await measurePair(
    oursTrial(
      "apply",
      (db) => db.applyServerChanges({ tasks: { rows, cursor: 2 } }),
      stored && ((db) => db.applyServerChanges({ tasks: { rows: stored, cursor: 1 } })),
    ),
    rawTrial(
      "apply",
      (client) => client.batch(rawUpsertStatements(rows), "write"),
      stored && ((client) => client.batch(rawUpsertStatements(stored), "write")),
    ),
    ITERATIONS,
  );
  return timedRow(name, result, 2);
}

// 4. hlc.now() with mitata (median of its samples).
async function benchHlc(): Promise<Row> {
  progress(`hlc.now() …`);
  const clock = createHlc({ nodeId: "bench" });
  bench("hlc.now()", () => clock.now());
  const { benchmarks } = await run({ format: "quiet", throw: true });
  const stats = benchmarks[0]?.runs[0]?.stats;
  if (stats === undefined) throw new Error("mitata returned no result for hlc.now()");
  const nsPerOp = stats.p50;
  return [
    "`hlc.now()`",
    `${formatNumber(1e9 / nsPerOp)} ops/s (${formatNumber(nsPerOp, 0)} ns/op)`,
    "—",
    "—",
    "—",
    "—",
  ];
}

// 5. Peak RSS of a 100k-row apply, each side in its own child process.
function benchMemory(): Row {
  progress(`applyServerChanges 100,000 rows (memory, child processes) …`);
  const script = fileURLToPath(new URL("./apply_100k.ts", import.meta.url));
  const child = (raw: boolean): ApplyMemoryReport => {
    const { command, args } = runtimeCommand(script, { exposeGc: true });
    const result = spawnSync(command, raw ? [...args, "--raw"] : args, {
      encoding: "utf8",
      maxBuffer: 16 * 1024 * 1024,
    });
    if (result.status !== 0) {
      throw new Error(
        `apply_100k.ts${raw ? " --raw" : ""} failed (${
          result.error ?? `exit ${result.status}`
        }):\n${result.stderr}`,
      );
    }
    const last = result.stdout.trim().split("\n").at(-1) ?? "";
    return JSON.parse(last) as ApplyMemoryReport;
  };
  const ours = child(false);
  const raw = child(true);
  const describe = (r: ApplyMemoryReport) => {
    const maxRss = r.maxRssMb === null ? "n/a" : mb(r.maxRssMb);
    return `peak ${mb(r.peakRssMb)}, maxRSS ${maxRss} (${mb(r.rssStartMb)} at start, ` +
      `${mb(r.rssBeforeMb)} with the rows built; apply ${ms(r.ms)})`;
  };
  const peak = Math.max(ours.peakRssMb, ours.maxRssMb ?? 0);
  const rawPeak = Math.max(raw.peakRssMb, raw.maxRssMb ?? 0);
  return [
    "Peak RSS, `applyServerChanges` of 100,000 rows",
    describe(ours),
    describe(raw),
    formatNumber(peak / rawPeak, 2),
    `< ${MEMORY_TARGET_MB} MB`,
    peak < MEMORY_TARGET_MB ? "yes" : "**no**",
  ];
}

function commandLine(): string {
  switch (runtime.name) {
    case "node":
      return "node --import tsx bench/core.bench.ts";
    case "deno":
      return "deno run -A bench/core.bench.ts";
    case "bun":
      return "bun bench/core.bench.ts";
  }
}

try {
  const server = createHlc({ nodeId: "server" });
  const ids = makeIds(ROWS);
  const initial = serverRows(ids, server);
  const newer = serverRows(ids, server, 1);

  // Memory first: on Linux a child's maxRSS starts at its parent's RSS at fork
  // time (it survives exec), so the parent must still be small.
  const memory = benchMemory();
  // The micro-benchmark next, before the database work fills the heap and the JIT.
  const hlc = await benchHlc();
  const rows: Row[] = [];
  rows.push(await benchInsertMany());
  rows.push(
    await benchApply(`applyServerChanges, ${formatNumber(ROWS)} new rows`, initial, undefined),
  );
  rows.push(
    await benchApply(
      `applyServerChanges, ${formatNumber(ROWS)} newer versions of stored rows`,
      newer,
      initial,
    ),
  );
  rows.push(hlc, memory);

  console.log(`### Core benchmarks — ${runtime.label}`);
  console.log();
  console.log(
    `\`${commandLine()}\`, ${new Date().toISOString().slice(0, 10)}: median of ${ITERATIONS} ` +
      `runs after 1 warm-up, a fresh \`file:\` database per run; raw = \`@libsql/client\` ` +
      `\`client.batch(stmts, "write")\` with one statement per row.`,
  );
  console.log();
  console.log(markdownTable(
    ["Benchmark", "Ours", "Raw libSQL", "Ratio (ours/raw)", "Target", "Met"],
    rows,
  ));
} finally {
  dir.cleanup();
}
