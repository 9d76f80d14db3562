// Exact decimal arithmetic on strings for the order ticket: amounts never
// become floats. A value is parsed into a BigInt count of 10^-scale units;
// anything with more decimals than the scale, a sign, an exponent or other
// characters is refused, never rounded.

const DECIMAL = /^(\d{1,20})(?:\.(\d{1,18}))?$/;

export function scaleOf(step) {
  const m = DECIMAL.exec(step);
  return m && m[2] ? m[2].length : 0;
}

// "12.5" at scale 2 -> 1250n; null when not a plain decimal or finer than scale.
export function toUnits(text, scale) {
  const m = DECIMAL.exec(String(text).trim());
  if (!m) return null;
  const frac = (m[2] || "").replace(/0+$/, "");
  if (frac.length > scale) return null;
  return BigInt(m[1] + frac.padEnd(scale, "0"));
}

export function fromUnits(units, scale) {
  const negative = units < 0n;
  let digits = (negative ? -units : units).toString().padStart(scale + 1, "0");
  const text = scale ? `${digits.slice(0, -scale)}.${digits.slice(-scale)}` : digits;
  return negative ? `-${text}` : text;
}

// An amount as a balance shows it: the server's own digits, with the zeros
// that end it past the 8th decimal left out (ETH has 18 decimals: its empty
// balance read "0.000000000000000000"). Never rounds: every digit that is not
// a trailing zero stays, so the value is the same.
export function shownAmount(text, keep = 8) {
  const [whole, fraction = ""] = String(text).split(".");
  if (fraction.length <= keep) return String(text);
  const digits = fraction.replace(/0+$/, "");
  return `${whole}.${digits.length >= keep ? digits : fraction.slice(0, keep)}`;
}

// Is value an integer multiple of step (both decimal strings)?
export function onGrid(value, step) {
  const scale = Math.max(scaleOf(value.includes(".") ? value : "0"), scaleOf(step));
  const v = toUnits(value, scale);
  const s = toUnits(step, scale);
  return v !== null && s !== null && s > 0n && v % s === 0n;
}

export function compare(a, b) {
  const scale = Math.max(scaleOf(a), scaleOf(b));
  const x = toUnits(a, scale);
  const y = toUnits(b, scale);
  return x < y ? -1 : x > y ? 1 : 0;
}

export function multiply(a, b) {
  const sa = scaleOf(a);
  const sb = scaleOf(b);
  return fromUnits(toUnits(a, sa) * toUnits(b, sb), sa + sb);
}

// The exact sum of decimal strings (at the finest scale among them); a value
// that is not a plain decimal is left out.
export function sum(values) {
  const scale = Math.max(0, ...values.map((v) => scaleOf(String(v))));
  const units = values.map((v) => toUnits(v, scale)).filter((u) => u !== null);
  return fromUnits(units.reduce((total, u) => total + u, 0n), scale);
}

// ``value`` written with ``step``'s number of decimals (the market's tick or
// lot: "30000" at 0.01 -> "30000.00", "0.001" at 0.0001 -> "0.0010"), so
// every amount of a market reads alike. Only zeros are added or dropped: a
// value with more significant decimals than the step, or not a plain
// decimal, is returned as it is (never rounded).
export function fixed(value, step) {
  const text = String(value ?? "");
  const scale = scaleOf(step);
  const units = toUnits(text, scale);
  return units === null ? text : fromUnits(units, scale);
}

export function isZero(text) {
  return /^0*(\.0*)?$/.test(String(text));
}

// What is wrong with ``text`` as an amount the API takes (a plain decimal
// above zero, at most 18 decimals), in words for the field ``name``; null
// when nothing is.
function notPositive(text, name) {
  if (toUnits(text, 18) === null) return `The ${name} must be a plain positive number.`;
  if (isZero(text)) return `The ${name} must be above zero.`;
  return null;
}

// The order ticket's rules for one market; returns [field, message] or null.
export function checkOrder(market, order) {
  const { type, price, quantity } = order;
  if (type === "limit") {
    if (!price) return ["price", "Enter a price."];
    const wrong = notPositive(price, "price");
    if (wrong) return ["price", wrong];
    if (!onGrid(price, market.tick_size)) {
      return ["price", `The price must be a multiple of the tick size ${market.tick_size}.`];
    }
  }
  if (!quantity) return ["quantity", "Enter a quantity."];
  const wrong = notPositive(quantity, "quantity");
  if (wrong) return ["quantity", wrong];
  if (!onGrid(quantity, market.lot_size)) {
    return ["quantity", `The quantity must be a multiple of the lot size ${market.lot_size}.`];
  }
  if (compare(quantity, market.min_quantity) < 0) {
    return ["quantity", `The quantity must be at least ${market.min_quantity}.`];
  }
  if (compare(quantity, market.max_quantity) > 0) {
    return ["quantity", `The quantity must be at most ${market.max_quantity}.`];
  }
  if (type === "limit" && compare(multiply(price, quantity), market.min_notional) < 0) {
    return ["quantity", `The order's value (price × quantity) must be at least ${market.min_notional} ${market.quote_asset}.`];
  }
  return null;
}

// The words for a withdrawal whose amount fits the available balance but
// not with the fee held on top of it (said before sending, and for the
// server's INSUFFICIENT_FUNDS refusal of a withdrawal).
export const FEE_DOES_NOT_FIT = "Not enough available balance for this amount plus the withdrawal fee.";

// a - b, exact (both plain decimals); may be negative.
export function subtract(a, b) {
  const scale = Math.max(scaleOf(a), scaleOf(b));
  return fromUnits(toUnits(a, scale) - toUnits(b, scale), scale);
}

// The withdrawal form's rules as far as the page knows them: every
// [field, message] wrong, none when the request may go. ``rules`` is the
// asset's entry of GET /api/v1/assets (decimals, withdraw_enabled,
// withdrawal_fee held on top of the amount, min_withdrawal,
// daily_withdrawal_limit), or only ``{ decimals }`` (the markets') while
// that list is unknown; ``available`` the asset's available balance; either
// undefined while unknown. The server stays the authority (the address's
// form, what was withdrawn in the last 24 hours, the one-time password).
export function checkWithdrawal({ asset, address, amount }, rules, available) {
  const { decimals, withdraw_enabled: enabled, withdrawal_fee: fee,
          min_withdrawal: minimum, daily_withdrawal_limit: limit } = rules ?? {};
  if (enabled === false) return [["asset", `Withdrawals of ${asset} are disabled at the moment.`]];
  const problems = [];
  if (!address) problems.push(["address", "Enter the address to send to."]);
  const wrong = amount ? notPositive(amount, "amount") : "Enter an amount.";
  if (wrong) {
    problems.push(["amount", wrong]);
  } else if (decimals !== undefined && toUnits(amount, decimals) === null) {
    problems.push(["amount", decimals === 0 ? `${asset} amounts are whole numbers.`
      : `${asset} amounts have at most ${decimals} decimals.`]);
  } else if (minimum !== undefined && compare(amount, minimum) < 0) {
    problems.push(["amount", `The minimum withdrawal is ${minimum} ${asset}.`]);
  } else if (limit !== undefined && compare(amount, limit) > 0) {
    problems.push(["amount", `The most you may withdraw in 24 hours is ${limit} ${asset}.`]);
  } else if (available !== undefined && compare(amount, available) > 0) {
    problems.push(["amount", `The amount is more than your available ${available} ${asset}.`]);
  } else if (available !== undefined && fee !== undefined &&
             compare(sum([amount, fee]), available) > 0) {
    const most = subtract(available, fee);
    const fits = !most.startsWith("-") && (minimum === undefined || compare(most, minimum) >= 0);
    problems.push(["amount", `${FEE_DOES_NOT_FIT} The fee is ${fee} ${asset}` +
      (fits ? `: you can withdraw at most ${most} ${asset}.` : ".")]);
  }
  return problems;
}

// The withdrawal form's line under the amount: the asset's fee and minimum
// and, for a plain amount, what leaves the balance (the amount plus the
// fee; the address receives the amount). Empty while the asset's rules are unknown.
export function withdrawalTerms(asset, rules, amount) {
  if (!rules || rules.withdrawal_fee === undefined) return "";
  if (rules.withdraw_enabled === false) return `Withdrawals of ${asset} are disabled at the moment.`;
  const { withdrawal_fee: fee, min_withdrawal: minimum } = rules;
  let text = `Fee ${fee} ${asset} · minimum ${minimum} ${asset}`;
  if (amount && toUnits(amount, rules.decimals) !== null && !isZero(amount)) {
    text += ` · you pay ${sum([amount, fee])} ${asset}`;
  }
  return text;
}
