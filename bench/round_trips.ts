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

/** One operation's median time and the requests it made. */
interface Figure {
  readonly ms: number;
  readonly requests: number;
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

// Times `op` `runs` times (after `setup` each time, untimed): the median,
// and the requests the last run made.
async function measure(
  proxy: { requests(): number },
  op: () => Promise<unknown>,
): Promise<Figure> {
  const times: number[] = [];
  let requests = 0;
  for (let i = 0; i < runs; i++) {
    const before = proxy.requests();
    const start = performance.now();
    await op();
    times.push(performance.now() - start);
    requests = proxy.requests() - before;
  }
  return { ms: median(times), requests };
}

// The figures of the code under `root`.
async function figuresOf(root: string): Promise<Record<string, Figure>> {
  const load = (path: string) => import(pathToFileURL(`${root}/${path}`).href);
  const { openServerDatabase } = await load("server/database.ts");
  const { libsqlAdapter } = await load("src/libsql.ts");
  const { schema } = await load("bench/fixtures.ts");
  await using sqld = await startSqld();
  await using proxy = await startCountingProxy(sqld.url, { delayMs });
  const open = () =>
    openServerDatabase({ adapter: libsqlAdapter(createClient({ url: proxy.url })), schema });
  const coldNew = await measure(proxy, async () => {
    await (await open()).close();
  });
  const database = await open();
  try {
    const coldMigrated = await measure(proxy, async () => {
      await (await open()).close();
    });
    const push = await measure(proxy, async () => {
      const { results } = await database.applyPush(changes(rows));
      if (results.some((r: { status: string }) => r.status !== "applied")) {
        throw new Error("a change was not applied");
      }
    });
    const pull = await measure(proxy, async () => {
      const page = await database.pull({ tasks: null }, rows);
      if (page.tasks.rows.length !== rows) throw new Error("a short page");
    });
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
    f === undefined ? "—" : `${formatNumber(f.ms, 1)} ms (${f.requests} req.)`;
  const ratio = (f: Figure, r: Figure | undefined) =>
    r === undefined ? "—" : formatNumber(f.ms / r.ms, 2);
  const rowsOf = [
    [`push of ${rows} new rows`, "push"],
    [`pull page of ${rows} rows`, "pull"],
    ["cold start, migrated database", "coldMigrated"],
    ["cold start, new database", "coldNew"],
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
