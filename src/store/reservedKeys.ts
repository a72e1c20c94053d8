/**
 * Keys the framework keeps in a plugin's key-value space for it: claims of signed webhook bodies
 * (`<prefix>webhook-body:<METHOD> <path>:<sha256 of the body>`). The plugin's store neither lists nor takes them.
 */
export const RESERVED = "\u0000courier:";
export const WEBHOOK_BODY = `${RESERVED}webhook-body:`;

export function refuseReserved(key: string): void {
  if (key.startsWith(RESERVED)) {
    throw new TypeError(`Keys starting with ${JSON.stringify(RESERVED)} are the framework's, got "${key}"`);
  }
}
