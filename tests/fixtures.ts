/** Schemas shared by the tests. */

import { blob, boolean, defineSchema, integer, json, real, table, text } from "../src/schema.ts";

/** The README's tasks table (row LWW), a column-LWW notes table and a local-only table. */
export const schema = defineSchema({
  tasks: table({
    title: text().notNull(),
    done: integer().notNull().default(0),
    notes: text(),
  }, { withSystemColumns: true, lww: "row", indexes: [{ columns: ["done"] }] }),
  notes: table({
    body: text().notNull().default(""),
    pinned: boolean().notNull().default(false),
    color: text(),
  }, { withSystemColumns: true, lww: "column" }),
  settings: table({
    key: text().primaryKey(),
    value: json<{ theme: string }>(),
  }),
  files: table({
    name: text().notNull(),
    size: real(),
    bytes: blob(),
    meta: json<Record<string, number>>(),
    hidden: boolean(),
  }, { withSystemColumns: true }),
});

/** The end-to-end schema: row and column tables, bytes, and a scoped table. */
export const syncSchema = defineSchema({
  tasks: table({
    title: text().notNull(),
    done: integer().notNull().default(0),
    notes: text(),
  }, { withSystemColumns: true }),
  notes: table({
    body: text().notNull().default(""),
    pinned: boolean().notNull().default(false),
    color: text(),
  }, { withSystemColumns: true, lww: "column" }),
  files: table({
    name: text().notNull(),
    bytes: blob(),
    meta: json<Record<string, unknown>>(),
  }, { withSystemColumns: true }),
  todos: table({
    owner: text().notNull(),
    title: text().notNull(),
  }, { withSystemColumns: true, scope: "owner" }),
});
