/**
 * The one error class of the library. Every failure a caller can act on is a
 * `SyncError` with a stable, machine-readable `code`; the message is for humans
 * and names the offending value. Misuse of the API (a wrong argument type) is a
 * `TypeError` or `RangeError` instead, as in the platform.
 *
 * @module
 */

/** Stable codes carried by {@linkcode SyncError}. New codes may be added; existing ones never change. */
export type SyncErrorCode =
  /** A remote version is further ahead of local wall time than `maxDrift` allows. */
  | "clock_drift"
  /** A version string is not a valid HLC. */
  | "invalid_version"
  /** An update or delete named a row that does not exist or is deleted. */
  | "not_found"
  /** A table name is not declared in the schema (or is not synced). */
  | "unknown_table"
  /** A column name is not declared for its table. */
  | "unknown_column"
  /** A value does not fit its column (type, `notNull`). */
  | "invalid_value"
  /** A change from the server is malformed. */
  | "invalid_change"
  /** The stored database cannot be migrated to the declared schema without losing or inventing data. */
  | "destructive_migration"
  /** The database refused a write (unique or primary-key conflict, foreign key, check). */
  | "constraint"
  /** The database is closed. */
  | "closed"
  /** The sync server cannot be reached (network down, DNS, connection refused, timeout). */
  | "offline"
  /** The sync server answered with an error status; `details.status` holds it. */
  | "server_error"
  /** The sync server refused the credentials (401/403). */
  | "unauthorized"
  /** Client and server speak different protocol versions. */
  | "protocol_mismatch"
  /** Client and server declare different schemas. */
  | "schema_mismatch"
  /** `onSend` returned false: the changes stay in the outbox for the next attempt. */
  | "send_refused"
  /**
   * The server's database cannot serve the request yet: a replica pulls are
   * read from has not received the schema. A passing failure (503).
   */
  | "unavailable";

/**
 * An error with a stable `code`, thrown by every part of the library.
 *
 * @example
 * ```ts
 * try {
 *   await db.update("tasks", id, { done: 1 });
 * } catch (error) {
 *   if (error instanceof SyncError && error.code === "not_found") console.log("gone");
 * }
 * ```
 */
export class SyncError extends Error {
  /** The stable code of this error. */
  readonly code: SyncErrorCode;
  /** Extra machine-readable facts about the error (table, column, versions …). */
  readonly details: Readonly<Record<string, unknown>>;

  /**
   * Creates an error with a stable code.
   *
   * @param code the stable code
   * @param message a sentence naming the offending value
   * @param options the underlying `cause` and extra `details`
   */
  constructor(
    code: SyncErrorCode,
    message: string,
    options: { cause?: unknown; details?: Record<string, unknown> } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = "SyncError";
    this.code = code;
    this.details = options.details ?? {};
  }
}
