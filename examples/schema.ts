/**
 * The example app's schema: a shared task list. The sync server starts with
 * this schema by default; the examples and the README use it.
 *
 * @module
 */

import { boolean, defineSchema, integer, json, type Schema, table, text } from "../mod.ts";

const tasks = table({
  title: text().notNull(),
  done: integer().notNull().default(0),
  notes: text(),
}, { withSystemColumns: true, lww: "row", indexes: [{ columns: ["done"] }] });

const notes = table({
  body: text().notNull().default(""),
  pinned: boolean().notNull().default(false),
  color: text(),
}, { withSystemColumns: true, lww: "column" });

const preferences = table({
  key: text().primaryKey(),
  value: json(),
});

/** Tasks (row LWW), sticky notes (column LWW) and local-only preferences. */
export const schema: Schema<{
  tasks: typeof tasks;
  notes: typeof notes;
  preferences: typeof preferences;
}> = defineSchema({ tasks, notes, preferences });
