/**
 * An app's schema, as a user writes it against the package: one synced
 * table. The edge worker fixtures serve it; the test's clients declare it.
 *
 * @module
 */

import { defineSchema, integer, type Schema, table, text } from "@declarative/sync";

const todos = table({
  title: text().notNull(),
  done: integer().notNull().default(0),
}, { withSystemColumns: true });

/** A shared todo list. */
export const schema: Schema<{ todos: typeof todos }> = defineSchema({ todos });
