/**
 * Input batches (src/srtp/input-batch.ts): work registered during a batch runs once, in order,
 * when the outermost batch ends, also when handling threw; outside a batch it runs at once.
 */
import { describe, expect, it } from 'vitest';
import { atInputBatchEnd, beginInputBatch, endInputBatch, inInputBatch } from '../src/srtp/input-batch.ts';

describe('input batches', () => {
  it('runs end-of-batch work once, in order, when the outermost batch ends', () => {
    const ran: string[] = [];
    expect(inInputBatch()).toBe(false);
    atInputBatchEnd(() => ran.push('outside'));
    expect(ran).toEqual(['outside']);
    beginInputBatch();
    atInputBatchEnd(() => ran.push('a'));
    beginInputBatch(); // nested: its end is not the batch's end
    atInputBatchEnd(() => {
      ran.push('b');
      atInputBatchEnd(() => ran.push('c')); // registered while ending: still runs
    });
    endInputBatch();
    expect(inInputBatch()).toBe(true);
    expect(ran).toEqual(['outside']);
    endInputBatch();
    expect(inInputBatch()).toBe(false);
    expect(ran).toEqual(['outside', 'a', 'b', 'c']);
    endInputBatch(); // unpaired: ignored
    expect(inInputBatch()).toBe(false);
  });

  it('a failing piece of work does not stop the others, and the batch ends when handling throws', () => {
    const ran: string[] = [];
    expect(() => {
      beginInputBatch();
      try {
        atInputBatchEnd(() => {
          throw new Error('boom');
        });
        atInputBatchEnd(() => ran.push('after'));
        throw new Error('handling failed');
      } finally {
        endInputBatch();
      }
    }).toThrow('handling failed');
    expect(ran).toEqual(['after']);
    expect(inInputBatch()).toBe(false);
  });
});
