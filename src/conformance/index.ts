/**
 * `idempotency-ledger/conformance`: the idempotency contract as a test kit for your own HTTP API.
 * Point {@link checkIdempotencyContract} at a running server; it sends real requests and reports
 * which parts of the contract hold, crash safety included. It needs no test framework, and works
 * whatever implements the server (this library or another).
 *
 * @module
 */
export { checkIdempotencyContract } from './check-idempotency-contract.ts';
export type {
  ContractMethod,
  CrashControl,
  IdempotencyContractOptions,
} from './contract-options.ts';
export {
  type ContractCheckId,
  type ContractCheckResult,
  type ContractReport,
  formatContractReport,
} from './contract-report.ts';
