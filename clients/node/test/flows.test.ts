// The registration, checkout and deletion flows against a real vault over mTLS.
//
// Run by tests/e2e/test_node_client.py, which starts `pii-vault serve` and sets:
//   PII_VAULT_NODE_TEST_ADDRESS  host:port of the server (e.g. localhost:40123)
//   PII_VAULT_NODE_TEST_TLS_DIR  the data directory's tls/ (ca.crt, clients/NAME.{crt,key})
// By hand: start a server (make run), then
//   PII_VAULT_NODE_TEST_ADDRESS=localhost:50051 PII_VAULT_NODE_TEST_TLS_DIR=var/vault/tls npm test

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { after, describe, test } from "node:test";

import {
  Code,
  FieldType,
  VaultError,
  View,
  createVaultClient,
  type VaultClient,
} from "../src/index.js";

function required(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run these tests through tests/e2e/test_node_client.py`);
  }
  return value;
}

const address = required("PII_VAULT_NODE_TEST_ADDRESS");
const tlsDir = required("PII_VAULT_NODE_TEST_TLS_DIR");
const clients: VaultClient[] = [];

function as(caller: string): VaultClient {
  const client = createVaultClient({
    address,
    tls: {
      caFile: join(tlsDir, "ca.crt"),
      certFile: join(tlsDir, "clients", `${caller}.crt`),
      keyFile: join(tlsDir, "clients", `${caller}.key`),
    },
  });
  clients.push(client);
  return client;
}

after(() => {
  for (const client of clients) {
    client.close();
  }
});

/** The VaultError a promise rejects with (fails the test when it resolves). */
async function refusal(promise: Promise<unknown>): Promise<VaultError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof VaultError, `expected a VaultError, got ${String(error)}`);
    return error;
  }
  assert.fail("the call succeeded; it should have been refused");
}

const nextYear = new Date().getUTCFullYear() + 1;

describe("registration", () => {
  const registration = as("registration");

  test("stores a phone and an e-mail and finds the phone by another spelling", async () => {
    const subjectId = `node-${randomUUID()}`;
    const phone = await registration.vault.putField({
      subjectId,
      field: "phone",
      value: { kind: { case: "phone", value: { number: "+372 5123 4567" } } },
      idempotencyKey: `${subjectId}-phone`,
    });
    assert.equal(phone.view?.type, FieldType.PHONE);
    assert.equal(phone.view?.masked, "+372 **** **67");
    assert.equal(phone.view?.phone?.countryCode, 372);

    const email = await registration.vault.putField({
      subjectId,
      field: "email",
      value: { kind: { case: "email", value: "Jane.Doe@Example.COM" } },
    });
    assert.equal(email.view?.masked, "J***@example.com");

    const found = await registration.vault.findSubjects({
      value: { kind: { case: "phone", value: { number: "0037251234567" } } },
    });
    assert.equal(found.found, true);

    // A retried put with the same idempotency key is answered with the same view...
    const again = await registration.vault.putField({
      subjectId,
      field: "phone",
      value: { kind: { case: "phone", value: { number: "+372 5123 4567" } } },
      idempotencyKey: `${subjectId}-phone`,
    });
    assert.equal(again.view?.version, phone.view?.version);
    // ...and the same key with other content is refused, with a reason to branch on.
    const reused = await refusal(
      registration.vault.putField({
        subjectId,
        field: "phone",
        value: { kind: { case: "phone", value: { number: "+372 5123 9999" } } },
        idempotencyKey: `${subjectId}-phone`,
      }),
    );
    assert.equal(reused.code, Code.AlreadyExists);
    assert.equal(reused.codeName, "ALREADY_EXISTS");
    assert.equal(reused.domain, "pii-vault");
    assert.equal(reused.reason, "IDEMPOTENCY_MISMATCH");

    const listed = await registration.vault.listFields({ subjectId });
    assert.deepEqual(listed.fields.map((f) => f.field).sort(), ["email", "phone"]);
  });

  test("a bad value is INVALID_ARGUMENT naming the bad field", async () => {
    const bad = await refusal(
      registration.vault.putField({
        subjectId: `node-${randomUUID()}`,
        field: "phone",
        value: { kind: { case: "phone", value: { number: "12" } } },
      }),
    );
    assert.equal(bad.code, Code.InvalidArgument);
    assert.equal(bad.domain, "pii-vault");
    assert.ok(bad.reason.length > 0, "an ErrorInfo reason is attached");
    assert.ok(
      bad.fieldViolations.some((v) => v.field.startsWith("value")),
      `BadRequest names the value: ${JSON.stringify(bad.fieldViolations)}`,
    );
  });
});

describe("checkout", () => {
  const checkout = as("checkout");
  const registration = as("registration");

  test("stores a card and a payment token, and pays with the detokenized token", async () => {
    const subjectId = `node-${randomUUID()}`;
    const card = await checkout.vault.putField({
      subjectId,
      field: "card.primary",
      value: {
        kind: {
          case: "card",
          value: { pan: "4242 4242 4242 4242", expMonth: 12, expYear: nextYear, holderName: "Jane Doe" },
        },
      },
    });
    assert.equal(card.view?.type, FieldType.CARD);
    assert.equal(card.view?.card?.brand.toUpperCase(), "VISA");
    assert.equal(card.view?.card?.last4, "4242");
    assert.ok(!card.view?.masked.includes("4242 4242"), "the card number never comes back");

    const stored = await checkout.vault.putField({
      subjectId,
      field: "payment_token.stripe",
      value: { kind: { case: "paymentToken", value: { provider: "stripe", token: "pm_1Nexamplef3a9" } } },
    });
    assert.equal(stored.view?.masked, "stripe ****f3a9");
    const token = stored.view?.token ?? "";
    assert.match(token, /^tok_/);

    const read = await checkout.vault.getField({
      subjectId,
      field: "payment_token.stripe",
      view: View.TOKEN,
    });
    assert.equal(read.view?.token, token);

    const exchanged = await checkout.vault.detokenize({ token, purpose: "checkout" });
    assert.equal(exchanged.value?.kind.case, "paymentToken");
    assert.equal(
      exchanged.value?.kind.case === "paymentToken" ? exchanged.value.kind.value.token : "",
      "pm_1Nexamplef3a9",
    );

    // Nobody else may make the exchange: refused with a machine-readable reason.
    const denied = await refusal(registration.vault.detokenize({ token, purpose: "checkout" }));
    assert.equal(denied.code, Code.PermissionDenied);
    assert.equal(denied.domain, "pii-vault");
    assert.equal(denied.reason, "POLICY_DENIED");
  });

  test("every call has a deadline, and a call past it is DEADLINE_EXCEEDED", async () => {
    const late = await refusal(
      checkout.vault.listFields({ subjectId: `node-${randomUUID()}` }, { timeoutMs: 1 }),
    );
    assert.equal(late.code, Code.DeadlineExceeded);
  });
});

describe("deletion", () => {
  const checkout = as("checkout");
  const deletion = as("deletion");

  test("shreds a subject, gets a signed receipt, and the subject is gone", async () => {
    const subjectId = `node-${randomUUID()}`;
    await checkout.vault.putField({
      subjectId,
      field: "payment_token.stripe",
      value: { kind: { case: "paymentToken", value: { provider: "stripe", token: "pm_shredme0001" } } },
    });
    await checkout.vault.putField({
      subjectId,
      field: "card.primary",
      value: { kind: { case: "card", value: { pan: "5555555555554444", expMonth: 1, expYear: nextYear } } },
    });

    const requestId = `shred-${subjectId}`;
    const { receipt } = await deletion.vault.shredSubject({
      subjectId,
      reason: "account closed",
      requestId,
    });
    assert.equal(receipt?.subjectId, subjectId);
    assert.equal(receipt?.requestId, requestId);
    assert.equal(receipt?.fieldsDestroyed, 2);
    assert.equal(receipt?.signature.length, 64, "an Ed25519 signature");
    assert.ok((receipt?.payload.length ?? 0) > 0);

    // Idempotent on request_id: the first receipt again.
    const repeated = await deletion.vault.shredSubject({ subjectId, reason: "account closed", requestId });
    assert.deepEqual(repeated.receipt?.signature, receipt?.signature);

    const gone = await refusal(
      checkout.vault.getField({ subjectId, field: "payment_token.stripe", view: View.MASKED }),
    );
    assert.equal(gone.domain, "pii-vault");
    assert.ok(
      [Code.NotFound, Code.FailedPrecondition].includes(gone.code),
      `a shredded subject reads as gone: ${gone.toString()}`,
    );
    assert.ok(gone.reason.length > 0);
  });
});

describe("rate limits", () => {
  const registration = as("registration");

  test("past its search budget a caller gets RESOURCE_EXHAUSTED with a retry delay", async () => {
    let limited: VaultError | undefined;
    for (let i = 0; i < 200 && limited === undefined; i++) {
      try {
        // One value again and again: the budget, not the enumeration alarm (many values).
        await registration.vault.findSubjects({
          value: { kind: { case: "email", value: "same.person@example.com" } },
        });
      } catch (error) {
        assert.ok(error instanceof VaultError, String(error));
        limited = error;
      }
    }
    assert.ok(limited, "200 searches in a row were all answered");
    assert.equal(limited.code, Code.ResourceExhausted);
    assert.equal(limited.domain, "pii-vault");
    assert.equal(limited.reason, "SEARCH_RATE_LIMITED");
    assert.ok((limited.retryDelayMs ?? 0) > 0, `RetryInfo says how long to wait: ${limited.retryDelayMs}`);
  });
});
