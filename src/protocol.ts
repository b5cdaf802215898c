/**
 * Wire protocol constants shared by the client transport and the sync server.
 *
 * @module
 */

/** The version of the push/pull wire protocol; both ends send it and refuse a mismatch. */
export const PROTOCOL_VERSION = 1;
