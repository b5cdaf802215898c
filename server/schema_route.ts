/**
 * `GET /schema`: the schema the endpoint serves, described —
 * `{ protocol, schema: <hash>, tables: [...] }`, its synced tables with their
 * columns, merge granularity, scope and indexes (`describeSchema`).
 *
 * Pushes and pulls carry only the client's schema hash, and a server with
 * another schema can say no more than "409 schema_mismatch". With this
 * answer the client can say which tables and columns differ and how to fix
 * it (`createHttpSync` does so on every 409 `schema_mismatch`). Local-only
 * tables are not described: they are the client's own.
 *
 * The endpoint serves it behind `authorize`, like push and pull: a client
 * that met a mismatch holds credentials the endpoint accepted, and others
 * learn nothing of the tables. The body is encoded once; the query string
 * and the request body, if any, are ignored.
 *
 * @example
 * ```ts
 * app.get("/schema", authorized, schemaRoute(database.schema));
 * // GET /schema → 200 {"protocol":1,"schema":"0f3a…","tables":[{"name":"tasks","synced":true,…}]}
 * ```
 *
 * @module
 */

import type { Context } from "hono";
import { type Schema, schemaResponse } from "../src/internal.ts";

/**
 * The handler of `GET /schema` for `schema`.
 *
 * @param schema the schema the endpoint serves
 * @returns a Hono handler answering the description as JSON
 */
export function schemaRoute(schema: Schema): (c: Context) => Response {
  const body = JSON.stringify(schemaResponse(schema));
  return (c) => c.body(body, 200, { "content-type": "application/json" });
}
