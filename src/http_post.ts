/**
 * `postJson`: one POST of a JSON body to the sync endpoint (and `getJson`,
 * one GET, for `GET /schema`), and the mapping of everything that can go
 * wrong with it to a {@linkcode SyncError}, so the push and pull sides of the
 * HTTP transport (`http_push.ts`, `http_pull.ts`) only see a parsed answer or
 * a typed error:
 *
 * - no answer (network down, DNS, connection refused, the timeout) →
 *   `offline`: the sync manager shows "offline" and retries;
 * - a 2xx answer whose body is not JSON → `server_error`;
 * - an error status → the code that `errorFromResponse` (`wire_errors.ts`,
 *   the one status↔code table both ends read) gives it, with the server's
 *   code and message: `<url> answered <status>: <code>: <message>`, and
 *   `details: { status, error }`.
 *
 * What the answer's JSON must look like is checked by the caller, which knows
 * the schema.
 *
 * @example
 * ```ts
 * const payload = await postJson("https://example.com/sync/pull", request, {
 *   fetch,
 *   headers: { authorization: `Bearer ${token}` },
 *   timeout: 30_000,
 * });
 * ```
 *
 * @module
 */

import { SyncError } from "./errors.ts";
import type { ErrorResponse } from "./protocol.ts";
import { errorFromResponse } from "./wire_errors.ts";

/** How {@linkcode postJson} sends. */
export interface PostJsonOptions {
  /** The fetch to use. */
  readonly fetch: typeof fetch;
  /** Extra headers (e.g. authorization); `content-type` is JSON unless given here. */
  readonly headers?: Readonly<Record<string, string>>;
  /** Ms until the request is abandoned (its body read included); no answer by then is `offline`. */
  readonly timeout: number;
  /** Abandons the request early (the caller stopped); it then rejects as `offline`. */
  readonly signal?: AbortSignal;
}

/**
 * POSTs `body` as JSON to `url` and returns the answer's parsed JSON.
 *
 * @param url where to send
 * @param body the JSON text, or a value to stringify
 * @param options the fetch, headers and timeout
 * @returns the answer's JSON, not yet checked
 * @throws {SyncError} `offline` when no answer comes, `server_error` for a
 * non-JSON 2xx answer, and for an error status the code of
 * `errorFromResponse` (`unauthorized`, `protocol_mismatch`,
 * `schema_mismatch`, `server_error`) with `details.status`.
 *
 * @example
 * ```ts
 * try {
 *   await postJson(`${base}/push`, body, { fetch, timeout: 30_000 });
 * } catch (error) {
 *   if (error instanceof SyncError && error.details.status === 413) split();
 * }
 * ```
 */
export async function postJson(
  url: string,
  body: unknown,
  options: PostJsonOptions,
): Promise<unknown> {
  // Awaited here, so that a body that cannot be stringified rejects as well.
  return await requestJson(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...options.headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  }, options);
}

/**
 * GETs `url` and returns the answer's parsed JSON, with the failures of
 * {@linkcode postJson}.
 *
 * @param url what to get
 * @param options the fetch, headers and timeout
 * @returns the answer's JSON, not yet checked
 * @throws {SyncError} as {@linkcode postJson} does
 *
 * @example
 * ```ts
 * const answer = await getJson(`${base}/schema`, { fetch, timeout: 10_000 });
 * ```
 */
export function getJson(url: string, options: PostJsonOptions): Promise<unknown> {
  return requestJson(url, { method: "GET", headers: { ...options.headers } }, options);
}

// One request, its answer's JSON, and every failure as a SyncError.
async function requestJson(
  url: string,
  init: RequestInit,
  options: PostJsonOptions,
): Promise<unknown> {
  let response: Response;
  try {
    const timeout = AbortSignal.timeout(options.timeout);
    const signal = options.signal === undefined
      ? timeout
      : AbortSignal.any([timeout, options.signal]);
    response = await options.fetch(url, { ...init, signal });
  } catch (cause) {
    throw new SyncError("offline", `Cannot reach ${url}: ${(cause as Error)?.message}`, { cause });
  }
  let payload: unknown;
  try {
    payload = await response.json();
  } catch (cause) {
    if (response.ok) {
      throw new SyncError("server_error", `${url} answered with a non-JSON body`, {
        cause,
        details: { status: response.status },
      });
    }
    // An error status without a JSON body is reported by its status alone.
  }
  if (response.ok) return payload;
  // Any falsy `error` (or none) means the server said nothing more than its
  // status; `errorFromResponse` reads `undefined` that way.
  const error = (payload as Partial<ErrorResponse> | null | undefined)?.error || undefined;
  throw errorFromResponse(response.status, error, url);
}
