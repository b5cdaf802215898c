/**
 * The benchmark workload: the `tasks` schema, deterministic rows, and the raw
 * libSQL statements of the baselines. Shared by `core.bench.ts` and
 * `apply_100k.ts`.
 *
 * The raw table is shaped exactly like the table `openDatabase` creates for
 * `tasks` (declared columns, then the four system columns), so the baselines
 * differ from the library only in what the library adds: validation, HLC
 * stamping, the outbox, cursors and the persisted clock.
 *
 * @module
 */

import { type Client, createClient, type InStatement, type InValue } from "@libsql/client";
import {
  type Database,
  defineSchema,
  type HlcClock,
  integer,
  openDatabase,
  real,
  type ServerRow,
  table,
  text,
  uuidv7,
} from "../mod.ts";
import { libsqlAdapter } from "../src/libsql.ts";

/** The benchmark schema: one synced table. */
export const schema = defineSchema({
  tasks: table({
    title: text().notNull(),
    done: integer().notNull().default(0),
    notes: text(),
    priority: real(),
  }, { withSystemColumns: true }),
});

/** The benchmark database type. */
export type TasksDatabase = Database<typeof schema.tables>;

/** The declared columns of one task. */
export type TaskData = {
  title: string;
  done: number;
  notes: string | null;
  priority: number | null;
};

/** The declared values of task `i` (deterministic; some nulls, like real data). */
export function taskData(i: number, revision = 0): TaskData {
  return {
    title: `Task ${i}${revision > 0 ? ` (rev ${revision})` : ""}`,
    done: (i + revision) % 2,
    notes: i % 3 === 0 ? null : `Notes for task ${i}, revision ${revision}`,
    priority: i % 5 === 0 ? null : (i % 100) / 10 + revision,
  };
}

/**
 * `count` fresh UUIDv7 row ids. They go through JSON, as ids received over the
 * wire do: `uuidv7` builds its result by concatenation, and V8 keeps such a
 * string as a rope (about 400 bytes instead of 36) until something flattens it.
 */
export function makeIds(count: number): string[] {
  return Array.from({ length: count }, () => overTheWire(uuidv7()));
}

/**
 * Server rows for `ids`, each stamped with a new version of `clock` (so later
 * calls produce newer versions for the same ids), as a pull response delivers
 * them: parsed from JSON.
 */
export function serverRows(ids: readonly string[], clock: HlcClock, revision = 0): ServerRow[] {
  return ids.map((id, i) =>
    overTheWire({ id, version: clock.now(), deleted: false, data: taskData(i, revision) })
  );
}

// One value through JSON, so its strings are flat, as parsed from a response.
// Item by item: the garbage stays young and is collected at once.
function overTheWire<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

/** The `tasks` table as `openDatabase` creates it. */
export const RAW_CREATE_TABLE = `CREATE TABLE "tasks" (` +
  `"title" TEXT NOT NULL, "done" INTEGER NOT NULL DEFAULT 0, "notes" TEXT, "priority" REAL, ` +
  `"system_id" TEXT PRIMARY KEY NOT NULL, "system_version" TEXT NOT NULL, ` +
  `"system_created_at" TEXT NOT NULL, "is_deleted" INTEGER NOT NULL DEFAULT 0)`;

/** One row, one plain INSERT. */
export const RAW_INSERT = `INSERT INTO "tasks" ` +
  `("title", "done", "notes", "priority", "system_id", "system_version", "system_created_at", ` +
  `"is_deleted") VALUES (?, ?, ?, ?, ?, ?, ?, ?)`;

/** One row, one last-write-wins UPSERT. */
export const RAW_UPSERT = `INSERT INTO "tasks" ` +
  `("system_id", "system_version", "system_created_at", "is_deleted", ` +
  `"title", "done", "notes", "priority") VALUES (?, ?, ?, ?, ?, ?, ?, ?) ` +
  `ON CONFLICT ("system_id") DO UPDATE SET system_version = excluded.system_version, ` +
  `is_deleted = excluded.is_deleted, "title" = excluded."title", "done" = excluded."done", ` +
  `"notes" = excluded."notes", "priority" = excluded."priority" ` +
  `WHERE excluded.system_version > "tasks".system_version`;

/** The raw INSERT of one row per statement. */
export function rawInsertStatements(
  ids: readonly string[],
  versions: readonly string[],
): InStatement[] {
  return ids.map((id, i) => {
    const d = taskData(i);
    const version = versions[i]!;
    return {
      sql: RAW_INSERT,
      args: [d.title, d.done, d.notes, d.priority, id, version, version, 0],
    };
  });
}

/** The bound values of one server row in the raw table's column order. */
export function rawRowArgs(row: ServerRow): InValue[] {
  const d = row.data as unknown as TaskData;
  return [
    row.id,
    row.version,
    row.createdAt ?? row.version,
    row.deleted ? 1 : 0,
    d.title,
    d.done,
    d.notes,
    d.priority,
  ];
}

/** The raw UPSERT of one server row per statement. */
export function rawUpsertStatements(rows: readonly ServerRow[]): InStatement[] {
  return rows.map((row) => ({ sql: RAW_UPSERT, args: rawRowArgs(row) }));
}

/** Opens the library's database on a libSQL URL (replica `nodeId`, default `bench-client`). */
export function openTasksDatabase(url: string, nodeId = "bench-client"): Promise<TasksDatabase> {
  return openDatabase({
    adapter: libsqlAdapter(createClient({ url })),
    schema,
    nodeId,
  });
}

/** Opens a raw libSQL client on a URL and creates the `tasks` table. */
export async function openRawDatabase(url: string): Promise<Client> {
  const client = createClient({ url });
  await client.execute(RAW_CREATE_TABLE);
  return client;
}
