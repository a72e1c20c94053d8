// Stands in for @matrix-org/matrix-sdk-crypto-nodejs, whose install script downloads a native
// binary (it cannot here, and the benchmarks send unencrypted). Every export is a class that
// throws when used, so an encrypted code path fails loudly instead of measuring nothing.
/* global module */
"use strict";
const unavailable = (name) => {
  const fail = () => {
    throw new Error(`matrix-sdk-crypto-nodejs is stubbed in the benchmarks (${name} was used)`);
  };
  return new Proxy(function () {}, {
    construct: fail,
    apply: fail,
    get: (_target, key) =>
      key === "prototype" ? {} : typeof key === "string" ? `${name}.${key}` : undefined,
  });
};
module.exports = new Proxy(
  {},
  {
    get: (_target, key) =>
      key === "__esModule" ? false : typeof key === "string" ? unavailable(key) : undefined,
  },
);
