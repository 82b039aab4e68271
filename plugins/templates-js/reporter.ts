// A reporter template: one row, the number of customers. Page through the store with
// `queryCustomers` (or let the host summarize with `aggregate`) and return typed columns and rows.
import type { Report } from 'rapport:plugin/types@0.1.0';
import { queryCustomers } from 'rapport:plugin/store@0.1.0';
import { guard } from '../sdk/rapport.js';

export const run = guard((_params: string): Report => {
  let count = 0;
  let cursor: string | null = null;
  do {
    const page = queryCustomers('', cursor, 500);
    count += page.items.length;
    cursor = page.nextCursor ?? null;
  } while (cursor !== null);
  return {
    title: 'Customers',
    columns: [{ name: 'customers', type: 'integer' }],
    rows: [[{ tag: 'integer', val: count }]],
    chart: null,
  };
});
