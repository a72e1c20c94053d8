import {
  KeysClaimRequest,
  KeysQueryRequest,
  KeysUploadRequest,
  SignatureUploadRequest,
} from "@matrix-org/matrix-sdk-crypto-wasm";
import type { MatrixClient } from "../matrix/MatrixClient.ts";
import { CLIENT_V3, masqueradeQuery, type Masquerade } from "../matrix/requests.ts";
import { backoffDelay, classifyFailure, DEFAULT_RETRY } from "../outbox/classifyFailure.ts";

/** The OlmMachine's requests that go straight to the homeserver (to-device ones go through the outbox). */
export type KeyRequest = KeysUploadRequest | KeysQueryRequest | KeysClaimRequest | SignatureUploadRequest;

/** Tries of a key request before its failure is thrown; the machine asks again on its next round. */
const TRIES = 6;

export function isKeyRequest(request: unknown): request is KeyRequest {
  return (
    request instanceof KeysUploadRequest ||
    request instanceof KeysQueryRequest ||
    request instanceof KeysClaimRequest ||
    request instanceof SignatureUploadRequest
  );
}

function pathOf(request: KeyRequest): string {
  if (request instanceof KeysUploadRequest) return "keys/upload";
  if (request instanceof KeysQueryRequest) return "keys/query";
  if (request instanceof KeysClaimRequest) return "keys/claim";
  return "keys/signatures/upload";
}

/**
 * Sends a key request as the device (`?user_id=&device_id=`: the keys belong to that device) and
 * resolves with the answer's JSON text, for `markRequestAsSent`. Retries what a retry can fix
 * (network, 5xx, 429 after its `retry_after_ms`) with backoff; rejects with the last error.
 */
export async function sendKeyRequest(
  client: MatrixClient,
  request: KeyRequest,
  as: Masquerade,
): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    try {
      const answer = await client.send({
        method: "POST",
        path: `${CLIENT_V3}/${pathOf(request)}${masqueradeQuery(as)}`,
        body: request.body,
      });
      return JSON.stringify(answer);
    } catch (error) {
      const failure = classifyFailure(error);
      if (failure.action === "dead" || attempt >= TRIES) throw error;
      const delay =
        failure.action === "rateLimited" && failure.retryAfterMs !== undefined
          ? failure.retryAfterMs
          : backoffDelay(attempt, DEFAULT_RETRY);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}
