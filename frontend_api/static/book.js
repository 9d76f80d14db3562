// A market's order book kept from a snapshot and the diffs after it.
// A diff {first_seq, last_seq, changes} applies when first_seq <= held + 1 <=
// last_seq; one with last_seq <= held was already applied (skipped); any
// other is a gap: the book asks for a new snapshot and buffers diffs until it
// arrives.

import { compare, isZero } from "./decimal.js";

export class BookSync {
  constructor(market, requestSnapshot, onChange) {
    this.market = market;
    this.requestSnapshot = requestSnapshot;
    this.onChange = onChange;
    this.seq = null;
    this.levels = { buy: new Map(), sell: new Map() };
    this.pending = [];
    this.resyncs = 0;
  }

  snapshot(data) {
    this.seq = data.seq;
    this.levels = { buy: new Map(data.buy), sell: new Map(data.sell) };
    const pending = this.pending;
    this.pending = [];
    for (const diff of pending) {
      if (!this.diff(diff)) return;
    }
    this.onChange(this);
  }

  // false when the diff revealed a gap (a new snapshot was asked for).
  diff(data) {
    if (this.seq === null) {
      this.pending.push(data);
      return false;
    }
    if (data.last_seq <= this.seq) return true;
    if (data.first_seq > this.seq + 1) {
      this.resync([data]);
      return false;
    }
    for (const { side, price, quantity } of data.changes) {
      if (isZero(quantity)) this.levels[side].delete(price);
      else this.levels[side].set(price, quantity);
    }
    this.seq = data.last_seq;
    this.onChange(this);
    return true;
  }

  resync(pending = []) {
    this.seq = null;
    this.pending = pending;
    this.resyncs += 1;
    this.requestSnapshot(this.market);
  }

  // Best first: bids high to low, asks low to high.
  sorted(side, limit = 20) {
    const rows = [...this.levels[side].entries()];
    rows.sort((a, b) => (side === "buy" ? compare(b[0], a[0]) : compare(a[0], b[0])));
    return rows.slice(0, limit);
  }
}
