/**
 * The server's database time over a slow link: a push of 500 new rows, a
 * pull page of 500 rows and a cold start, against a real sqld behind a
 * proxy that holds every request back `--delay` ms (default 20, a database
 * in another region), for the code of this checkout ("after") and of an
 * older commit ("before", default `bca089d`) in the same run. Each figure is
 * the median of `--runs` (default 5), with the requests that reached sqld.
 *
 * ```sh
 * node --import tsx bench/round_trips.ts
 * node_modules/.bin/deno run -A bench/round_trips.ts --delay 20 --runs 5
 * node_modules/.bin/bun bench/round_trips.ts
 * ```
 *
 * The raw libSQL baseline, in the same run and through the same proxy: one
 * `@libsql/client` batch inserting the same 500 rows (one request), and one
 * query reading 500 rows.
 *
 * @module
 */

import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import process from "node:process";
import { createClient } from "@libsql/client";
import { formatHlc } from "../src/hlc.ts";
import { startCountingProxy } from "../tests/counting_proxy.ts";
import { startSqld } from "../tests/sqld.ts";
import { taskData } from "./fixtures.ts";
import { checkout, formatNumber, markdownTable, median, runtimeInfo } from "./lib.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    delay: { type: "string", default: "20" },
    runs: { type: "string", default: "5" },
    rows: { type: "string", default: "500" },
    before: { type: "string", default: "bca089d" },
  },
});
const delayMs = Number(values.delay);
const runs = Number(values.runs);
const rows = Number(values.rows);
const ROOT = new URL("..", import.meta.url).pathname;

/** One operation's median time, the part of it spent waiting on the database, and its requests. */
interface Figure {
  readonly ms: number;
  readonly databaseMs?: number;
  readonly requests: number;
}

// Time spent inside the adapter's calls (an interactive transaction counts
// whole, with the JavaScript between its statements).
interface Stopwatch {
  ms: number;
}

// `adapter`, adding the time of each call to `watch`.
// deno-lint-ignore no-explicit-any
function timed(adapter: any, watch: Stopwatch): any {
  const time = async <T>(op: () => Promise<T>): Promise<T> => {
    const start = performance.now();
    try {
      return await op();
    } finally {
      watch.ms += performance.now() - start;
    }
  };
  return {
    // deno-lint-ignore no-explicit-any
    execute: (statement: any) => time(() => adapter.execute(statement)),
    // deno-lint-ignore no-explicit-any
    batch: (statements: any, mode: any) => time(() => adapter.batch(statements, mode)),
    // deno-lint-ignore no-explicit-any
    transaction: (fn: any) => time(() => adapter.transaction(fn)),
    close: () => adapter.close(),
  };
}

let serial = 0;
function changes(count: number) {
  return Array.from({ length: count }, () => {
    const n = serial++;
    return {
      table: "tasks",
      id: `row-${n}`,
      version: formatHlc({ ms: Date.now(), counter: n % 1e9, nodeId: "bench" }),
      deleted: false,
      data: taskData(n),
    };
  });
}

// Times `op` `runs` times: the medians of its time and of the database's
// part of it (`watch`), and the requests the last run made.
async function measure(
  proxy: { requests(): number },
  op: () => Promise<unknown>,
  watch?: Stopwatch,
): Promise<Figure> {
  const times: number[] = [];
  const database: number[] = [];
  let requests = 0;
  for (let i = 0; i < runs; i++) {
    const before = proxy.requests();
    if (watch !== undefined) watch.ms = 0;
    const start = performance.now();
    await op();
    times.push(performance.now() - start);
    if (watch !== undefined) database.push(watch.ms);
    requests = proxy.requests() - before;
  }
  return {
    ms: median(times),
    databaseMs: watch === undefined ? undefined : median(database),
    requests,
  };
}

// The figures of the code under `root`.
async function figuresOf(root: string): Promise<Record<string, Figure>> {
  const load = (path: string) => import(pathToFileURL(`${root}/${path}`).href);
  const { openServerDatabase } = await load("server/database.ts");
  const { libsqlAdapter } = await load("src/libsql.ts");
  const { schema } = await load("bench/fixtures.ts");
  const watch: Stopwatch = { ms: 0 };
  // A new database each run: its own sqld.
  const coldNew = await measure({ requests: () => 0 }, async () => {
    await using sqld = await startSqld();
    await using proxy = await startCountingProxy(sqld.url, { delayMs });
    const adapter = timed(libsqlAdapter(createClient({ url: proxy.url })), watch);
    await (await openServerDatabase({ adapter, schema })).close();
  }, watch);
  await using sqld = await startSqld();
  await using proxy = await startCountingProxy(sqld.url, { delayMs });
  const open = () =>
    openServerDatabase({
      adapter: timed(libsqlAdapter(createClient({ url: proxy.url })), watch),
      schema,
    });
  await (await open()).close();
  const database = await open();
  try {
    const coldMigrated = await measure(proxy, async () => {
      await (await open()).close();
    }, watch);
    const push = await measure(proxy, async () => {
      const { results } = await database.applyPush(changes(rows));
      if (results.some((r: { status: string }) => r.status !== "applied")) {
        throw new Error("a change was not applied");
      }
    }, watch);
    const pull = await measure(proxy, async () => {
      const page = await database.pull({ tasks: null }, rows);
      if (page.tasks.rows.length !== rows) throw new Error("a short page");
    }, watch);
    return { push, pull, coldMigrated, coldNew };
  } finally {
    await database.close();
  }
}

// Raw libSQL through the same kind of proxy: one batch of `rows` inserts, one read of them.
async function rawFigures(): Promise<Record<string, Figure>> {
  await using sqld = await startSqld();
  await using proxy = await startCountingProxy(sqld.url, { delayMs });
  const client = createClient({ url: proxy.url });
  try {
    await client.execute(
      "CREATE TABLE tasks (system_id TEXT PRIMARY KEY, system_version TEXT, title TEXT, done INTEGER, notes TEXT, priority REAL)",
    );
    const push = await measure(proxy, async () => {
      const list = changes(rows).map((c) => [c.id, c.version, ...Object.values(c.data)]);
      await client.batch([{
        sql: "INSERT INTO tasks SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, " +
          "value ->> 4, value ->> 5 FROM json_each(?)",
        args: [JSON.stringify(list)],
      }], "write");
    });
    const pull = await measure(proxy, async () => {
      await client.execute({ sql: "SELECT * FROM tasks ORDER BY rowid LIMIT ?", args: [rows] });
    });
    return { push, pull };
  } finally {
    client.close();
  }
}

const tree = checkout(values.before!);
try {
  const before = await figuresOf(tree.path);
  const after = await figuresOf(ROOT);
  const raw = await rawFigures();
  const cell = (f: Figure | undefined) =>
    f === undefined
      ? "—"
      : `${formatNumber(f.ms, 1)} ms${
        f.databaseMs === undefined ? "" : `, database ${formatNumber(f.databaseMs, 1)} ms`
      } (${f.requests} req.)`;
  const ratio = (f: Figure, r: Figure | undefined) =>
    r === undefined ? "—" : formatNumber(f.ms / r.ms, 2);
  const rowsOf = [
    [`push of ${rows} new rows`, "push"],
    [`pull page of ${rows} rows`, "pull"],
    ["cold start, migrated database", "coldMigrated"],
    ["cold start, new database (requests not counted)", "coldNew"],
  ] as const;
  console.log(
    `\n${runtimeInfo().label}: ${delayMs} ms per database request (sqld behind a delaying proxy), median of ${runs}, before = ${values.before}\n`,
  );
  console.log(markdownTable(
    ["operation", "before", "after", "raw libSQL", "after / raw"],
    rowsOf.map(([label, key]) => [
      label,
      cell(before[key]),
      cell(after[key]),
      cell(raw[key]),
      ratio(after[key]!, raw[key]),
    ]),
  ));
  console.log(JSON.stringify({ delayMs, runs, rows, before, after, raw }));
} finally {
  tree.remove();
}
