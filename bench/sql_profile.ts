/**
 * Where the time of the core benchmarks goes: runs `insertMany` and
 * `applyServerChanges` of 10,000 rows once each on a fresh `file:` database
 * through a tracing adapter, and prints, per statement shape the library
 * generated, how many ran and how long they took, next to the time spent in
 * JavaScript (validation, planning, building statements, converting results).
 *
 * ```sh
 * node --import tsx bench/sql_profile.ts
 * ```
 *
 * The tracing adapter runs each statement of a batch as its own `execute`
 * inside one transaction, which is what a libSQL batch does, so statements can
 * be timed one by one; the total differs from the benchmark by the extra
 * awaits only.
 *
 * A last table runs the same LWW UPSERT of 10,000 rows with raw
 * `@libsql/client` in three statement shapes — one statement per row (the
 * benchmark's baseline), multi-row `VALUES` of 256 rows (the library's earlier
 * shape), and `INSERT … SELECT … FROM json_each(?)` of 256 rows (the library's
 * shape now, which binds 1,000 rows a statement) — with the RSS each run
 * leaves behind (`@libsql/client` prepares every statement anew, and native
 * memory grows with every statement executed).
 *
 * @module
 */

import { createClient, type InStatement } from "@libsql/client";
import { join } from "node:path";
import process from "node:process";
import {
  createHlc,
  openDatabase,
  type ServerRow,
  type SqlAdapter,
  type SqlExecutor,
  type SqlResult,
  type SqlStatement,
} from "../mod.ts";
import { libsqlAdapter } from "../src/libsql.ts";
import {
  makeIds,
  openRawDatabase,
  RAW_UPSERT,
  rawRowArgs,
  rawUpsertStatements,
  schema,
  serverRows,
  taskData,
  type TasksDatabase,
} from "./fixtures.ts";
import { formatNumber, markdownTable, median, runtimeInfo, tempDir } from "./lib.ts";

const ROWS = 10_000;
const REPEAT = 5;

interface Sample {
  readonly shape: string;
  readonly args: number;
  readonly ms: number;
}

/** The statement with its VALUES list and IN lists collapsed, so statements group by shape. */
function shapeOf(sql: string): string {
  const collapsed = sql
    .replace(/VALUES (\((\?, )*\?\)(, )?)+/, "VALUES (?, …), …")
    .replace(/\((("?\w+"?), )+("?\w+"?)\)/g, "(…)")
    .replace(/\s+/g, " ");
  return collapsed.length > 110 ? `${collapsed.slice(0, 107)}…` : collapsed;
}

// Wraps an adapter: every statement runs (and is timed) on its own.
function tracing(inner: SqlAdapter, samples: Sample[]): SqlAdapter {
  const timed = async (
    executor: SqlExecutor,
    statement: SqlStatement,
  ): Promise<SqlResult> => {
    const start = performance.now();
    const result = await executor.execute(statement);
    samples.push({
      shape: shapeOf(statement.sql),
      args: statement.args?.length ?? 0,
      ms: performance.now() - start,
    });
    return result;
  };
  const each = async (executor: SqlExecutor, statements: readonly SqlStatement[]) => {
    const results: SqlResult[] = [];
    for (const statement of statements) results.push(await timed(executor, statement));
    return results;
  };
  const wrap = (tx: SqlExecutor): SqlExecutor => ({
    execute: (statement) => timed(tx, statement),
    batch: (statements) => each(tx, statements),
  });
  // BEGIN and COMMIT run inside the client: their time is the transaction's minus its body's.
  const transaction = async <T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> => {
    let body = 0;
    const start = performance.now();
    const result = await inner.transaction(async (tx) => {
      const bodyStart = performance.now();
      try {
        return await fn(tx);
      } finally {
        body = performance.now() - bodyStart;
      }
    });
    samples.push({
      shape: "BEGIN IMMEDIATE … COMMIT",
      args: 0,
      ms: performance.now() - start - body,
    });
    return result;
  };
  return {
    execute: (statement) => timed(inner, statement),
    batch: (statements) => transaction((tx) => each(tx, statements)),
    transaction: (fn) => transaction((tx) => fn(wrap(tx))),
    close: () => inner.close(),
  };
}

interface Profile {
  readonly totalMs: number;
  readonly samples: readonly Sample[];
}

async function profile(
  name: string,
  body: (db: TasksDatabase) => Promise<unknown>,
  preload?: (db: TasksDatabase) => Promise<unknown>,
): Promise<Profile[]> {
  const profiles: Profile[] = [];
  const dir = tempDir();
  try {
    for (let i = 0; i < REPEAT; i++) {
      const samples: Sample[] = [];
      const adapter = tracing(
        libsqlAdapter(createClient({ url: `file:${join(dir.path, `${name}-${i}.db`)}` })),
        samples,
      );
      const db = await openDatabase({ adapter, schema, nodeId: "bench-client" });
      if (preload !== undefined) await preload(db);
      samples.length = 0;
      const start = performance.now();
      await body(db);
      profiles.push({ totalMs: performance.now() - start, samples });
      await db.close();
    }
  } finally {
    dir.cleanup();
  }
  return profiles;
}

function report(title: string, profiles: readonly Profile[]): void {
  const byShape = new Map<string, { count: number; args: number; ms: number[] }>();
  for (const [run, { samples }] of profiles.entries()) {
    const perRun = new Map<string, { count: number; args: number; ms: number }>();
    for (const sample of samples) {
      const entry = perRun.get(sample.shape) ?? { count: 0, args: 0, ms: 0 };
      entry.count++;
      entry.args += sample.args;
      entry.ms += sample.ms;
      perRun.set(sample.shape, entry);
    }
    for (const [shape, entry] of perRun) {
      const total = byShape.get(shape) ?? { count: entry.count, args: entry.args, ms: [] };
      total.ms[run] = entry.ms;
      byShape.set(shape, total);
    }
  }
  const total = median(profiles.map((p) => p.totalMs));
  const sql = median(profiles.map((p) => p.samples.reduce((sum, s) => sum + s.ms, 0)));
  const rows = [...byShape].map(([shape, entry]) => [
    `\`${shape}\``,
    formatNumber(entry.count),
    formatNumber(entry.args),
    `${formatNumber(median(entry.ms.filter((ms) => ms !== undefined)), 1)} ms`,
  ]);
  rows.push(["**all SQL**", "", "", `${formatNumber(sql, 1)} ms`]);
  rows.push(["**JavaScript** (total − SQL)", "", "", `${formatNumber(total - sql, 1)} ms`]);
  rows.push(["**total**", "", "", `${formatNumber(total, 1)} ms`]);
  console.log(`#### ${title}\n`);
  console.log(markdownTable(["Statement", "Count", "Args", "Median time"], rows));
  console.log();
}

const CHUNK = 256;
const SINGLE_ROW_VALUES = "VALUES (?, ?, ?, ?, ?, ?, ?, ?)";

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

// The raw UPSERT as multi-row VALUES lists, like the library builds it.
function valuesStatements(rows: readonly ServerRow[]): InStatement[] {
  return chunks(rows, CHUNK).map((chunk) => ({
    sql: RAW_UPSERT.replace(
      SINGLE_ROW_VALUES,
      `VALUES ${`(?, ?, ?, ?, ?, ?, ?, ?), `.repeat(chunk.length).slice(0, -2)}`,
    ),
    args: chunk.flatMap(rawRowArgs),
  }));
}

// The raw UPSERT reading its rows from one JSON argument: the SQL text is the same for any chunk.
function jsonEachStatements(rows: readonly ServerRow[]): InStatement[] {
  const select = `SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, ` +
    `value ->> 5, value ->> 6, value ->> 7 FROM json_each(?) WHERE true`;
  const sql = RAW_UPSERT.replace(SINGLE_ROW_VALUES, select);
  return chunks(rows, CHUNK).map((chunk) => ({
    sql,
    args: [JSON.stringify(chunk.map(rawRowArgs))],
  }));
}

async function statementShapes(rows: readonly ServerRow[]): Promise<void> {
  const shapes: [string, (rows: readonly ServerRow[]) => InStatement[]][] = [
    ["one `INSERT … VALUES (…) ON CONFLICT …` per row (the baseline)", rawUpsertStatements],
    [`multi-row \`VALUES\`, ${CHUNK} rows a statement`, valuesStatements],
    [
      `\`INSERT … SELECT … FROM json_each(?)\`, ${CHUNK} rows a statement (the library's shape)`,
      jsonEachStatements,
    ],
  ];
  const table: string[][] = [];
  const dir = tempDir();
  try {
    for (const [name, build] of shapes) {
      const times: number[] = [];
      const growth: number[] = [];
      for (let i = 0; i < REPEAT; i++) {
        const path = join(dir.path, `shape-${table.length}-${i}.db`);
        const client = await openRawDatabase(`file:${path}`);
        const rss = process.memoryUsage().rss;
        const start = performance.now();
        await client.batch(build(rows), "write");
        times.push(performance.now() - start);
        client.close();
        growth.push(process.memoryUsage().rss - rss);
      }
      table.push([
        name,
        formatNumber(build(rows).length),
        `${formatNumber(median(times), 1)} ms`,
        `${formatNumber(median(growth) / 1024 / 1024, 1)} MB`,
      ]);
    }
  } finally {
    dir.cleanup();
  }
  console.log(`#### Raw LWW UPSERT of ${formatNumber(rows.length)} new rows, by statement shape\n`);
  console.log(
    markdownTable(["Statement shape", "Statements", "Median time", "RSS kept per run"], table),
  );
  console.log();
}

const server = createHlc({ nodeId: "server" });
const ids = makeIds(ROWS);
const initial = serverRows(ids, server);
const newer = serverRows(ids, server, 1);
const inserts = makeIds(ROWS).map((id, i) => ({ system_id: id, ...taskData(i) }));

console.log(`### SQL profile — ${runtimeInfo().label}, median of ${REPEAT} runs\n`);
report(
  `insertMany, ${formatNumber(ROWS)} rows`,
  await profile("insert", (db) => db.insertMany("tasks", inserts)),
);
report(
  `applyServerChanges, ${formatNumber(ROWS)} new rows`,
  await profile("apply", (db) => db.applyServerChanges({ tasks: { rows: initial, cursor: 1 } })),
);
report(
  `applyServerChanges, ${formatNumber(ROWS)} newer versions of stored rows`,
  await profile(
    "conflict",
    (db) => db.applyServerChanges({ tasks: { rows: newer, cursor: 2 } }),
    (db) => db.applyServerChanges({ tasks: { rows: initial, cursor: 1 } }),
  ),
);
await statementShapes(initial);
