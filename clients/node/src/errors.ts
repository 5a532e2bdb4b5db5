// Errors from the vault, decoded: the gRPC status code, its message, and the
// google.rpc details the server attaches in the grpc-status-details-bin
// trailer (ErrorInfo with domain "pii-vault" and a stable reason, RetryInfo on
// rate limits, BadRequest naming the bad request fields).
//
// Branch on `reason` (docs/errors.md lists them), never on message text.

import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from "./gen/google/rpc/error_details_pb.js";

/** google.rpc.ErrorInfo.domain of every error the vault sends. */
export const ERROR_DOMAIN = "pii-vault";

/** The canonical gRPC status names, indexed by code (Connect's Code enum has the same numbers). */
const CODE_NAMES: Readonly<Record<number, string>> = {
  0: "OK",
  1: "CANCELLED",
  2: "UNKNOWN",
  3: "INVALID_ARGUMENT",
  4: "DEADLINE_EXCEEDED",
  5: "NOT_FOUND",
  6: "ALREADY_EXISTS",
  7: "PERMISSION_DENIED",
  8: "RESOURCE_EXHAUSTED",
  9: "FAILED_PRECONDITION",
  10: "ABORTED",
  11: "OUT_OF_RANGE",
  12: "UNIMPLEMENTED",
  13: "INTERNAL",
  14: "UNAVAILABLE",
  15: "DATA_LOSS",
  16: "UNAUTHENTICATED",
};

/** One bad request field from a google.rpc.BadRequest: `field` is a path such as `value.card.pan`. */
export interface FieldViolation {
  readonly field: string;
  readonly description: string;
}

/**
 * Every failed vault call rejects with a VaultError. It is a ConnectError (so
 * `code`, `rawMessage`, the trailers in `metadata` and `findDetails()` work as
 * usual) with the vault's details already decoded.
 */
export class VaultError extends ConnectError {
  /** The canonical gRPC name of `code`, e.g. "FAILED_PRECONDITION". */
  readonly codeName: string;
  /** ErrorInfo.reason, e.g. "SUBJECT_SHREDDED" (domain "pii-vault"); "" when no ErrorInfo came. */
  readonly reason: string;
  /** ErrorInfo.domain: "pii-vault" for the vault's own errors; "" when no ErrorInfo came. */
  readonly domain: string;
  /** ErrorInfo.metadata (never a value). */
  readonly infoMetadata: Readonly<Record<string, string>>;
  /** RetryInfo.retry_delay in milliseconds, when the server says waiting helps (rate limits). */
  readonly retryDelayMs: number | undefined;
  /** BadRequest.field_violations: which request fields were wrong. */
  readonly fieldViolations: readonly FieldViolation[];

  constructor(error: ConnectError) {
    // The name stays "ConnectError": ConnectError's instanceof check (and so
    // ConnectError.from) recognises errors by that name.
    super(error.rawMessage, error.code, error.metadata, undefined, error);
    this.details = error.details;
    this.codeName = CODE_NAMES[error.code] ?? `CODE_${error.code}`;
    const info = error.findDetails(ErrorInfoSchema)[0];
    this.reason = info?.reason ?? "";
    this.domain = info?.domain ?? "";
    this.infoMetadata = { ...(info?.metadata ?? {}) };
    const retry = error.findDetails(RetryInfoSchema)[0]?.retryDelay;
    this.retryDelayMs =
      retry === undefined ? undefined : Number(retry.seconds) * 1000 + Math.ceil(retry.nanos / 1e6);
    this.fieldViolations = error
      .findDetails(BadRequestSchema)
      .flatMap((bad) => bad.fieldViolations)
      .map((v) => ({ field: v.field, description: v.description }));
  }

  /** Only errors built by this class (ConnectError's own check is by name and shape). */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return Function.prototype[Symbol.hasInstance].call(this, value);
  }

  override toString(): string {
    const reason = this.reason ? ` ${this.reason}` : "";
    return `VaultError [${this.codeName}${reason}] ${this.rawMessage}`;
  }
}

/** Any thrown value as a VaultError (transport errors included: UNAVAILABLE, DEADLINE_EXCEEDED, ...). */
export function toVaultError(error: unknown): VaultError {
  if (error instanceof VaultError) {
    return error;
  }
  return new VaultError(ConnectError.from(error, Code.Unknown));
}
