// The schema the package test serves (`declarative-sync serve --schema
// ./schema.mjs`) and syncs: plain JavaScript, as `--schema` takes it on Node 20,
// importing the installed package like any user's schema module.
import { defineSchema, integer, table, text } from "@declarative/sync";

export const schema = defineSchema({
  tasks: table({
    title: text().notNull(),
    done: integer().notNull().default(0),
  }, { withSystemColumns: true }),
  notes: table({
    body: text().notNull().default(""),
    color: text(),
  }, { withSystemColumns: true, lww: "column" }),
});
