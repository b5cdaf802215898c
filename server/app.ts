/**
 * The sync endpoint: a Hono app with `POST /push`, `POST /pull` and
 * `GET /health`, mountable under any path (`app.route("/sync", sync)`).
 *
 * Requests pass, in order: `authorize` (401, before a byte of the body is
 * read), the content type (415), the body — at most `maxBodyBytes`, UTF-8,
 * JSON — (413, 400), the protocol and schema checks (409), the per-push
 * change limit (413), and the valibot schemas derived from the table
 * declarations (400 listing the issues). Nothing is applied unless all of
 * them pass; every error is JSON `{ error: { code, message, issues? } }`,
 * never a 500 for bad input. Values that pass the schemas can still be
 * refused row by row (`rejected`, with the code of the rule they break).
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

import { type Context, Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import * as v from "valibot";
import { SyncError } from "../src/errors.ts";
import {
  createProtocolSchemas,
  DEFAULT_MAX_CHANGES_PER_PUSH,
  DEFAULT_MAX_PULL_LIMIT,
  describeIssues,
  type ErrorResponse,
  PROTOCOL_VERSION,
  type PullRequest,
  type PushRequest,
} from "../src/protocol.ts";
import { describeValue } from "../src/values.ts";
import { readJsonBody } from "./body.ts";
import { DEFAULT_MAX_PULL_BYTES, type Principal, type ServerDatabase } from "./database.ts";

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
  /** About how many bytes of rows a pull response carries at most (default 4 MiB; at least one row). */
  readonly maxPullBytes?: number;
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

type Env = { Variables: { principal: Principal | undefined; request: unknown } };

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
  app.notFound(notFound);

  app.get("/health", (c) =>
    c.json({
      ok: true,
      protocol: PROTOCOL_VERSION,
      schema: database.schema.hash,
      serverTime: database.now(),
    }));

  const maxBodyBytes = limits.maxBodyBytes ?? 8 * 1024 * 1024;
  const maxPullBytes = limits.maxPullBytes ?? DEFAULT_MAX_PULL_BYTES;

  // Who is asking, from the headers alone: nothing of the body is read for a
  // request that will be refused.
  const authorized = async (c: Context<Env>, next: () => Promise<void>) => {
    const principal = options.authorize === undefined ? undefined : await options.authorize(c);
    if (
      options.authorize !== undefined &&
      (typeof principal !== "object" || principal === null || typeof principal.id !== "string")
    ) {
      return fail(c, 401, "unauthorized", "Missing or invalid credentials");
    }
    c.set("principal", principal ?? undefined);
    await next();
  };

  // The body, parsed once and checked against `schema`: the validated request
  // goes to the handler as `c.get("request")`. (Not @hono/valibot-validator:
  // the protocol and schema checks, 409, come between parsing and the schema.)
  const validRequest =
    (schema: v.GenericSchema) => async (c: Context<Env>, next: () => Promise<void>) => {
      if (!isJsonMediaType(c.req.header("content-type"))) {
        return fail(
          c,
          415,
          "unsupported_media_type",
          "Send the body as Content-Type: application/json",
        );
      }
      const body = await readJsonBody(c.req.raw, maxBodyBytes);
      if (!body.ok) return fail(c, body.status, body.code, body.message);
      const head = body.value;
      if (
        typeof head !== "object" || head === null || Array.isArray(head) || !("protocol" in head)
      ) {
        return fail(c, 400, "malformed", "The request body must be an object with a protocol");
      }
      const { protocol, schema: hash, changes } = head as Record<string, unknown>;
      if (protocol !== PROTOCOL_VERSION) {
        return fail(
          c,
          409,
          "protocol_mismatch",
          `Protocol ${
            describeValue(protocol)
          } is not supported; this server speaks ${PROTOCOL_VERSION}`,
        );
      }
      if (hash !== database.schema.hash) {
        return fail(
          c,
          409,
          "schema_mismatch",
          `Schema ${describeValue(hash)} differs from the server's ${database.schema.hash}`,
        );
      }
      if (Array.isArray(changes) && changes.length > maxChanges) {
        return fail(c, 413, "too_large", `At most ${maxChanges} changes per push`);
      }
      const result = v.safeParse(schema, head);
      if (!result.success) {
        return fail(
          c,
          400,
          "malformed",
          "The request does not match the protocol",
          describeIssues(result.issues),
        );
      }
      c.set("request", result.output);
      await next();
    };

  app.post("/push", authorized, validRequest(schemas.pushRequest), async (c) => {
    const request = c.get("request") as PushRequest;
    const { results, held } = await database.applyPush(request.changes, {
      principal: c.get("principal"),
      maxDrift: options.maxDrift,
    });
    return c.json({ results, held, serverTime: database.now() });
  });

  app.post("/pull", authorized, validRequest(schemas.pullRequest), async (c) => {
    const request = c.get("request") as PullRequest;
    const changes = await database.pullJson(request.cursors, request.limit ?? defaultPullLimit, {
      principal: c.get("principal"),
      maxBytes: maxPullBytes,
      held: request.held,
    });
    // The pages are JSON text already (written by SQLite): splice, don't re-encode.
    return c.body(`{"changes":${changes},"serverTime":${database.now()}}`, 200, {
      "content-type": "application/json",
    });
  });

  return app;
}

/** The JSON 404 of the endpoint, for an app that mounts it (`app.notFound(notFound)`). */
export function notFound(c: Context): Response {
  return fail(c, 404, "not_found", `No route ${c.req.method} ${describeValue(c.req.path)}`);
}

// `application/json`, with parameters or none; not `application/json-seq` or others.
function isJsonMediaType(header: string | undefined): boolean {
  if (header === undefined) return false;
  const semicolon = header.indexOf(";");
  const type = (semicolon < 0 ? header : header.slice(0, semicolon)).trim().toLowerCase();
  return type === "application/json";
}

/** An error answer with the endpoint's JSON shape. */
export function fail(
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
