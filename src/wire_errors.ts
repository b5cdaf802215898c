/**
 * The codes of the wire protocol, and the one table that ties each error
 * code to its HTTP status: the endpoint answers with it, the client
 * transport reads it back into a {@linkcode SyncError}, so the two ends can
 * never disagree.
 *
 * @module
 */

import { SyncError, type SyncErrorCode } from "./errors.ts";

/**
 * The HTTP status of every error code the endpoint answers with
 * (`{ error: { code, message, issues? } }`).
 */
export const ERROR_STATUS = {
  /** The body is not JSON, not UTF-8, or does not match the protocol (issues listed). */
  malformed: 400,
  /** A pull named a table that is not synced. */
  unknown_table: 400,
  /** A pull's cursor did not come from this server. */
  invalid_change: 400,
  /** The database refused the push as a whole when it committed (a deferred constraint). */
  constraint: 400,
  /** Missing, malformed or unknown credentials. */
  unauthorized: 401,
  /** The credentials do not allow the request. */
  forbidden: 403,
  /** No such route. */
  not_found: 404,
  /** Client and server speak different protocol versions. */
  protocol_mismatch: 409,
  /** Client and server declare different schemas. */
  schema_mismatch: 409,
  /** The body or the push is larger than the endpoint's limits. */
  too_large: 413,
  /** The body is not `application/json`. */
  unsupported_media_type: 415,
  /** The server failed (never for bad input). */
  internal: 500,
  /**
   * The edge endpoint cannot start: a setting is missing, or the database
   * refuses it (a destructive migration, a refused token).
   */
  misconfigured: 500,
  /**
   * The server's database cannot be reached (down, restarting, unreachable):
   * a passing failure. The client keeps its changes and retries with backoff,
   * as for any failed sync.
   */
  unavailable: 503,
} as const;

/** An error code of the wire protocol. */
export type WireErrorCode = keyof typeof ERROR_STATUS;

/** An HTTP status the endpoint answers an error with. */
export type WireErrorStatus = (typeof ERROR_STATUS)[WireErrorCode];

/** True for a code of {@linkcode ERROR_STATUS}. */
export function isWireErrorCode(code: unknown): code is WireErrorCode {
  return typeof code === "string" && Object.hasOwn(ERROR_STATUS, code);
}

/**
 * Why the server refused one pushed change (`PushResult.code`), or why the
 * client moved an outbox entry aside without sending it.
 */
export type RejectionCode =
  /** The table is not (or no longer) synced. */
  | "unknown_table"
  /** The change names a column the table does not declare. */
  | "unknown_column"
  /** A value breaks its column's rules (type, notNull, UTF-16, row id, JSON depth, base64). */
  | "invalid_value"
  /** A version, creation version or column version is not a valid HLC. */
  | "invalid_version"
  /** The change is malformed in another way. */
  | "invalid_change"
  /** The version is further ahead of server time than `maxDrift`. */
  | "clock_drift"
  /** The row belongs to another principal's scope. */
  | "forbidden"
  /** The database refused the row (unique, foreign key, check). */
  | "constraint"
  /** The change alone is larger than the server accepts. */
  | "too_large"
  /** The outbox named a row removed outside the API (never sent). */
  | "row_missing"
  /** The server gave no code. */
  | "rejected";
// (A newer server may send a code this list does not know yet: the client
// keeps it as it is, and treats the change as rejected all the same.)

/** The {@linkcode SyncErrorCode} a client reports for an error answer. */
function syncErrorCodeOf(status: number, code: unknown): SyncErrorCode {
  if (status === ERROR_STATUS.unauthorized || status === ERROR_STATUS.forbidden) {
    return "unauthorized";
  }
  const mismatch = ERROR_STATUS.protocol_mismatch;
  if (status === mismatch && (code === "protocol_mismatch" || code === "schema_mismatch")) {
    return code;
  }
  if (status === mismatch) return "protocol_mismatch";
  return "server_error";
}

/** The `SyncError` a client throws for an error answer of the endpoint. */
export function errorFromResponse(
  status: number,
  error: { code?: unknown; message?: unknown } | null | undefined,
  where: string,
): SyncError {
  const said = error == null ? "" : `: ${String(error.code)}: ${String(error.message)}`;
  return new SyncError(syncErrorCodeOf(status, error?.code), `${where} answered ${status}${said}`, {
    details: { status, error },
  });
}
