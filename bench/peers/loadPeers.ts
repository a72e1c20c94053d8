// Loads the peer frameworks from bench/peers/node_modules (installed by `npm run bench`, not by the
// root's npm ci), with the native crypto package replaced by cryptoStub.cjs before anything
// requires it. Types are the few members the benchmarks call, so typecheck needs no peer installed.
import { existsSync } from "node:fs";
import { createRequire, registerHooks } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";

const PEERS = fileURLToPath(new URL(".", import.meta.url));
const STUB = pathToFileURL(fileURLToPath(new URL("cryptoStub.cjs", import.meta.url))).href;
const CRYPTO = "@matrix-org/matrix-sdk-crypto-nodejs";

export const peersInstalled = () => existsSync(`${PEERS}node_modules/matrix-bot-sdk/package.json`);

let hooked = false;
function stubCrypto(): void {
  if (hooked) return;
  hooked = true;
  registerHooks({
    resolve(specifier, context, nextResolve) {
      if (specifier === CRYPTO) return { url: STUB, format: "commonjs", shortCircuit: true };
      return nextResolve(specifier, context);
    },
  });
}

/** Imports a peer package by name, as resolved from bench/peers. */
export async function importPeer<T>(name: string): Promise<T> {
  stubCrypto();
  const require = createRequire(`${PEERS}package.json`);
  return (await import(pathToFileURL(require.resolve(name)).href)) as T;
}
