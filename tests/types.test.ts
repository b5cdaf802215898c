// Row types are inferred from the schema: the `@ts-expect-error` lines below
// are compile errors (checked by `deno check` / `deno test`), and the same
// mistakes are refused at run time with a typed SyncError.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SyncError } from "../src/errors.ts";
import type { RowOf } from "../src/schema.ts";
import { schema } from "./fixtures.ts";
import { openMemory } from "./helpers.ts";

const isCode = (code: string) => (error: unknown) =>
  error instanceof SyncError && error.code === code;

test("insert refuses a wrong column type at compile time and at run time", async () => {
  const db = await openMemory({ schema });
  // @ts-expect-error title is a string
  await assert.rejects(db.insert("tasks", { title: 1 }), isCode("invalid_value"));
  // @ts-expect-error nope is not a column of tasks
  await assert.rejects(db.insert("tasks", { title: "a", nope: 1 }), isCode("unknown_column"));
  // @ts-expect-error title is required
  await assert.rejects(db.insert("tasks", { done: 1 }), isCode("invalid_value"));
  // @ts-expect-error tasks.title is notNull
  await assert.rejects(db.insert("tasks", { title: null }), isCode("invalid_value"));
  // @ts-expect-error no such table
  await assert.rejects(db.insert("nope", { title: "a" }), isCode("unknown_table"));
  assert.equal(await db.countDirtyRows(), 0);
  await db.close();
});

test("update refuses unknown columns and wrong types", async () => {
  const db = await openMemory({ schema });
  const task = await db.insert("tasks", { title: "a" });
  const id = task.system_id;
  // @ts-expect-error done is a number
  await assert.rejects(db.update("tasks", id, { done: "yes" }), isCode("invalid_value"));
  // @ts-expect-error color is a column of notes, not tasks
  await assert.rejects(db.update("tasks", id, { color: "red" }), isCode("unknown_column"));
  assert.equal((await db.get("tasks", task.system_id))?.system_version, task.system_version);
  await db.close();
});

test("rows carry inferred types, system columns included", async () => {
  const db = await openMemory({ schema });
  const task = await db.insert("tasks", { title: "a", notes: null });
  const title: string = task.title;
  const notes: string | null = task.notes;
  const version: string = task.system_version;
  const files = await db.all("files");
  const first: RowOf<typeof schema.tables.files> | undefined = files[0];
  const settings = await db.insert("settings", { key: "ui", value: { theme: "dark" } });
  const theme: string | undefined = settings.value?.theme;
  // @ts-expect-error local-only rows have no system columns
  settings.system_id;
  assert.equal(title, "a");
  assert.equal(notes, null);
  assert.match(version, /^\d{19}:\d{9}:/);
  assert.equal(first, undefined);
  assert.equal(theme, "dark");
  await db.close();
});
