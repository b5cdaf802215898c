/**
 * The sync endpoint: a Hono app with `POST /push`, `POST /pull` and
 * `GET /health`, mountable under any path (`app.route("/sync", sync)`).
 *
 * Requests pass, in order: Hono's body limit (413), `authorize` (401), a JSON
 * body (415, 400), the protocol and schema checks (409), the per-push change limit (413), and the
 * valibot schemas derived from the table declarations (400 listing the
 * issues). Nothing is applied unless all of them pass; every error is JSON
 * `{ error: { code, message, issues? } }`, never a 500 for bad input.
 *
 * @example
 * ```ts
 * import { Hono } from "hono";
 * const sync = createSyncServer({
 *   database: await openServerDatabase({ adapter, schema }),
 *   authorize: (c) => verify(c.req.header("authorization")), // → { id } or null
 * });
 * const app = new Hono().route("/sync", sync);
 * ```
 *
 * @module
 */

import { vValidator } from "@hono/valibot-validator";
import { type Context, Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { SyncError } from "../src/errors.ts";
import {
  createProtocolSchemas,
  DEFAULT_MAX_CHANGES_PER_PUSH,
  DEFAULT_MAX_PULL_LIMIT,
  describeIssues,
  type ErrorResponse,
  PROTOCOL_VERSION,
} from "../src/protocol.ts";
import type { Principal, ServerDatabase } from "./database.ts";

/** Limits of the endpoint. */
export interface SyncServerLimits {
  /** Largest request body in bytes (default 8 MiB): 413 beyond. */
  readonly maxBodyBytes?: number;
  /** Changes per push (default 1,000): 413 beyond. */
  readonly maxChangesPerPush?: number;
  /** Rows per table per pull page (default 1,000; a request may ask for up to `maxPullLimit`). */
  readonly defaultPullLimit?: number;
  /** Largest page a pull may ask for (default 5,000). */
  readonly maxPullLimit?: number;
}

/** Options of {@linkcode createSyncServer}. */
export interface SyncServerOptions {
  /** The server database, from `openServerDatabase`. */
  database: ServerDatabase;
  /**
   * Who is asking: a principal, or null for 401. Without it every request is
   * served and scopes are not enforced.
   */
  authorize?: (c: Context) => Principal | null | undefined | Promise<Principal | null | undefined>;
  /**
   * How far (ms) a change's version may be ahead of server time before it is
   * rejected with `clock_drift`. Default: the database's (60 s).
   */
  maxDrift?: number;
  /** Endpoint limits. */
  limits?: SyncServerLimits;
}

type Env = { Variables: { principal: Principal | undefined } };

/**
 * Creates the sync endpoint.
 *
 * @returns a Hono app; mount it with `app.route(path, sync)` or serve its `fetch`.
 */
export function createSyncServer(options: SyncServerOptions): Hono<Env> {
  const { database } = options;
  const limits = options.limits ?? {};
  const maxChanges = limits.maxChangesPerPush ?? DEFAULT_MAX_CHANGES_PER_PUSH;
  const maxPullLimit = limits.maxPullLimit ?? DEFAULT_MAX_PULL_LIMIT;
  const defaultPullLimit = Math.min(limits.defaultPullLimit ?? 1_000, maxPullLimit);
  const schemas = createProtocolSchemas(database.schema, {
    maxChangesPerPush: maxChanges,
    maxPullLimit,
  });

  const app = new Hono<Env>();

  app.onError((error, c) => {
    if (error instanceof HTTPException) {
      return fail(c, error.status, error.status === 413 ? "too_large" : "malformed", error.message);
    }
    if (error instanceof SyncError && error.code !== "closed") {
      return fail(c, 400, error.code, error.message);
    }
    console.error(error);
    return fail(c, 500, "internal", "The server failed to handle the request");
  });
  app.notFound((c) => fail(c, 404, "not_found", `No route ${c.req.method} ${c.req.path}`));

  app.get("/health", (c) =>
    c.json({
      ok: true,
      protocol: PROTOCOL_VERSION,
      schema: database.schema.hash,
      serverTime: database.now(),
    }));

  const guards = [
    bodyLimit({
      maxSize: limits.maxBodyBytes ?? 8 * 1024 * 1024,
      onError: (c) => fail(c, 413, "too_large", "The request body is too large"),
    }),
    async (c: Context<Env>, next: () => Promise<void>) => {
      const principal = options.authorize === undefined ? undefined : await options.authorize(c);
      if (options.authorize !== undefined && (principal === null || principal === undefined)) {
        return fail(c, 401, "unauthorized", "Missing or invalid credentials");
      }
      c.set("principal", principal ?? undefined);
      await next();
    },
    async (c: Context<Env>, next: () => Promise<void>) => {
      if (!/^application\/json\b/i.test(c.req.header("content-type") ?? "")) {
        return fail(
          c,
          415,
          "unsupported_media_type",
          "Send the body as Content-Type: application/json",
        );
      }
      let body: unknown;
      try {
        body = await c.req.json();
      } catch {
        return fail(c, 400, "malformed", "The request body is not valid JSON");
      }
      if (
        typeof body !== "object" || body === null || Array.isArray(body) || !("protocol" in body)
      ) {
        return fail(c, 400, "malformed", "The request body must be an object with a protocol");
      }
      const head = body as Record<string, unknown>;
      if (head.protocol !== PROTOCOL_VERSION) {
        return fail(
          c,
          409,
          "protocol_mismatch",
          `Protocol ${
            JSON.stringify(head.protocol)
          } is not supported; this server speaks ${PROTOCOL_VERSION}`,
        );
      }
      if (head.schema !== database.schema.hash) {
        return fail(
          c,
          409,
          "schema_mismatch",
          `Schema ${JSON.stringify(head.schema)} differs from the server's ${database.schema.hash}`,
        );
      }
      if (Array.isArray(head.changes) && head.changes.length > maxChanges) {
        return fail(c, 413, "too_large", `At most ${maxChanges} changes per push`);
      }
      await next();
    },
  ] as const;

  const invalid = (result: { success: boolean; issues?: unknown }, c: Context) => {
    if (result.success) return;
    return fail(
      c,
      400,
      "malformed",
      "The request does not match the protocol",
      describeIssues(result.issues as never),
    );
  };

  app.post("/push", ...guards, vValidator("json", schemas.pushRequest, invalid), async (c) => {
    const request = c.req.valid("json");
    const results = await database.push(request.changes, {
      principal: c.get("principal"),
      maxDrift: options.maxDrift,
    });
    return c.json({ results, serverTime: database.now() });
  });

  app.post("/pull", ...guards, vValidator("json", schemas.pullRequest, invalid), async (c) => {
    const request = c.req.valid("json");
    const changes = await database.pullJson(request.cursors, request.limit ?? defaultPullLimit, {
      principal: c.get("principal"),
      nodeId: request.nodeId,
    });
    // The pages are JSON text already (written by SQLite): splice, don't re-encode.
    return c.body(`{"changes":${changes},"serverTime":${database.now()}}`, 200, {
      "content-type": "application/json",
    });
  });

  return app;
}

function fail(
  c: Context,
  status: ContentfulStatusCode,
  code: string,
  message: string,
  issues?: ErrorResponse["error"]["issues"],
): Response {
  const error: ErrorResponse["error"] = issues === undefined
    ? { code, message }
    : { code, message, issues };
  return c.json({ error }, status);
}
