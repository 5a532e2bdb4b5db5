// @pii-vault/client: the TypeScript client of the pii-vault vault.v1 contract.
//
// createVaultClient() gives typed clients of VaultService, KeyAdminService and
// AuditService over mTLS; every failure is a VaultError carrying the gRPC code,
// the message and the google.rpc.ErrorInfo reason. The message types and enums
// are re-exported from the generated code.

export {
  DEFAULT_TIMEOUT_MS,
  DEFAULT_TIMEOUTS_MS,
  createVaultClient,
  tlsFromFiles,
  type TlsFiles,
  type TlsMaterial,
  type VaultClient,
  type VaultClientOptions,
} from "./client.js";
export { ERROR_DOMAIN, VaultError, toVaultError, type FieldViolation } from "./errors.js";
export * from "./gen/vault/v1/vault_pb.js";
export { Code } from "@connectrpc/connect";
