/**
 * The sync endpoint: a Hono app with `POST /push`, `POST /pull`,
 * `GET /health` and `GET /schema`, mountable under any path (`app.route("/sync", sync)`).
 *
 * Requests pass, in order: `authorize` (401, before a byte of the body is
 * read), the content type (415), the body — at most `maxBodyBytes`, UTF-8,
 * JSON — (413, 400), the protocol and schema checks (409), the per-push
 * change limit (413), and the valibot schemas derived from the table
 * declarations (400 listing the issues). Nothing is applied unless all of
 * them pass; every error is JSON `{ error: { code, message, issues? } }`,
 * its status the one `ERROR_STATUS` gives its code, never a 500 for bad
 * input. Values that pass the schemas can still be refused row by row
 * (`rejected`, with the code of the rule they break).
 *
 * A pull that names `wait` (ms, cut to `maxPullWait`) and has nothing new is
 * held: it is answered as soon as a change the principal may pull commits,
 * on this instance or another over the same database, or with its empty
 * pages when the wait elapses or the client goes away
 * (`server/held_pull.ts`). Before closing the HTTP server, end the held
 * pulls (`database.endHeldPulls()`): the server waits for requests in flight.
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

import { type Context, Hono, type MiddlewareHandler } from "hono";
import { createMiddleware } from "hono/factory";
import { HTTPException } from "hono/http-exception";
import * as v from "valibot";
import {
  createProtocolSchemas,
  DEFAULT_MAX_CHANGES_PER_PUSH,
  DEFAULT_MAX_PULL_LIMIT,
  describeIssues,
  describeValue,
  ERROR_STATUS,
  type ErrorResponse,
  isWireErrorCode,
  PROTOCOL_VERSION,
  SyncError,
  type WireErrorCode,
} from "../src/internal.ts";
import { readJsonBody } from "./body.ts";
import { schemaRoute } from "./schema_route.ts";
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
  /**
   * The longest a pull with nothing new is held, ms (default 30,000): a
   * request's `wait` beyond it is cut to it. 0 answers every pull at once.
   */
  readonly maxPullWait?: number;
}

/**
 * Hono's request context (`Context` of the `hono` package the endpoint is
 * built on), as `authorize` receives it. Named here, not re-exported: its
 * documentation is Hono's.
 *
 * @internal
 */
type HonoContext = Context;

/**
 * A Hono app (`Hono` of the `hono` package) serving the endpoint: mount it
 * with `app.route(path, sync)` or serve its `fetch`. Named here, not
 * re-exported: its documentation is Hono's.
 *
 * @internal
 */
type HonoApp<E extends SyncServerEnv> = Hono<E>;

/** Options of {@linkcode createSyncServer}. */
export interface SyncServerOptions {
  /** The server database, from `openServerDatabase`. */
  database: ServerDatabase;
  /**
   * Who is asking: a principal, or null for 401. Without it every request is
   * served and scopes are not enforced.
   */
  authorize?: (
    c: HonoContext,
  ) => Principal | null | undefined | Promise<Principal | null | undefined>;
  /**
   * How far (ms) a change's version may be ahead of server time before it is
   * rejected with `clock_drift`. Default: the database's (60 s).
   */
  maxDrift?: number;
  /** Endpoint limits. */
  limits?: SyncServerLimits;
}

/**
 * The Hono environment of the endpoint: `c.get("principal")` is who
 * `authorize` said is asking (`undefined` without `authorize`).
 */
export type SyncServerEnv = { Variables: { principal: Principal | undefined } };

// The environment a route's handler sees once its body passed the schema.
type ValidatedEnv<T> = { Variables: { request: T } };

const DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024;
const DEFAULT_PULL_LIMIT = 1_000;
const DEFAULT_MAX_PULL_WAIT = 30_000;

/**
 * Creates the sync endpoint.
 *
 * @returns a Hono app; mount it with `app.route(path, sync)` or serve its `fetch`.
 */
export function createSyncServer(options: SyncServerOptions): HonoApp<SyncServerEnv> {
  const { database } = options;
  const limits = options.limits ?? {};
  const maxPullLimit = limits.maxPullLimit ?? DEFAULT_MAX_PULL_LIMIT;
  const defaultPullLimit = Math.min(limits.defaultPullLimit ?? DEFAULT_PULL_LIMIT, maxPullLimit);
  const maxPullBytes = limits.maxPullBytes ?? DEFAULT_MAX_PULL_BYTES;
  const maxPullWait = limits.maxPullWait ?? DEFAULT_MAX_PULL_WAIT;
  // The change limit is checked once, by `validBody`, which answers 413
  // before valibot walks the changes: the schema itself has none.
  const schemas = createProtocolSchemas(database.schema, {
    maxChangesPerPush: false,
    maxPullLimit,
  });
  const authorized = authorization(options.authorize);
  const valid = <T>(schema: v.GenericSchema<unknown, T>) => validBody(schema, options);

  const app = new Hono<SyncServerEnv>();
  app.onError(answerError);
  app.notFound(notFound);

  app.get("/health", (c) =>
    c.json({
      ok: true,
      protocol: PROTOCOL_VERSION,
      schema: database.schema.hash,
      serverTime: database.now(),
    }));
  app.get("/schema", authorized, schemaRoute(database.schema));

  app.post("/push", authorized, valid(schemas.pushRequest), async (c) => {
    const { results, held } = await database.applyPush(c.get("request").changes, {
      principal: c.get("principal"),
      maxDrift: options.maxDrift,
    });
    return c.json({ results, held, serverTime: database.now() });
  });

  app.post("/pull", authorized, valid(schemas.pullRequest), async (c) => {
    const request = c.get("request");
    const wait = Math.min(request.wait ?? 0, maxPullWait);
    const changes = await database.pullJson(request.cursors, request.limit ?? defaultPullLimit, {
      principal: c.get("principal"),
      maxBytes: maxPullBytes,
      held: request.held,
      wait,
      // A client that goes away ends its hold. (Read only for a pull that
      // may be held: Deno warns once about its signal's legacy behaviour.)
      signal: wait > 0 ? c.req.raw.signal : undefined,
    });
    // The pages are JSON text already (written by SQLite): splice, don't re-encode.
    return c.body(`{"changes":${changes},"serverTime":${database.now()}}`, 200, {
      "content-type": "application/json",
    });
  });

  return app;
}

// Who is asking, from the headers alone: nothing of the body is read for a
// request that will be refused.
function authorization(
  authorize: SyncServerOptions["authorize"],
): MiddlewareHandler<SyncServerEnv> {
  return createMiddleware<SyncServerEnv>(async (c, next) => {
    const principal = authorize === undefined ? undefined : await authorize(c);
    if (
      authorize !== undefined &&
      (typeof principal !== "object" || principal === null || typeof principal.id !== "string")
    ) {
      return fail(c, "unauthorized", "Missing or invalid credentials");
    }
    c.set("principal", principal ?? undefined);
    await next();
  });
}

// The body, parsed once and checked against `schema`: the validated request
// goes to the handler as `c.get("request")`. (Not @hono/valibot-validator:
// the protocol and schema checks, 409, and the change limit, 413, come
// between parsing and the schema.)
function validBody<T>(
  schema: v.GenericSchema<unknown, T>,
  { database, limits = {} }: SyncServerOptions,
): MiddlewareHandler<ValidatedEnv<T>> {
  const maxBodyBytes = limits.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const maxChanges = limits.maxChangesPerPush ?? DEFAULT_MAX_CHANGES_PER_PUSH;
  return createMiddleware<ValidatedEnv<T>>(async (c, next) => {
    if (!isJsonMediaType(c.req.header("content-type"))) {
      return fail(c, "unsupported_media_type", "Send the body as Content-Type: application/json");
    }
    const body = await readJsonBody(c.req.raw, maxBodyBytes);
    if (!body.ok) return fail(c, body.code, body.message);
    const refused = refuseHead(body.value, database.schema.hash, maxChanges);
    if (refused !== undefined) return fail(c, refused.code, refused.message);
    const result = v.safeParse(schema, body.value);
    if (!result.success) {
      const issues = describeIssues(result.issues);
      return fail(c, "malformed", "The request does not match the protocol", issues);
    }
    c.set("request", result.output);
    await next();
  });
}

// What the head of a body is refused for before the schema walks it: not an
// object with a protocol, another protocol or schema, or too many changes.
function refuseHead(
  head: unknown,
  hash: string,
  maxChanges: number,
): { code: WireErrorCode; message: string } | undefined {
  if (typeof head !== "object" || head === null || Array.isArray(head) || !("protocol" in head)) {
    return { code: "malformed", message: "The request body must be an object with a protocol" };
  }
  const { protocol, schema, changes } = head as Record<string, unknown>;
  if (protocol !== PROTOCOL_VERSION) {
    const message = `Protocol ${
      describeValue(protocol)
    } is not supported; this server speaks ${PROTOCOL_VERSION}`;
    return { code: "protocol_mismatch", message };
  }
  if (schema !== hash) {
    const message = `Schema ${describeValue(schema)} differs from the server's ${hash}`;
    return { code: "schema_mismatch", message };
  }
  if (Array.isArray(changes) && changes.length > maxChanges) {
    return { code: "too_large", message: `At most ${maxChanges} changes per push` };
  }
  return undefined;
}

// The code of an HTTPException's status (thrown by Hono or by `authorize`).
function httpExceptionCode(status: number): WireErrorCode {
  if (status === 401) return "unauthorized";
  if (status === 403) return "forbidden";
  if (status === 413) return "too_large";
  return "malformed";
}

// What escaped a handler: a refusal the core raised for the request (an
// unknown table, a foreign cursor) keeps its code; a database that cannot be
// reached is `unavailable` (503, which clients retry with backoff); anything
// else is the server's failure, logged.
function answerError(error: Error, c: Context): Response {
  if (error instanceof HTTPException) {
    return fail(c, httpExceptionCode(error.status), error.message);
  }
  if (error instanceof SyncError && isWireErrorCode(error.code)) {
    return fail(c, error.code, error.message);
  }
  // Another SyncError refused what was asked, not the server: still a 4xx.
  if (error instanceof SyncError && error.code !== "closed") {
    return fail(c, "malformed", error.message);
  }
  if (isDatabaseUnavailable(error)) {
    // One line, not a stack per request while the database is down.
    console.error(`The database cannot be reached: ${error.message}`);
    return fail(c, "unavailable", "The database cannot be reached; try again later");
  }
  console.error(error);
  return fail(c, "internal", "The server failed to handle the request");
}

// The codes runtimes give a connection that could not be made or broke:
// Node and undici (`ECONNREFUSED`, `UND_ERR_SOCKET` …), Bun (`ECONNREFUSED`,
// `ConnectionRefused` …), DNS (`ENOTFOUND`, `EAI_AGAIN`).
const UNREACHABLE_CODES: ReadonlySet<string> = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "EHOSTDOWN",
  "ENETUNREACH",
  "ENETDOWN",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EPIPE",
  "UND_ERR_SOCKET",
  "UND_ERR_CLOSED",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
  "ConnectionRefused",
  "ConnectionClosed",
  "FailedToOpenSocket",
]);

// What `fetch` throws when no answer came, where it gives no code: undici
// "fetch failed", Deno "error sending request for url", workerd "Network
// connection lost.", Bun "Unable to connect".
const UNREACHABLE_MESSAGE =
  /fetch failed|error sending request|network connection lost|connection (?:refused|reset|closed)|unable to connect|socket hang up|other side closed/i;

/**
 * True when `error` (or an error in its `cause` chain) says the database
 * could not be reached, as `@libsql/client` reports it over HTTP: the
 * runtime's `fetch` failure as it is (a `TypeError` on Node, Deno and Bun, an
 * `Error` on workerd), a `LibsqlError` whose cause is one (a stream closed by
 * it), or an `HttpServerError` of a gateway in front of the database (502,
 * 503, 504). An SQL error, a constraint or a bug is not.
 *
 * @example
 * ```ts
 * isDatabaseUnavailable(new TypeError("fetch failed")); // true
 * ```
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  let link = error;
  // The chain is bounded: a cause may point back at its error.
  for (let depth = 0; depth < 8 && typeof link === "object" && link !== null; depth++) {
    const { name, code, status, message } = link as Record<string, unknown>;
    if (typeof code === "string" && UNREACHABLE_CODES.has(code)) return true;
    if (name === "HttpServerError" && (status === 502 || status === 503 || status === 504)) {
      return true;
    }
    if (name === "TimeoutError") return true;
    if (
      (name === "TypeError" || name === "Error") && typeof message === "string" &&
      UNREACHABLE_MESSAGE.test(message.slice(0, 200))
    ) {
      return true;
    }
    link = (link as { cause?: unknown }).cause;
  }
  return false;
}

/** The JSON 404 of the endpoint, for an app that mounts it (`app.notFound(notFound)`). */
export function notFound(c: Context): Response {
  return fail(c, "not_found", `No route ${c.req.method} ${describeValue(c.req.path)}`);
}

// `application/json`, with parameters or none; not `application/json-seq` or others.
function isJsonMediaType(header: string | undefined): boolean {
  if (header === undefined) return false;
  const semicolon = header.indexOf(";");
  const type = (semicolon < 0 ? header : header.slice(0, semicolon)).trim().toLowerCase();
  return type === "application/json";
}

/**
 * An error answer with the endpoint's JSON shape, its status the one
 * `ERROR_STATUS` gives `code`.
 *
 * @example
 * ```ts
 * return fail(c, "too_large", "At most 1000 changes per push"); // 413
 * ```
 */
export function fail(
  c: Context,
  code: WireErrorCode,
  message: string,
  issues?: ErrorResponse["error"]["issues"],
): Response {
  const error: ErrorResponse["error"] = issues === undefined
    ? { code, message }
    : { code, message, issues };
  return c.json({ error }, ERROR_STATUS[code]);
}
