// schema.mjs in TypeScript, the same tables: what `declarative-sync serve
// --schema ./schema.ts` serves on Deno and Bun, and refuses with one clear
// line on a Node that does not strip types (Node 20).
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
