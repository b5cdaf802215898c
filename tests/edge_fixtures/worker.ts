/**
 * A Cloudflare Worker as a user writes one, against the package's public
 * entries: the whole sync endpoint is `createEdgeServer` over the app's
 * schema, its database the `LIBSQL_URL` binding. The test bundles it with
 * esbuild for workerd, and serves the same module with `deno serve` and Bun.
 *
 * @module
 */

import { createEdgeServer } from "@declarative/sync/edge";
import { schema } from "./schema.ts";

export default createEdgeServer({ schema });
