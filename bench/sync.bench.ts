/**
 * Sync benchmarks: the client, the HTTP transport and the sync server end to
 * end over loopback HTTP, on real `file:` libSQL databases. Prints one
 * Markdown table.
 *
 * ```sh
 * node --import tsx bench/sync.bench.ts
 * node_modules/.bin/deno run -A bench/sync.bench.ts
 * node_modules/.bin/bun bench/sync.bench.ts
 * ```
 *
 * 1. End to end: client A pushes 100,000 rows with `manager.syncNow()`, a fresh
 *    client B pulls them with `manager.syncNow()`; against one raw libSQL
 *    `client.batch` of the same 100,000 INSERTs. The server runs in a child
 *    process (`sync_server.ts`), as it is deployed: apart from the clients,
 *    started once and warmed up, with a fresh database for every run; both
 *    clients run in this process. Median of `E2E_ITERATIONS` runs after a
 *    10,000-row warm-up.
 * 2. Initial pull of 1,000,000 rows into an empty client: peak RSS of the
 *    client, a child process (`pull_1m.ts`), syncing from a server in another
 *    child process (`sync_server.ts`, seeded with 1,000,000 rows).
 * 3. Server throughput under autocannon (32 connections, `LOAD_SECONDS` each):
 *    pushes of 10 new rows, and pulls with nothing new. The server runs in a
 *    child process (`sync_server.ts`), autocannon in this one.
 *
 * Children run on the same runtime as this script (`runtimeCommand`).
 *
 * @module
 */

import { spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import { createHlc, uuidv7 } from "../mod.ts";
import {
  DEFAULT_MAX_CHANGES_PER_PUSH,
  DEFAULT_MAX_PULL_LIMIT,
  PROTOCOL_VERSION,
} from "../server/mod.ts";
import { createHttpSync } from "../src/http_sync.ts";
import { ServerSyncManager } from "../src/sync_manager.ts";
import type { PullMemoryReport } from "./pull_1m.ts";
import type { ServerReady, ServerTimes } from "./sync_server.ts";
import {
  makeIds,
  openRawDatabase,
  openTasksDatabase,
  rawInsertStatements,
  schema,
  taskData,
  type TasksDatabase,
} from "./fixtures.ts";
import {
  formatMb,
  formatMs,
  formatNumber,
  formatRate,
  markdownTable,
  median,
  progress,
  removeDatabaseFiles,
  type ResultRow,
  runtimeCommand,
  runtimeInfo,
  tempDir,
  timeMethods,
} from "./lib.ts";

/** Rows of the end-to-end benchmark. */
const E2E_ROWS = 100_000;
/** Rows of the untimed warm-up of both sides. */
const WARMUP_ROWS = 10_000;
/** Timed end-to-end runs (and raw baselines), alternating. */
const E2E_ITERATIONS = 3;
/** Changes per push: the server's default maximum. */
const BATCH_SIZE = DEFAULT_MAX_CHANGES_PER_PUSH;
/** Rows per pull page: the server's maximum. */
const PULL_LIMIT = DEFAULT_MAX_PULL_LIMIT;
/** End-to-end target. */
const E2E_TARGET_ROWS_PER_S = 20_000;
/** Rows of the initial pull. */
const MEMORY_ROWS = 1_000_000;
const MEMORY_TARGET_MB = 256;
/** autocannon settings. */
const CONNECTIONS = 32;
const LOAD_SECONDS = 10;
const WARMUP_SECONDS = 2;
const ROWS_PER_PUSH = 10;

const runtime = runtimeInfo();
const dir = tempDir("declarative-sync-sync-bench-");
const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));

const ms = formatMs;
const rate = formatRate;
const mb = formatMb;
type Row = ResultRow;

// ---------------------------------------------------------------------------
// Child processes

interface ServerChild {
  readonly ready: ServerReady;
  /** Sends one command line and returns the JSON line it answers. */
  ask<T>(command: string): Promise<T>;
  /** Ends stdin (the server closes and exits) and waits for the exit. */
  close(): Promise<void>;
}

/** Starts `sync_server.ts` in a child process of this runtime. */
async function startServerChild(dbPath: string, seed: number): Promise<ServerChild> {
  const { command, args } = runtimeCommand(here("./sync_server.ts"));
  const child = spawn(command, [...args, "--db", dbPath, "--seed", String(seed)], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const next = async <T>(): Promise<T> => {
    const { value, done } = await lines.next();
    if (done) throw new Error(`sync_server.ts exited (code ${await exited})`);
    return JSON.parse(value as string) as T;
  };
  const ready = await next<ServerReady>();
  return {
    ready,
    ask: <T>(line: string) => {
      child.stdin!.write(`${line}\n`);
      return next<T>();
    },
    async close() {
      child.stdin!.end();
      const code = await exited;
      if (code !== 0) throw new Error(`sync_server.ts exited with code ${code}`);
    },
  };
}

/** Runs a script of this runtime to completion and parses its last stdout line as JSON. */
function runJsonChild<T>(script: string, extra: readonly string[]): Promise<T> {
  const { command, args } = runtimeCommand(here(script), { exposeGc: true });
  const child = spawn(command, [...args, ...extra], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    // "close", not "exit": stdout is complete only once the streams are closed.
    child.once("close", (code) => {
      if (code !== 0) {
        reject(new Error(`${script} failed (exit ${code}):\n${stderr}`));
        return;
      }
      resolve(JSON.parse(stdout.trim().split("\n").at(-1) ?? "") as T);
    });
  });
}

// ---------------------------------------------------------------------------
// 2. Initial pull of 1,000,000 rows: peak RSS of the client process

async function benchInitialPull(): Promise<Row> {
  progress(`initial pull of ${formatNumber(MEMORY_ROWS)} rows: seeding the server …`);
  const path = join(dir.path, "memory-server.db");
  const server = await startServerChild(path, MEMORY_ROWS);
  let report: PullMemoryReport;
  try {
    if (server.ready.sequence !== MEMORY_ROWS) {
      throw new Error(`The server holds sequence ${server.ready.sequence}, not ${MEMORY_ROWS}`);
    }
    progress(
      `  seeded in ${ms(server.ready.seedMs)}; client pulling (child process) …`,
    );
    report = await runJsonChild<PullMemoryReport>("./pull_1m.ts", [
      "--url",
      server.ready.url,
      "--rows",
      String(MEMORY_ROWS),
      "--limit",
      String(PULL_LIMIT),
    ]);
  } finally {
    await server.close();
    removeDatabaseFiles(path);
  }
  if (report.rows !== MEMORY_ROWS) {
    throw new Error(`The client ended with ${report.rows} rows, expected ${MEMORY_ROWS}`);
  }
  const peak = Math.max(report.peakRssMb, report.maxRssMb ?? 0);
  const maxRss = report.maxRssMb === null ? "n/a" : mb(report.maxRssMb);
  return [
    `Initial pull of ${formatNumber(MEMORY_ROWS)} rows into an empty client: peak RSS of the ` +
    `client process`,
    `peak ${mb(report.peakRssMb)}, maxRSS ${maxRss} (${mb(report.rssStartMb)} at start, ` +
    `${mb(report.rssAfterMb)} after; JS heap ≤ ${mb(report.peakHeapMb)}); pull ` +
    `${ms(report.ms)} (${rate(report.rows, report.ms)} rows/s, ${report.pages} pages of ` +
    `${formatNumber(report.pullLimit)}, ${ms(report.applyMs)} in applyServerChanges)`,
    "—",
    "—",
    `< ${MEMORY_TARGET_MB} MB`,
    peak < MEMORY_TARGET_MB ? "yes" : "**no**",
  ];
}

// ---------------------------------------------------------------------------
// 3. Server throughput under autocannon

interface LoadResult {
  readonly requests: { readonly average: number; readonly total: number };
  readonly non2xx: number;
  readonly errors: number;
  readonly timeouts: number;
  readonly "2xx": number;
}

interface LoadRun {
  readonly result: LoadResult;
  /** Latencies of the answered requests, ms, sorted. */
  readonly latencies: number[];
}

interface LoadRequest {
  readonly path: string;
  readonly body: () => string;
  /** Checks one 2xx response body; returns false when it is not what was expected. */
  readonly check: (body: string) => boolean;
}

interface AutocannonInstance extends PromiseLike<LoadResult> {
  on(
    event: "response",
    listener: (client: unknown, status: number, bytes: number, ms: number) => void,
  ): void;
}

async function load(
  url: string,
  request: LoadRequest,
  seconds: number,
): Promise<LoadRun & { bad: number }> {
  let bad = 0;
  const latencies: number[] = [];
  const instance = (autocannon as (options: unknown) => AutocannonInstance)({
    url,
    connections: CONNECTIONS,
    duration: seconds,
    requests: [{
      method: "POST",
      path: request.path,
      headers: { "content-type": "application/json" },
      setupRequest: (req: Record<string, unknown>) => ({ ...req, body: request.body() }),
      onResponse: (status: number, body: string) => {
        if (status >= 200 && status < 300 && !request.check(body)) bad += 1;
      },
    }],
  });
  instance.on("response", (_client, status, _bytes, time) => {
    if (status >= 200 && status < 300) latencies.push(time);
  });
  const result = await instance;
  latencies.sort((a, b) => a - b);
  return { result, latencies, bad };
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function loadRow(name: string, run: LoadRun, rowsPerRequest: number): Row {
  const { result, latencies } = run;
  const errors = result.errors + result.timeouts;
  const rows = rowsPerRequest > 0
    ? ` (${formatNumber(result.requests.average * rowsPerRequest)} rows/s)`
    : "";
  return [
    name,
    `${formatNumber(result.requests.average)} req/s${rows}, p50 ` +
    `${ms(percentile(latencies, 50))}, p99 ${ms(percentile(latencies, 99))}; ` +
    `${formatNumber(result.requests.total)} requests, non-2xx ${result.non2xx}, errors ` +
    `${result.errors}, timeouts ${result.timeouts}`,
    "—",
    "—",
    "0 errors",
    errors === 0 && result.non2xx === 0 ? "yes" : "**no**",
  ];
}

async function benchServerLoad(): Promise<Row[]> {
  const path = join(dir.path, "load-server.db");
  progress(`server throughput (autocannon, ${CONNECTIONS} connections): starting the server …`);
  const server = await startServerChild(path, 0);
  try {
    const clock = createHlc({ nodeId: "bench-load" });
    let next = 0;
    // Every request carries 10 rows never written before, stamped now.
    const push: LoadRequest = {
      path: "/push",
      body: () => {
        const changes = new Array(ROWS_PER_PUSH);
        for (let k = 0; k < ROWS_PER_PUSH; k++) {
          changes[k] = {
            table: "tasks",
            id: uuidv7(),
            version: clock.now(),
            deleted: false,
            data: taskData(next++),
          };
        }
        return JSON.stringify({
          protocol: PROTOCOL_VERSION,
          nodeId: "bench-load",
          schema: schema.hash,
          changes,
        });
      },
      check: (body) => count(body, `"status":"applied"`) === ROWS_PER_PUSH,
    };
    const sequence = async () => (await server.ask<{ sequence: number }>("sequence")).sequence;

    progress(`  push, ${WARMUP_SECONDS} s warm-up …`);
    await load(server.ready.url, push, WARMUP_SECONDS);
    const before = await sequence();
    progress(`  push, ${LOAD_SECONDS} s …`);
    const pushRun = await load(server.ready.url, push, LOAD_SECONDS);
    const written = (await sequence()) - before;
    const answered = pushRun.result["2xx"] * ROWS_PER_PUSH;
    // Requests still in flight when the warm-up or the run ends are applied but
    // not counted: up to one per connection each time.
    const uncounted = 2 * CONNECTIONS * ROWS_PER_PUSH;
    if (pushRun.bad > 0 || written < answered || written > answered + uncounted) {
      throw new Error(
        `Push load: ${pushRun.bad} responses without ${ROWS_PER_PUSH} "applied" verdicts; ` +
          `the server sequence grew by ${written} for ${answered} acknowledged rows`,
      );
    }

    const cursor = String(await sequence());
    const body = JSON.stringify({
      protocol: PROTOCOL_VERSION,
      schema: schema.hash,
      cursors: { tasks: cursor },
    });
    const pull: LoadRequest = {
      path: "/pull",
      body: () => body,
      check: (text) => text.includes(`"rows":[]`) && text.includes(`"hasMore":false`),
    };
    progress(`  pull with nothing new (cursor ${cursor}), ${WARMUP_SECONDS} s warm-up …`);
    await load(server.ready.url, pull, WARMUP_SECONDS);
    progress(`  pull with nothing new, ${LOAD_SECONDS} s …`);
    const pullRun = await load(server.ready.url, pull, LOAD_SECONDS);
    if (pullRun.bad > 0) {
      throw new Error(`Pull load: ${pullRun.bad} responses were not empty pages`);
    }
    return [
      loadRow(
        `Server: \`POST /push\` of ${ROWS_PER_PUSH} new rows, ${CONNECTIONS} connections, ` +
          `${LOAD_SECONDS} s`,
        pushRun,
        ROWS_PER_PUSH,
      ),
      loadRow(
        `Server: \`POST /pull\` with nothing new, ${CONNECTIONS} connections, ${LOAD_SECONDS} s`,
        pullRun,
        0,
      ),
    ];
  } finally {
    await server.close();
    removeDatabaseFiles(path);
  }
}

function count(text: string, needle: string): number {
  let n = 0;
  for (let at = text.indexOf(needle); at !== -1; at = text.indexOf(needle, at + needle.length)) {
    n += 1;
  }
  return n;
}

// ---------------------------------------------------------------------------
// 1. End to end over loopback HTTP, against one raw libSQL batch

interface E2eSample {
  /** Client A's `syncNow()`. */
  readonly pushMs: number;
  /** Of which the server's `database.applyPush` (inside its requests). */
  readonly serverPushMs: number;
  /** Client A reading its outbox (`getOutboxBatch`), overlapping the pushes. */
  readonly readMs: number;
  /** Client A acknowledging pushed changes (`completeBatches`), overlapping the pushes. */
  readonly ackMs: number;
  /** Client A's `onFetch` at the end of its sync: pages of changes of others (none). */
  readonly echoMs: number;
  readonly pushes: number;
  readonly echoPages: number;
  /** Client B's `syncNow()`. */
  readonly pullMs: number;
  /** Of which in B's `applyServerChanges`. */
  readonly applyMs: number;
  /** Of which the server's `database.pullJson` (overlapping B's merges). */
  readonly serverPullMs: number;
  readonly pullPages: number;
  /** CPU time (user + system) of this process (both clients) during push and pull. */
  readonly clientCpuMs: number;
  /** CPU time of the server process during push and pull. */
  readonly serverCpuMs: number;
}

let databases = 0;

const CHECKSUM = `SELECT count(*) AS n, sum(done) AS done, sum(length(title)) AS title, ` +
  `sum(length(notes)) AS notes, sum(priority) AS priority, sum(is_deleted) AS deleted FROM tasks`;

// A manager over HTTP (the library's defaults but batch sizes) whose database
// calls and transport time themselves.
function timedManager(database: TasksDatabase, url: string) {
  const db = timeMethods(database, [
    "getOutboxBatch",
    "completeBatches",
    "applyServerChanges",
  ]);
  const http = timeMethods(createHttpSync({ url, pullLimit: PULL_LIMIT, timeout: 120_000 }), [
    "onSend",
    "onFetch",
  ]);
  const manager = new ServerSyncManager({
    database: db.proxy,
    batchSize: BATCH_SIZE,
    onSend: http.proxy.onSend,
    onFetch: http.proxy.onFetch,
    sendConcurrency: http.proxy.sendConcurrency, // what ...createHttpSync(…) brings
  });
  return { manager, times: { ...db.times, ...http.times } };
}

function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

// One run on fresh databases: the server child starts a new server on a new
// file, A and B are new `file:` databases in this process.
async function e2eOnce(
  server: ServerChild,
  ids: readonly string[],
  inputs: readonly Record<string, unknown>[],
): Promise<E2eSample> {
  const n = databases++;
  const paths = ["server", "a", "b"].map((name) => join(dir.path, `e2e-${n}-${name}.db`));
  const { url } = await server.ask<ServerReady>(`open ${paths[0]}`);
  const a = await openTasksDatabase(`file:${paths[1]}`, "bench-client-a");
  const b = await openTasksDatabase(`file:${paths[2]}`, "bench-client-b");
  try {
    await a.insertMany("tasks", inputs as never);

    const sender = timedManager(a, url);
    const receiver = timedManager(b, url);
    const cpuStart = cpuMs();
    const before = await server.ask<ServerTimes>("times");
    let start = performance.now();
    await sender.manager.syncNow();
    const pushMs = performance.now() - start;
    const pushed = await server.ask<ServerTimes>("times");
    start = performance.now();
    await receiver.manager.syncNow();
    const pullMs = performance.now() - start;
    const after = await server.ask<ServerTimes>("times");
    const clientCpuMs = cpuMs() - cpuStart;

    // Correctness: B holds every row as A wrote it, A's outbox is empty, nothing was refused.
    const [sumA] = await a.query(CHECKSUM);
    const [sumB] = await b.query(CHECKSUM);
    const { sequence } = await server.ask<{ sequence: number }>("sequence");
    const pending = await a.countDirtyRows();
    const rejected = (await a.getRejectedRows()).length;
    const failures: string[] = [];
    if (Number(sumB?.n) !== ids.length) failures.push(`B holds ${sumB?.n} rows`);
    if (JSON.stringify(sumA) !== JSON.stringify(sumB)) {
      failures.push(`A and B differ: ${JSON.stringify(sumA)} vs ${JSON.stringify(sumB)}`);
    }
    if (sequence !== ids.length) failures.push(`the server accepted ${sequence} changes`);
    if (pending !== 0) failures.push(`A's outbox still holds ${pending} changes`);
    if (rejected !== 0) failures.push(`A has ${rejected} rejected changes`);
    const first = await b.get("tasks", ids[0]!);
    if (first?.title !== inputs[0]!.title) failures.push(`B's first row is ${first?.title}`);
    if (failures.length > 0) {
      throw new Error(`End to end with ${ids.length} rows failed: ${failures.join("; ")}`);
    }

    const sent = sender.times;
    return {
      pushMs,
      serverPushMs: pushed.pushMs - before.pushMs,
      readMs: sent.getOutboxBatch.ms,
      ackMs: sent.completeBatches.ms,
      echoMs: sent.onFetch.ms,
      pushes: sent.onSend.calls,
      echoPages: sent.onFetch.calls,
      pullMs,
      applyMs: receiver.times.applyServerChanges.ms,
      serverPullMs: after.pullMs - pushed.pullMs,
      pullPages: receiver.times.onFetch.calls,
      clientCpuMs,
      serverCpuMs: after.cpuMs - before.cpuMs,
    };
  } finally {
    await a.close();
    await b.close();
    for (const path of paths) removeDatabaseFiles(path);
  }
}

async function rawOnce(ids: readonly string[], versions: readonly string[]): Promise<number> {
  const path = join(dir.path, `e2e-raw-${databases++}.db`);
  const client = await openRawDatabase(`file:${path}`);
  try {
    const start = performance.now();
    await client.batch(rawInsertStatements(ids, versions), "write");
    return performance.now() - start;
  } finally {
    client.close();
    removeDatabaseFiles(path);
  }
}

function workload(rows: number) {
  const ids = makeIds(rows);
  const clock = createHlc({ nodeId: "bench-raw" });
  const versions = ids.map(() => clock.now());
  const inputs = ids.map((id, i) => ({ system_id: id, ...taskData(i) }));
  return { ids, versions, inputs };
}

async function benchEndToEnd(): Promise<Row[]> {
  progress(`end to end: starting the server process …`);
  const first = join(dir.path, "e2e-first.db");
  const server = await startServerChild(first, 0);
  try {
    progress(`end to end: warm-up with ${formatNumber(WARMUP_ROWS)} rows …`);
    const warm = workload(WARMUP_ROWS);
    await e2eOnce(server, warm.ids, warm.inputs);
    await rawOnce(warm.ids, warm.versions);

    const { ids, versions, inputs } = workload(E2E_ROWS);
    const samples: E2eSample[] = [];
    const raws: number[] = [];
    for (let i = 0; i < E2E_ITERATIONS; i++) {
      progress(`end to end: ${formatNumber(E2E_ROWS)} rows, run ${i + 1} of ${E2E_ITERATIONS} …`);
      if (i % 2 === 0) {
        samples.push(await e2eOnce(server, ids, inputs));
        raws.push(await rawOnce(ids, versions));
      } else {
        raws.push(await rawOnce(ids, versions));
        samples.push(await e2eOnce(server, ids, inputs));
      }
    }
    return endToEndRows(samples, raws);
  } finally {
    await server.close();
    removeDatabaseFiles(first);
  }
}

function endToEndRows(samples: readonly E2eSample[], raws: readonly number[]): Row[] {
  const raw = median(raws);
  const med = (pick: (s: E2eSample) => number) => median(samples.map(pick));
  const push = med((s) => s.pushMs);
  const pull = med((s) => s.pullMs);
  const total = med((s) => s.pushMs + s.pullMs);
  const { pushes, echoPages, pullPages } = samples[0]!;
  const rawCell = `${ms(raw)} (${rate(E2E_ROWS, raw)} rows/s)`;
  const ratio = (value: number) => formatNumber(value / raw, 2);
  const endToEndRate = E2E_ROWS / (total / 1000);
  return [
    [
      `Push: client A \`syncNow()\` of ${formatNumber(E2E_ROWS)} new rows (batchSize ` +
      `${formatNumber(BATCH_SIZE)})`,
      `${ms(push)} (${rate(E2E_ROWS, push)} rows/s): ${pushes} pushes, 2 in flight; server ` +
      `\`database.applyPush\` ${ms(med((s) => s.serverPushMs))}; meanwhile A's outbox reads ` +
      `${ms(med((s) => s.readMs))} and acknowledgements ${ms(med((s) => s.ackMs))}; then ` +
      `${echoPages} pull pages of others' changes ${ms(med((s) => s.echoMs))}`,
      rawCell,
      ratio(push),
      "—",
      "—",
    ],
    [
      `Pull: fresh client B \`syncNow()\` of ${formatNumber(E2E_ROWS)} rows (pullLimit ` +
      `${formatNumber(PULL_LIMIT)})`,
      `${ms(pull)} (${rate(E2E_ROWS, pull)} rows/s): ${pullPages} pages, each asked for while ` +
      `the one before is merged; server \`database.pull\` ${ms(med((s) => s.serverPullMs))}, ` +
      `B's \`applyServerChanges\` ${ms(med((s) => s.applyMs))}`,
      rawCell,
      ratio(pull),
      "—",
      "—",
    ],
    [
      `End to end: ${formatNumber(E2E_ROWS)} rows from A's database to B's (push + pull)`,
      `${ms(total)} (${formatNumber(endToEndRate)} rows/s); CPU: clients ` +
      `${ms(med((s) => s.clientCpuMs))}, server ${ms(med((s) => s.serverCpuMs))}`,
      rawCell,
      ratio(total),
      `≥ ${formatNumber(E2E_TARGET_ROWS_PER_S)} rows/s`,
      endToEndRate >= E2E_TARGET_ROWS_PER_S ? "yes" : "**no**",
    ],
  ];
}

// ---------------------------------------------------------------------------

function commandLine(): string {
  switch (runtime.name) {
    case "node":
      return "node --import tsx bench/sync.bench.ts";
    case "deno":
      return "deno run -A bench/sync.bench.ts";
    case "bun":
      return "bun bench/sync.bench.ts";
  }
}

try {
  const started = performance.now();
  // The memory benchmark first: on Linux a child's maxRSS starts at its
  // parent's RSS at fork time, so this process must still be small.
  // SYNC_BENCH_ONLY=e2e|memory|load runs one part (while working on it).
  const only = process.env.SYNC_BENCH_ONLY;
  const memory = only === undefined || only === "memory" ? [await benchInitialPull()] : [];
  // End to end before the load test, whose autocannon garbage would otherwise
  // still weigh on this process's heap.
  const e2e = only === undefined || only === "e2e" ? await benchEndToEnd() : [];
  const loadRows = only === undefined || only === "load" ? await benchServerLoad() : [];
  progress(`done in ${formatNumber((performance.now() - started) / 1000, 1)} s`);

  console.log(`### Sync benchmarks — ${runtime.label}`);
  console.log();
  console.log(
    `\`${commandLine()}\`, ${new Date().toISOString().slice(0, 10)}. Rows 1–3: server in a ` +
      `child process (as deployed; fresh database each run), clients in this one, over ` +
      `loopback HTTP, \`file:\` databases, median of ` +
      `${E2E_ITERATIONS} runs after a ${formatNumber(WARMUP_ROWS)}-row warm-up; raw = ` +
      `\`@libsql/client\` \`client.batch(stmts, "write")\` of the same rows, one INSERT per ` +
      `row. Row 4: client in a child process, server in another. Rows 5–6: server in a child ` +
      `process, autocannon in this one (same runtime), after a ${WARMUP_SECONDS} s warm-up.`,
  );
  console.log();
  console.log(markdownTable(
    ["Benchmark", "Ours", "Raw libSQL", "Ratio (ours/raw)", "Target", "Met"],
    [...e2e, ...memory, ...loadRows],
  ));
} finally {
  dir.cleanup();
}
