/**
 * What live queries cost the writer: 1,000 local writes, one at a time, on a
 * 10,000-row table, with no watcher and with 100 watchers on it (plus 20 on
 * another table, which must cost nothing), on a `file:` database.
 *
 * ```sh
 * node --import tsx bench/watch_cost.ts
 * node_modules/.bin/deno run -A bench/watch_cost.ts
 * node_modules/.bin/bun bench/watch_cost.ts
 * ```
 *
 * The watchers are what an app's screens hold, 100 different queries: 60 list pages
 * (`SELECT … WHERE done = ? ORDER BY system_id LIMIT 20 OFFSET ?`), 30
 * counts (`SELECT count(*) … WHERE done = ? AND priority >= ?`) and 10 joins of a page with
 * another table (`tasks LEFT JOIN other`), all through `db.watch`. Each write is
 * `db.update("tasks", id, { done })` of a random row, awaited, each from a
 * task of its own (`setImmediate` between writes, on every side), as writes
 * made by UI events arrive. The time runs
 * until the last write committed and every watcher has run after it, so the
 * re-runs are paid for, not left behind. Re-runs per write are the listener
 * calls after the first, over the writes: with coalescing, 100 watchers
 * cost at most 100 re-runs a write, fewer when writes come faster than
 * re-runs.
 *
 * The raw libSQL baseline, in the same run: the same 1,000 single-row
 * `UPDATE`s through `@libsql/client` on a table of the same 10,000 rows.
 *
 * @module
 */

import { join } from "node:path";
import { setImmediate } from "node:timers";
import { createClient } from "@libsql/client";
import { defineSchema, openDatabase, table, text } from "../mod.ts";
import { libsqlAdapter } from "../src/libsql.ts";
import { schema, taskData } from "./fixtures.ts";
import { formatNumber, markdownTable, median, progress, runtimeInfo, tempDir } from "./lib.ts";

const ROWS = 10_000;
const WRITES = 1_000;
const WATCHERS = 100;
const ROUNDS = 3;

const benchSchema = defineSchema({
  ...schema.tables,
  other: table({ label: text() }, { withSystemColumns: true }),
});

// Each write comes from a task of its own, as writes made by UI events or
// network handlers do: timers (the watchers' throttled re-runs) get their
// turn between writes, as they would in an app.
const nextTask = () => new Promise<void>((resolve) => setImmediate(resolve));

// A random row index, deterministic per run.
function randomIndex(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2_147_483_648;
    return state % ROWS;
  };
}

async function run(watchers: number): Promise<{ ms: number; reRuns: number }> {
  const dir = tempDir();
  const db = await openDatabase({
    adapter: libsqlAdapter(createClient({ url: `file:${join(dir.path, "watch.db")}` })),
    schema: benchSchema,
  });
  try {
    const rows = await db.insertMany(
      "tasks",
      Array.from({ length: ROWS }, (_, i) => taskData(i)),
    );
    const ids = rows.map((row) => row.system_id);
    let calls = 0;
    let lastCall = 0;
    const stops: (() => void)[] = [];
    const ready: Promise<void>[] = [];
    const watch = (sql: string, args: (string | number)[]) => {
      let first: () => void = () => {};
      ready.push(new Promise<void>((resolve) => (first = resolve)));
      let seen = false;
      stops.push(db.watch(sql, args, () => {
        if (seen) {
          calls++;
          lastCall = performance.now();
        } else {
          seen = true;
          first();
        }
      }));
    };
    for (let i = 0; i < watchers; i++) {
      if (i % 10 < 6) {
        watch(
          "SELECT system_id, title, done FROM tasks WHERE done = ? ORDER BY system_id LIMIT 20 OFFSET ?",
          [i % 2, i * 20],
        );
      } else if (i % 10 < 9) {
        watch("SELECT count(*) AS n FROM tasks WHERE done = ? AND priority >= ?", [i % 2, i / 10]);
      } else {
        watch(
          "SELECT t.title, o.label FROM tasks t LEFT JOIN other o ON o.system_id = t.system_id WHERE t.done = ? ORDER BY t.system_id LIMIT 20 OFFSET ?",
          [i % 2, i],
        );
      }
    }
    // Watchers of another table: changes to tasks must not run them.
    if (watchers > 0) {
      for (let i = 0; i < 20; i++) watch("SELECT count(*) AS n FROM other", []);
    }
    await Promise.all(ready);

    const next = randomIndex(7);
    const started = performance.now();
    for (let i = 0; i < WRITES; i++) {
      await db.update("tasks", ids[next()]!, { done: i % 2 });
      await nextTask();
    }
    const written = performance.now();
    // Until the watchers are quiet: every re-run after the last write has run.
    for (let quiet = 0; quiet < 3;) {
      const before = calls;
      await new Promise((resolve) => setTimeout(resolve, 20));
      quiet = calls === before ? quiet + 1 : 0;
    }
    for (const stop of stops) stop();
    return { ms: Math.max(written, lastCall) - started, reRuns: calls / WRITES };
  } finally {
    await db.close();
    dir.cleanup();
  }
}

async function raw(): Promise<number> {
  const dir = tempDir();
  const client = createClient({ url: `file:${join(dir.path, "raw.db")}` });
  try {
    await client.execute(
      "CREATE TABLE tasks (system_id TEXT PRIMARY KEY, title TEXT, done INTEGER, notes TEXT, priority REAL)",
    );
    await client.execute({
      sql:
        "INSERT INTO tasks SELECT 'r' || value, 'Task ' || value, 0, NULL, NULL FROM json_each(?)",
      args: [JSON.stringify(Array.from({ length: ROWS }, (_, i) => i))],
    });
    const next = randomIndex(7);
    const started = performance.now();
    for (let i = 0; i < WRITES; i++) {
      await client.execute({
        sql: "UPDATE tasks SET done = ? WHERE system_id = ?",
        args: [i % 2, `r${next()}`],
      });
      await nextTask();
    }
    return performance.now() - started;
  } finally {
    client.close();
    dir.cleanup();
  }
}

const runtime = runtimeInfo();
const times = { none: [] as number[], watched: [] as number[], raw: [] as number[] };
const reRuns: number[] = [];
for (let round = 0; round < ROUNDS; round++) {
  progress(`${runtime.name}: round ${round + 1} of ${ROUNDS}`);
  times.raw.push(await raw());
  times.none.push((await run(0)).ms);
  const watched = await run(WATCHERS);
  times.watched.push(watched.ms);
  reRuns.push(watched.reRuns);
}
const rate = (ms: number) => `${formatNumber((WRITES * 1000) / ms)} writes/s`;
const none = median(times.none);
const watched = median(times.watched);
const rawMs = median(times.raw);
console.log(
  `\nWatch cost, ${runtime.label}: ${WRITES} writes on a ${ROWS}-row table, median of ${ROUNDS}\n`,
);
console.log(markdownTable(
  ["Writer", "Throughput", "Re-runs per write", "vs no watchers", "vs raw libSQL"],
  [
    ["raw libSQL UPDATE", rate(rawMs), "—", "—", "×1.00"],
    ["no watchers", rate(none), "0", "×1.00", `×${formatNumber(rawMs / none, 2)}`],
    [
      `${WATCHERS} watchers (+20 on another table)`,
      rate(watched),
      formatNumber(median(reRuns), 1),
      `×${formatNumber(none / watched, 2)}`,
      `×${formatNumber(rawMs / watched, 2)}`,
    ],
  ],
));
