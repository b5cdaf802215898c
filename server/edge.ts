/**
 * The repository's own edge worker: the sync endpoint for the example schema
 * (`examples/schema.ts`), as `export default { fetch }` for Cloudflare
 * Workers, Deno Deploy (`deno serve -A server/edge.ts`) and other fetch
 * hosts. The database is the `LIBSQL_URL` / `LIBSQL_AUTH_TOKEN` binding or
 * environment variable. An app's worker is the same few lines over its own
 * schema, importing `createEdgeServer` from `@declarative/sync/edge`.
 *
 * @example
 * ```sh
 * LIBSQL_URL=http://127.0.0.1:8080 deno serve -A --port 8787 server/edge.ts
 * ```
 *
 * @module
 */

import { schema } from "../examples/schema.ts";
import { createEdgeServer, type EdgeServer } from "./edge_server.ts";

/** The example schema's endpoint: one per isolate, built on its first request. */
const edge: EdgeServer = createEdgeServer({ schema });

export default edge;
