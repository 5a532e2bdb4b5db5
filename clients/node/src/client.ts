// A small client over the generated vault.v1 code: mutual TLS from files (or
// bytes), a deadline on every call (per-method defaults, overridable per
// call), keepalive pings, and every failure rejected as a VaultError with the
// google.rpc details decoded.
//
// The generated code (src/gen) is written by scripts/gen_proto.py; never edit it.

import { readFileSync } from "node:fs";

import type { DescService } from "@bufbuild/protobuf";
import { createClient, type CallOptions, type Client } from "@connectrpc/connect";
import { Http2SessionManager, createGrpcTransport } from "@connectrpc/connect-node";

import { AuditService, KeyAdminService, VaultService } from "./gen/vault/v1/vault_pb.js";
import { toVaultError } from "./errors.js";

/** PEM bytes of the CA that signed the server certificate, and of this caller's certificate and key. */
export interface TlsMaterial {
  readonly ca: string | Buffer;
  readonly cert: string | Buffer;
  readonly key: string | Buffer;
}

/** Paths of the same three PEM files (e.g. DIR/tls/ca.crt, DIR/tls/clients/NAME.{crt,key}). */
export interface TlsFiles {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

/** Read the three PEM files. */
export function tlsFromFiles(files: TlsFiles): TlsMaterial {
  return {
    ca: readFileSync(files.caFile),
    cert: readFileSync(files.certFile),
    key: readFileSync(files.keyFile),
  };
}

/**
 * Default deadline per RPC (proto method name), in milliseconds. Reads are
 * quick; a shred or an export does more work; RewrapKeys streams progress
 * over a long job. Anything not listed gets DEFAULT_TIMEOUT_MS.
 */
export const DEFAULT_TIMEOUT_MS = 10_000;
export const DEFAULT_TIMEOUTS_MS: Readonly<Record<string, number>> = {
  GetField: 5_000,
  BatchGetFields: 10_000,
  ListFields: 5_000,
  Detokenize: 5_000,
  FindSubjects: 5_000,
  PutField: 10_000,
  DeleteField: 10_000,
  ShredSubject: 30_000,
  ExportSubject: 30_000,
  RewrapKeys: 3_600_000,
  VerifyChain: 120_000,
};

export interface VaultClientOptions {
  /** host:port of the vault, e.g. "localhost:50051" (the name must match the server certificate). */
  readonly address: string;
  /** Client certificate, key and CA, as bytes or read from files. */
  readonly tls: TlsMaterial | TlsFiles;
  /** TLS server name to verify, when `address` is not the certificate's name. */
  readonly serverName?: string;
  /** Deadline of any RPC not in `timeoutsMs` (default DEFAULT_TIMEOUT_MS). */
  readonly defaultTimeoutMs?: number;
  /** Per-RPC deadlines by proto method name ("PutField"), merged over DEFAULT_TIMEOUTS_MS. */
  readonly timeoutsMs?: Readonly<Record<string, number>>;
  /** HTTP/2 keepalive ping interval (default 30 s; the server must allow it). */
  readonly keepaliveMs?: number;
}

/** The three vault.v1 services over one mTLS HTTP/2 connection. */
export interface VaultClient {
  readonly vault: Client<typeof VaultService>;
  readonly keyAdmin: Client<typeof KeyAdminService>;
  readonly audit: Client<typeof AuditService>;
  /** Close the connection; calls in flight fail with CANCELLED or UNAVAILABLE. */
  close(): void;
}

function isFiles(tls: TlsMaterial | TlsFiles): tls is TlsFiles {
  return "caFile" in tls;
}

export function createVaultClient(options: VaultClientOptions): VaultClient {
  const tls = isFiles(options.tls) ? tlsFromFiles(options.tls) : options.tls;
  const baseUrl = `https://${options.address}`;
  const sessionManager = new Http2SessionManager(
    baseUrl,
    { pingIntervalMs: options.keepaliveMs ?? 30_000, pingIdleConnection: false },
    {
      ca: tls.ca,
      cert: tls.cert,
      key: tls.key,
      ...(options.serverName === undefined ? {} : { servername: options.serverName }),
    },
  );
  const transport = createGrpcTransport({ baseUrl, sessionManager });
  const timeouts = { ...DEFAULT_TIMEOUTS_MS, ...(options.timeoutsMs ?? {}) };
  const fallback = options.defaultTimeoutMs ?? DEFAULT_TIMEOUT_MS;
  const timeoutOf = (method: string): number => timeouts[method] ?? fallback;
  return {
    vault: decorate(VaultService, createClient(VaultService, transport), timeoutOf),
    keyAdmin: decorate(KeyAdminService, createClient(KeyAdminService, transport), timeoutOf),
    audit: decorate(AuditService, createClient(AuditService, transport), timeoutOf),
    close: () => sessionManager.abort(),
  };
}

type AnyCall = (request: unknown, options?: CallOptions) => unknown;

/** The same client, each method with its default deadline and errors turned into VaultError. */
function decorate<T extends DescService>(
  service: T,
  client: Client<T>,
  timeoutOf: (method: string) => number,
): Client<T> {
  const raw = client as unknown as Record<string, AnyCall>;
  const decorated: Record<string, AnyCall> = {};
  for (const method of service.methods) {
    const call = raw[method.localName];
    if (call === undefined) {
      continue;
    }
    const withDeadline = (options?: CallOptions): CallOptions => ({
      timeoutMs: timeoutOf(method.name),
      ...options,
    });
    if (method.methodKind === "unary") {
      decorated[method.localName] = async (request, options) => {
        try {
          return await (call(request, withDeadline(options)) as Promise<unknown>);
        } catch (error) {
          throw toVaultError(error);
        }
      };
    } else {
      decorated[method.localName] = (request, options) =>
        rethrowing(call(request, withDeadline(options)) as AsyncIterable<unknown>);
    }
  }
  return decorated as unknown as Client<T>;
}

async function* rethrowing<M>(stream: AsyncIterable<M>): AsyncGenerator<M> {
  try {
    yield* stream;
  } catch (error) {
    throw toVaultError(error);
  }
}
