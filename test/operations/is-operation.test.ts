/** isOperation tells the operations defineOperation made from look-alikes. */
import { expect, it } from 'vitest';
import { defineOperation, isOperation } from '../../src/operations/index.ts';

it('recognises an operation made by defineOperation, and nothing else', () => {
  const run = async () => 'done';
  const operation = defineOperation({ name: 'create-payment', run });
  expect(isOperation(operation)).toBe(true);
  // Same shape, not made by defineOperation: a module's other exports must not be run.
  for (const value of [{ name: 'create-payment', run }, null, 'x', 42, run]) {
    expect(isOperation(value)).toBe(false);
  }
});
