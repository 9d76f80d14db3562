// The trader web client: plain ES modules, no build step. REST under /api/v1
// for reads and orders, Socket.IO for the live streams (see gateway/sockets.py
// for the protocol), Keycloak's own login page for signing in (OIDC code flow
// with PKCE S256: signin.js).

import { io } from "/vendor/socket.io.esm.min.js";
import { createChart, CandlestickSeries } from "/vendor/lightweight-charts.mjs";
import { BookSync } from "./book.js";
import { FEE_DOES_NOT_FIT, checkOrder, checkWithdrawal, compare, fixed, isZero, sum,
         shownAmount, withdrawalTerms } from "./decimal.js";
import { signIn } from "./signin.js";

const $ = (selector) => document.querySelector(selector);
const state = { markets: new Map(), market: null, interval: "1m", user: null, book: null,
                socket: null, candles: new Map(), tickers: new Map(),
                decimals: new Map(), available: new Map(), assets: new Map() };  // by asset

// Words for the server's error codes a trader is likely to meet; anything
// else shows the server's own message without its leading code.
const WORDS = {
  INSUFFICIENT_FUNDS: "Not enough available balance for this order.",
  RATE_LIMITED: "Too many requests: wait a moment and try again.",
  UNAUTHENTICATED: "Your session ended: sign in again.",
  TOKEN_EXPIRED: "Your session ended: sign in again.",
  TOKEN_MISSING: "Your session ended: sign in again.",
  USER_FROZEN: "Your account may not trade at the moment: contact support.",
  USER_CLOSED: "Your account is closed.",
  ORDER_NOT_OPEN: "The order is no longer open.",
  UNAVAILABLE: "The exchange is busy or partly down: try again in a moment.",
  TIMEOUT: "The exchange did not answer in time: check your open orders before trying again.",
  NETWORK: "The exchange could not be reached: check your connection and try again.",
  NETWORK_SENT: "The exchange could not be reached, so whether it got the request is unknown: " +
    "check your open orders and withdrawals once the connection is back.",
  STRONG_AUTH_REQUIRED: "Withdrawals need your one-time password: confirm and try again.",
  STRONG_AUTH_STALE: "Your one-time password confirmation is too old: confirm again.",
};
// The refusals of a withdrawal whose words differ from WORDS' (which speak of
// orders). Wallets holds the asset's withdrawal fee on top of the amount
// (GET /api/v1/assets tells it: the check before sending counts it too).
const WITHDRAWAL_WORDS = {
  INSUFFICIENT_FUNDS: FEE_DOES_NOT_FIT,
  WITHDRAWALS_DISABLED: "Withdrawals of this asset are disabled at the moment.",
};
// The engine's reasons for refusing or ending an order (services/matching/
// models.py Reason; the REST refusals carry the same codes), as the end of a
// sentence: "Order 12 was refused: <reason>." A refusal of an order orders
// had accepted reaches the page only as a push (command_rejected).
const REASONS = {
  PRICE_OUT_OF_BAND: "the price is too far from the market's current price",
  POST_ONLY_WOULD_TAKE: "a post-only order would have traded at once, so it was not placed",
  FOK_NOT_FILLABLE: "a fill-or-kill order could not be filled in full at once",
  NO_LIQUIDITY: "there was nothing in the book to trade with",
  MARKET_HALTED: "trading in this market is halted",
  TOO_MANY_OPEN_ORDERS: "you have too many open orders in this market",
  NOTIONAL_BELOW_MIN: "the order is too small for this market (its value is below the minimum)",
  QTY_BELOW_MIN: "the quantity is below this market's minimum",
  QTY_ABOVE_MAX: "the quantity is above this market's maximum",
  INVALID_PRICE: "the price is not valid for this market",
  INVALID_QUANTITY: "the quantity is not valid for this market",
  INSUFFICIENT_FUNDS: "not enough available balance",
  UNKNOWN_ORDER: "the order is no longer open",
  DUPLICATE_ORDER_ID: "an order with the same id was already placed",
  SELF_TRADE: "it would have traded with your own order",
  TIME_IN_FORCE: "nothing more could be traded at once",
};

// An order's status as a trader reads it; the API's word stays in the
// status cell's data-status (tests and CSS read it there). cancel_requested
// is the page's own: the trader asked to cancel (the cancel's answer says
// cancel_requested) and the engine has not ended the order yet.
const STATUS_WORDS = {
  pending: "Sent",
  new: "Open",
  partially_filled: "Partially filled",
  cancel_requested: "Cancelling",
  filled: "Filled",
  cancelled: "Cancelled",
  expired: "Expired",
  rejected: "Refused",
};
// A withdrawal's status as a trader reads it (services/wallets: the state
// machine of functions/check_withdrawal_transition.sql); the API's word stays
// in data-status as for an order. A rejected or cancelled withdrawal's hold
// (the amount and its fee) is released to the available balance.
const WITHDRAWAL_STATUS_WORDS = {
  pending: "Waiting for approval",
  approved: "Approved: being sent",
  sent: "Sent",
  rejected: "Rejected: the amount and its fee are back in your balance",
  cancelled: "Cancelled: the amount and its fee are back in your balance",
};

// A status in ``words``, or a status the page does not know yet in the
// API's word made readable ("partially_filled" -> "Partially filled").
function statusText(words, status) {
  return words[status] ?? `${status[0].toUpperCase()}${status.slice(1).replaceAll("_", " ")}`;
}

function sentence(text) {
  return `${text[0].toUpperCase()}${text.slice(1)}${/[.!?]$/.test(text) ? "" : "."}`;
}

// -- sign-in ------------------------------------------------------------------
const { auth, signedInUser } = await signIn("/");

auth.events.addUserLoaded((user) => {
  // A refreshed token: the connection keeps its private stream.
  state.user = user;
  if (state.socket?.connected) state.socket.emit("authenticate", { token: user.access_token });
});
auth.events.addAccessTokenExpired(() => showWho());

$("#sign-in").addEventListener("click", () => auth.signinRedirect());
// Enabled only now: the button is in the page before this module has read the
// sign-in configuration, and a click before that did nothing (seen in CI).
$("#sign-in").disabled = false;
$("#sign-out").addEventListener("click", () => auth.signoutRedirect({ id_token_hint: state.user?.id_token }));

function showWho() {
  const signedIn = Boolean(state.user);
  $("#sign-in").hidden = signedIn;
  $("#sign-out").hidden = !signedIn;
  $("#who").textContent = signedIn ? state.user.profile.preferred_username : "";
  $("#sign-in-hint").hidden = signedIn;
  for (const el of document.querySelectorAll("#order-form button, #cancel-all, #withdraw-form button")) {
    el.disabled = !signedIn;
  }
}

// -- REST -----------------------------------------------------------------------
class ApiError extends Error {
  // field: the request's field at fault, when the server named one.
  constructor(status, code, message, field) {
    super(message); this.status = status; this.code = code; this.field = field;
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (state.user) headers.Authorization = `Bearer ${state.user.access_token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(`/api/v1${path}`, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (error) {
    // No answer at all (offline, the gateway away): the browser's own words
    // ("Failed to fetch") mean nothing to a trader.
    throw new ApiError(0, method === "GET" ? "NETWORK" : "NETWORK_SENT", error.message);
  }
  const data = response.status === 204 ? {} : await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = data.error || {};
    // Not our API's answer (a proxy's 502 page): no code, and its status text is no message.
    if (!error.code && response.status >= 500) throw new ApiError(response.status, "UNAVAILABLE", "");
    throw new ApiError(response.status, error.code || `HTTP_${response.status}`,
                       error.message || response.statusText, error.field);
  }
  return data;
}

function inWords(error) {
  if (WORDS[error.code]) return WORDS[error.code];
  if (REASONS[error.code]) return sentence(REASONS[error.code]);
  // The server's message leads with its code(s) ("NOTIONAL_BELOW_MIN: ..."): words only.
  const message = String(error.message || "").replace(/^(?:[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+: )+/, "");
  return message ? sentence(message) : "Something went wrong: try again.";
}

// -- rendering helpers ----------------------------------------------------------
function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  if (className) td.className = className;
  return td;
}

function fillTable(selector, rows) {
  const body = $(`${selector} tbody`);
  body.replaceChildren(...rows);
}

// A table drawn again without replacing the rows it already shows (matched
// by data-key): their texts and attributes are updated in place (the rows'
// listeners stay: they act on the key), so a row or a control in it keeps
// the keyboard's focus and a click under way. The lists are read again at
// every order push and a second after it; replaceChildren dropped the focus
// to the page each time.
function keepRows(selector, rows) {
  const body = $(`${selector} tbody`);
  const shown = new Map([...body.children].map((tr) => [tr.dataset.key, tr]));
  const kept = new Set();
  let next = body.firstElementChild;
  for (const fresh of rows) {
    const old = shown.get(fresh.dataset.key);
    let tr = fresh;
    if (old && old.cells.length === fresh.cells.length && !kept.has(old)) {
      tr = old;
      copyAttributes(tr, fresh);
      [...fresh.cells].forEach((td, i) => {
        // The cells with controls stay: they act on the row's key.
        if (td.children.length === 0 && tr.cells[i].textContent !== td.textContent) {
          tr.cells[i].textContent = td.textContent;
        }
        copyAttributes(tr.cells[i], td);  // a status cell's data-status with its words
      });
    }
    kept.add(tr);
    if (tr === next) next = next.nextElementSibling;
    else body.insertBefore(tr, next);
  }
  for (const tr of [...body.children]) if (!kept.has(tr)) tr.remove();
}

// ``fresh``'s attributes on ``kept``, in place (none other left).
function copyAttributes(kept, fresh) {
  for (const { name } of [...kept.attributes]) if (!fresh.hasAttribute(name)) kept.removeAttribute(name);
  for (const { name, value } of fresh.attributes) {
    if (kept.getAttribute(name) !== value) kept.setAttribute(name, value);
  }
}

function row(...cells) {
  const tr = document.createElement("tr");
  tr.append(...cells);
  return tr;
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}

function minute(ms) {
  return clock(ms).slice(0, 5);  // hh:mm of the tape's own clock
}

// A time as the tape's clock writes it, with its date first when it is not
// of today (My trades go back days); the date and time in full as its title,
// on the same 24-hour clock (the locale's own may be 12-hour: "1:05:09 PM"
// over a cell that says 13:05:09).
function timeCell(ms) {
  const at = new Date(ms);
  const today = at.toDateString() === new Date().toDateString();
  const td = cell(today ? clock(ms) : `${at.toLocaleDateString()} ${clock(ms)}`, "time");
  td.title = `${at.toLocaleDateString()} ${clock(ms)}`;
  return td;
}

// -- markets --------------------------------------------------------------------
async function loadMarkets() {
  const { markets } = await api("GET", "/markets");
  for (const m of markets) {
    state.markets.set(m.market, m);
    // An asset's decimals, as the markets trading it give them (the withdrawal form's check).
    state.decimals.set(m.base_asset, m.base_precision);
    state.decimals.set(m.quote_asset, m.quote_precision);
  }
  const select = $("#market-select");
  select.replaceChildren(...markets.map((m) => new Option(m.market, m.market)));
  const assets = [...new Set(markets.flatMap((m) => [m.base_asset, m.quote_asset]))].sort();
  for (const id of ["#deposit-asset", "#withdraw-asset"]) {
    $(id).replaceChildren(...assets.map((a) => new Option(a, a)));
  }
  // Each asset's withdrawal fee, minimum and limit (the registry's), read
  // once like the markets; without them the form checks what it can.
  try {
    const listed = await api("GET", "/assets");
    for (const a of listed.assets) {
      state.assets.set(a.asset, a);
      state.decimals.set(a.asset, a.decimals);
    }
  } catch (error) { console.warn("assets", error.message); }
  showWithdrawalTerms();
  try {
    const { tickers } = await api("GET", "/tickers");
    for (const t of tickers) state.tickers.set(t.market, t);
  } catch (error) { console.warn("tickers", error.message); }
  renderMarketList();
}

// Drawn again at every ticker push: in place (keepRows), so a market row
// the keyboard is on keeps the focus.
function renderMarketList() {
  keepRows("#market-list", [...state.markets.keys()].map((name) => {
    const t = state.tickers.get(name) || {};
    const tr = row(cell(name), cell(t.last ?? "—"), cell(t.change_percent != null ? `${t.change_percent}%` : "—"));
    tr.tabIndex = 0;
    tr.setAttribute("aria-selected", String(name === state.market));
    tr.addEventListener("click", () => selectMarket(name));
    tr.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") selectMarket(name); });
    tr.dataset.key = name;
    return tr;
  }));
}

$("#market-select").addEventListener("change", (e) => selectMarket(e.target.value));

function selectMarket(name) {
  const previous = state.market;
  state.market = name;
  $("#market-select").value = name;
  // A reload, or the return from Keycloak's page (which comes back to "/"),
  // opens the market the trader was on (the start reads both).
  history.replaceState(null, "", `#market=${encodeURIComponent(name)}`);
  sessionStorage.setItem("market", name);
  const m = state.markets.get(name);
  $("#order-rules").textContent =
    `Tick ${m.tick_size} · lot ${m.lot_size} · min ${m.min_quantity} · min value ${m.min_notional} ${m.quote_asset}`;
  renderMarketList();
  if (state.socket) {
    if (previous && previous !== name) {
      for (const channel of ["depth", "trades", "ticker"]) {
        state.socket.emit("unsubscribe", { channel, market: previous });
      }
      state.socket.emit("unsubscribe", { channel: "candles", market: previous, interval: state.interval });
    }
    subscribeMarket();
  }
  tape.clear();
  $("#trades tbody").replaceChildren();
  loadTrades();
  loadCandles();
  refreshPrivate();
}

// -- live streams ---------------------------------------------------------------
function connect() {
  const socket = io({
    transports: ["websocket"],
    // Called at every (re)connection: always the current token.
    auth: (send) => send(state.user ? { token: state.user.access_token } : {}),
    reconnectionDelay: 500,
    reconnectionDelayMax: 5000,
  });
  state.socket = socket;
  let connectedBefore = false;
  socket.on("connect", () => {
    $("#connection").textContent = "live";
    socket.emit("subscribe", { channel: "tickers" });
    if (state.market) subscribeMarket();
    // Trades made while the connection was down were pushed to nobody: the
    // book re-syncs from its snapshot, the tape and the chart are read again.
    if (connectedBefore && state.market) {
      loadTrades();
      loadCandles();
    }
    connectedBefore = true;
    refreshPrivate();
  });
  socket.on("disconnect", (reason) => { $("#connection").textContent = `reconnecting (${reason})`; });
  socket.on("connect_error", (error) => {
    $("#connection").textContent = "offline";
    console.warn("live connection refused:", error.message, error.data);
  });
  socket.on("error", (error) => console.warn("live stream:", error.code, error.message));
  socket.on("depth_snapshot", (data) => { if (state.book?.market === data.market) state.book.snapshot(data); });
  socket.on("depth", (data) => { if (state.book?.market === data.market) state.book.diff(data); });
  socket.on("trades", (batch) => {
    if (batch.market === state.market) addTrades(batch.trades, true);
  });
  socket.on("ticker", (t) => { state.tickers.set(t.market, t); renderMarketList(); });
  socket.on("mini_ticker", (t) => { state.tickers.set(t.market, { ...state.tickers.get(t.market), ...t }); renderMarketList(); });
  socket.on("candle", (data) => {
    if (data.market === state.market && data.interval === state.interval) updateCandle(data.candle);
  });
  socket.on("order", (update) => {
    if (update.event === "order_done") {
      ordersDone.set(update.order_id, { status: update.status, reason: update.reason });
      cancelling.delete(String(update.order_id));
    }
    if (update.event === "command_rejected") engineRefused(update);
    if (update.event === "order_done") orderEnded(update);
    ordersChanged();
  });
  socket.on("fill", (fill) => { fillPushed(fill); refreshFills(); ordersChanged(); });
  // Deposits and withdrawals move balances (wallets announces balances_changed):
  // their statuses are re-read with them.
  socket.on("balances", (data) => {
    renderBalances(data.balances);
    refreshWithdrawals();
    // Settled: the fills' fees are charged now. A read of the fills still in
    // flight may have been answered before the settlement (it showed
    // "(pending)", and no later push would read them again): read again.
    if (feesPending || fillsInFlight > 0) refreshFills();
  });
  socket.on("account", (data) => { $("#connection").textContent = `account ${data.state}`; });
}

function subscribeMarket() {
  const market = state.market;
  state.book = new BookSync(market, (m) => state.socket.emit("depth_snapshot", { market: m }), renderBook);
  $("#book-asks tbody").replaceChildren();
  $("#book-bids tbody").replaceChildren();
  state.socket.emit("subscribe", { channel: "depth", market });
  state.socket.emit("subscribe", { channel: "trades", market });
  state.socket.emit("subscribe", { channel: "ticker", market });
  state.socket.emit("subscribe", { channel: "candles", market, interval: state.interval });
}

function renderBook(book) {
  $("#book-seq").textContent = `#${book.seq}`;
  const asks = book.sorted("sell", 15);
  const bids = book.sorted("buy", 15);
  const max = Math.max(1e-12, ...[...asks, ...bids].map(([, q]) => Number(q))); // display only
  const line = ([price, quantity]) => {
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${Math.round((Number(quantity) / max) * 100)}%`;
    const depth = cell("", "depth-col");
    depth.append(bar);
    return row(cell(price), cell(quantity), depth);
  };
  fillTable("#book-asks", asks.reverse().map(line));
  fillTable("#book-bids", bids.map(line));
  const bestAsk = asks.at(-1)?.[0];
  const bestBid = bids[0]?.[0];
  $("#spread").textContent = bestAsk && bestBid ? `Best bid ${bestBid} · best ask ${bestAsk}` : "";
}

// -- trades and chart -------------------------------------------------------------
// The tape: this market's latest trades by id, shown newest first. A read
// (at a market switch, after a reconnection) and the pushes may overlap and
// arrive in any order: each trade shows once, in its place.
const TAPE = 100;
const tape = new Map();

async function loadTrades() {
  const market = state.market;
  try {
    const { trades } = await api("GET", `/markets/${market}/trades?limit=50`);
    if (market === state.market) addTrades(trades, false);
  } catch (error) { console.warn("trades", error.message); }
}

// The trade ids end with the engine's sequence ("BTC-USDT-1075"): the order
// of trades made in the same millisecond.
function tradeOrder(trade) {
  return [trade.executed_at, Number(String(trade.trade_id).split("-").at(-1)) || 0];
}

function newerFirst(a, b) {
  const [x, y] = [tradeOrder(a), tradeOrder(b)];
  return y[0] - x[0] || y[1] - x[1];
}

function addTrades(trades, live) {
  let added = false;
  for (const trade of trades) {
    const id = String(trade.trade_id);
    if (tape.has(id)) continue;
    tape.set(id, trade);
    added = true;
    if (live) foldTrade(trade);
  }
  if (!added) return;
  const shown = [...tape.values()].sort(newerFirst).slice(0, TAPE);
  if (tape.size > TAPE) {
    tape.clear();
    for (const trade of shown) tape.set(String(trade.trade_id), trade);
  }
  fillTable("#trades", shown.map((trade) => {
    const tr = row(cell(trade.price, trade.taker_side === "sell" ? "sell" : "buy"), cell(trade.quantity),
                   cell(clock(trade.executed_at)));
    tr.dataset.trade = trade.trade_id;
    tr.dataset.at = trade.executed_at;
    return tr;
  }));
}

const chart = createChart($("#chart"), {
  layout: { background: { color: "#182029" }, textColor: "#e8edf2" },
  grid: { vertLines: { color: "#2c3846" }, horzLines: { color: "#2c3846" } },
  timeScale: { timeVisible: true, secondsVisible: false },
  autoSize: true,
});
const series = chart.addSeries(CandlestickSeries, {
  upColor: "#4fd18b", downColor: "#ff7b7b", borderVisible: false,
  wickUpColor: "#4fd18b", wickDownColor: "#ff7b7b",
});
const INTERVAL_MS = { "1m": 60e3, "5m": 300e3, "15m": 900e3, "1h": 3600e3, "4h": 14400e3, "1d": 86400e3 };

// lightweight-charts draws its time axis in UTC; the tape's clock is the
// trader's own. The chart is given local wall-clock times (its documented
// way to show a time zone), so both read alike.
function chartTime(ms) {
  return Math.floor((ms - new Date(ms).getTimezoneOffset() * 60e3) / 1000);
}

function bar(c) {
  // lightweight-charts draws numbers: display only, never used for money.
  return { time: chartTime(c.open_time), open: Number(c.open), high: Number(c.high),
           low: Number(c.low), close: Number(c.close) };
}

async function loadCandles() {
  const { market, interval } = state;
  try {
    const { candles } = await api("GET", `/markets/${market}/candles?interval=${interval}&limit=300`);
    if (market !== state.market || interval !== state.interval) return;  // switched meanwhile
    state.candles = new Map(candles.map((c) => [c.open_time, c]));
    series.setData(candles.map(bar));
    showLastCandle();
  } catch (error) {
    series.setData([]);
    console.warn("candles", error.message);
  }
}

function updateCandle(c) {
  const candle = Array.isArray(c)
    ? { open_time: c[0], open: c[1], high: c[2], low: c[3], close: c[4], volume: c[5] } : c;
  const last = [...state.candles.keys()].at(-1);
  if (last !== undefined && candle.open_time < last) return;
  state.candles.set(candle.open_time, candle);
  series.update(bar(candle));
  showLastCandle();
}

function foldTrade(trade) {
  // The open candle moves with each trade at once; the server's candle event corrects it.
  const step = INTERVAL_MS[state.interval];
  const open = Math.floor(trade.executed_at / step) * step;
  const current = state.candles.get(open);
  const p = trade.price;
  const candle = current
    ? { ...current, high: compare(p, current.high) > 0 ? p : current.high,
        low: compare(p, current.low) < 0 ? p : current.low, close: p }
    : { open_time: open, open: p, high: p, low: p, close: p };
  updateCandle(candle);
}

function showLastCandle() {
  const last = [...state.candles.values()].at(-1);
  $("#last-candle").textContent = last
    ? `${state.interval} candle ${minute(last.open_time)}: open ${last.open} high ${last.high} low ${last.low} close ${last.close}`
    : "No trades in this interval yet.";
}

for (const button of document.querySelectorAll("#intervals button")) {
  button.addEventListener("click", () => {
    const previous = state.interval;
    state.interval = button.dataset.interval;
    for (const b of document.querySelectorAll("#intervals button")) {
      b.setAttribute("aria-pressed", String(b === button));
    }
    if (state.socket && state.market) {
      state.socket.emit("unsubscribe", { channel: "candles", market: state.market, interval: previous });
      state.socket.emit("subscribe", { channel: "candles", market: state.market, interval: state.interval });
    }
    loadCandles();
  });
}

// -- private: orders, fills, balances, wallet -------------------------------------------
function refreshPrivate() {
  if (!state.user || !state.market) return;
  refreshOrders();
  refreshFills();
  refreshBalances();
  refreshWithdrawals();
}

// The order pushes come from the engine's events; orders records the same
// events in its own consumer, which can commit after the push reached us, so
// a read made at the push may still show a filled or cancelled order as open.
// Orders the push said are done are left out of the open list; the lists are
// read again RE_READ_MS after the last order push (a partial fill's filled
// quantity catches up then), and again while orders still lists an order
// the push said is done (at most RE_READS times: the history catches up).
//
// Fills are pushed the same way, ahead of orders' and marketdata's records:
// until a read shows them, an open order shows the filled quantity its
// pushed fills add up to (and "partially_filled"), the lists are read again
// as for a done order, and the fills table shows the pushed fills it lacks.
const ordersDone = new Map();    // order id -> its end's {status, reason}, as pushed
const pushedFills = new Map();   // order id -> Map(trade id -> quantity): a fill pushed twice counts once
const recentFills = [];          // the fills pushed lately, newest first
const RECENT_FILLS = 50;
const RE_READ_MS = 1000;
const RE_READS = 30;
let reReadTimer = null;
let reReadsLeft = 0;

function fillPushed(fill) {
  if (pushedFills.size > 1000) pushedFills.clear();  // bounded; the re-reads correct the list
  if (!pushedFills.has(fill.order_id)) pushedFills.set(fill.order_id, new Map());
  const fills = pushedFills.get(fill.order_id);
  if (fills.has(String(fill.trade_id))) return;  // pushed again
  fills.set(String(fill.trade_id), fill.quantity);
  recentFills.unshift(fill);
  recentFills.length = Math.min(recentFills.length, RECENT_FILLS);
}

// An open order as the pushes know it: the read's, or a filled quantity the
// read has not caught up with yet (then ``behind``).
function withPushedFills(order) {
  const pushed = pushedFills.get(order.order_id);
  if (!pushed) return { ...order, behind: false };
  const filled = sum([...pushed.values()]);
  if (compare(filled, order.filled_quantity ?? "0") <= 0) return { ...order, behind: false };
  return { ...order, filled_quantity: filled, behind: true,
           status: order.status === "new" ? "partially_filled" : order.status };
}

// A history row's {status, reason} as the pushes know them (the read may
// lag): an end pushed, or partially_filled from pushed fills; a final status
// is the read's.
function statusAsPushed(order) {
  if (order.status !== "new" && order.status !== "partially_filled") return order;
  return ordersDone.get(order.order_id) ?? { status: withPushedFills(order).status, reason: null };
}

function ordersChanged() {
  reReadsLeft = RE_READS;
  refreshOrders();
  reReadLater();
}

function reReadLater() {
  clearTimeout(reReadTimer);
  reReadTimer = setTimeout(() => { reReadsLeft -= 1; refreshOrders(); }, RE_READ_MS);
}

// An order's numbers as the book and the tape write them: prices with the
// market's tick decimals, quantities with its lot decimals (orders answers
// "30000" and "0.001" where the book shows "30000.00" and "0.0010").
function priceText(order) {
  const m = state.markets.get(order.market);
  if (order.price == null) return "market";
  return m ? fixed(order.price, m.tick_size) : order.price;
}

function quantityText(market, quantity) {
  const m = state.markets.get(market);
  return m ? fixed(quantity, m.lot_size) : quantity;
}

// A market buy for a quote amount has no quantity: its amount, in the quote asset.
function amountText(order) {
  if (order.quantity != null) return quantityText(order.market, order.quantity);
  const m = state.markets.get(order.market);
  return m ? `${order.quote_amount} ${m.quote_asset}` : order.quote_amount;
}

// The orders the trader asked to cancel (ids as strings) until the engine
// ends them (order_done) or refuses the cancel: "Cancelling" meanwhile, in
// the open list from the click on (the history from its next read).
const cancelling = new Set();
let openOrders = [];  // the open list as last read, drawn again at a cancel's click

// A status cell: the status in words, with the engine's reason for a refusal
// or an end where it gave one (REASONS), the API's word in data-status.
function statusCell(order) {
  const open = order.status === "new" || order.status === "partially_filled";
  const status = open && cancelling.has(String(order.order_id)) ? "cancel_requested" : order.status;
  const words = statusText(STATUS_WORDS, status);
  const td = cell(REASONS[order.reason] ? `${words}: ${REASONS[order.reason]}` : words, "status");
  td.dataset.status = status;
  return td;
}

async function refreshOrders() {
  if (!state.user) return;
  try {
    const { orders: listed } = await api("GET", `/orders?market=${state.market}`);
    const orders = listed.filter((o) => !ordersDone.has(o.order_id)).map(withPushedFills);
    const behind = orders.some((o) => o.behind);
    if ((orders.length < listed.length || behind) && reReadsLeft > 0) reReadLater();
    if (ordersDone.size > 1000) ordersDone.clear();  // bounded; the re-reads correct the list
    openOrders = orders;
    drawOpenOrders();
    const history = await api("GET", "/orders/history?limit=50");
    fillTable("#order-history", history.orders.map((o) => row(
      cell(String(o.order_id), "id"), cell(o.market), cell(o.side, o.side), cell(priceText(o)),
      cell(amountText(o)), statusCell({ ...o, status: statusAsPushed(o).status, reason: reasonOf(o) }),
      timeCell(o.created_at))));  // when it was placed, as My trades' time
  } catch (error) { console.warn("orders", error.message); }
}

function drawOpenOrders() {
  keepRows("#open-orders", openOrders.map((o) => {
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.textContent = "Cancel";
    cancel.setAttribute("aria-label", `Cancel order ${o.order_id}`);
    cancel.addEventListener("click", () => cancelOrder(o.order_id));
    const actions = cell("");
    actions.append(cancel);
    const tr = row(cell(String(o.order_id)), cell(o.side, o.side), cell(priceText(o)),
                   cell(amountText(o)), cell(quantityText(o.market, o.filled_quantity)),
                   statusCell(o), actions);
    tr.dataset.order = o.order_id;
    tr.dataset.key = o.order_id;
    return tr;
  }));
}

let feesPending = false;  // a fill shown without its settled fee
// Reads of the fills: started, the latest shown, in flight. A read answered
// after a later one was shown is dropped (it may predate a settlement).
let fillsAsked = 0;
let fillsShown = 0;
let fillsInFlight = 0;

function feeText(fill) {
  if (!fill.fee) return "…";
  const text = `${fill.fee.amount} ${fill.fee.asset}`;
  return fill.fee.settled ? text : `${text} (pending)`;
}

async function refreshFills() {
  if (!state.user) return;
  const asked = ++fillsAsked;
  fillsInFlight += 1;
  try {
    const { fills: read } = await api("GET", `/fills?market=${state.market}`);
    if (asked < fillsShown) return;
    fillsShown = asked;
    const key = (f) => `${f.trade_id}:${f.role}`;
    const known = new Set(read.map(key));
    const pushed = recentFills.filter((f) => f.market === state.market && !known.has(key(f)));
    // Newest first, as the tape: the pushed fills the read lacks in their place.
    const fills = [...pushed, ...read].sort(newerFirst);
    // A fill pushed has no fee yet, and a read's fee is "pending" until
    // wallets settles it: read again at the balances push that follows it.
    feesPending = fills.some((f) => !f.fee || !f.fee.settled);
    fillTable("#fills", fills.map((f) => {
      const tr = row(cell(f.market, "market"), cell(f.side, f.side), cell(priceText(f)),
                     cell(quantityText(f.market, f.quantity)), cell(f.role), cell(feeText(f)),
                     timeCell(f.executed_at));
      tr.dataset.trade = f.trade_id;
      tr.dataset.at = f.executed_at;
      return tr;
    }));
  } catch (error) {
    console.warn("fills", error.message);
  } finally {
    fillsInFlight -= 1;
  }
}

async function refreshBalances() {
  if (!state.user) return;
  try {
    const { balances } = await api("GET", "/balances");
    renderBalances(balances);
  } catch (error) { console.warn("balances", error.message); }
}

// Wallets keeps an account of every listed asset; one that no listed market
// trades (listed ahead of its market, or its market delisted) is shown only
// when the trader holds some of it.
function renderBalances(balances) {
  state.available = new Map(balances.map((b) => [b.asset, b.available]));
  const traded = new Set([...state.markets.values()].flatMap((m) => [m.base_asset, m.quote_asset]));
  const shown = balances.filter((b) => traded.has(b.asset) || !isZero(b.available) || !isZero(b.locked));
  fillTable("#balances", shown.map((b) => {
    const tr = row(cell(b.asset), cell(shownAmount(b.available)), cell(shownAmount(b.locked)));
    tr.dataset.asset = b.asset;
    return tr;
  }));
}

// A cancel shows "Cancelling" at the click; refused, the orders show their
// status again.
async function cancelWith(ids, request, sent) {
  if (cancelling.size > 1000) cancelling.clear();  // bounded: the ended ones leave at their push
  for (const id of ids) cancelling.add(id);
  drawOpenOrders();
  try {
    await request();
    $("#order-status").textContent = sent;
  } catch (error) {
    for (const id of ids) cancelling.delete(id);
    drawOpenOrders();
    $("#order-error").textContent = inWords(error);
  }
  refreshOrders();
}

function cancelOrder(orderId) {
  return cancelWith([String(orderId)], () => api("DELETE", `/orders/${orderId}`),
                     `Cancel of order ${orderId} sent.`);
}

$("#cancel-all").addEventListener("click", () => cancelWith(
  openOrders.filter((o) => o.market === state.market).map((o) => String(o.order_id)),
  () => api("DELETE", `/orders?market=${state.market}`),
  "Cancel of every open order in this market sent."));

$("#order-type").addEventListener("change", (e) => {
  const limit = e.target.value === "limit";
  $("#order-price").disabled = !limit;
  $("#order-post-only").disabled = !limit;
});

// The engine's refusal of a command orders had accepted (the REST answer
// said "new"): the order ends there, and the trader is told why. The push
// may come before or after the REST answer (see the submit handler).
const refusals = new Map();  // order id -> the engine's reason
const REFUSED = { place_order: "was refused", cancel_order: "could not be cancelled",
                  amend_order: "could not be changed" };

function engineRefused(update) {
  const id = String(update.order_id);
  if (update.command === "place_order") {
    if (refusals.size > 1000) refusals.clear();  // bounded: only the latest matter here
    refusals.set(id, update.reason);
    ordersDone.set(update.order_id, { status: "rejected", reason: update.reason });
  }
  if (update.command === "cancel_order") {
    cancelling.delete(id);
    drawOpenOrders();
  }
  const reason = REASONS[update.reason] || update.reason;
  $("#order-error").textContent =
    `Order ${id} ${REFUSED[update.command] || "was refused"}: ${reason}.`;
  if ($("#order-status").textContent.startsWith(`Order ${id} `)) $("#order-status").textContent = "";
}

// The status line follows the order it names to its end: an order that
// traded at once said "accepted (new)" for good. Its end may be pushed
// before the REST answer (see the submit handler).
const ended = new Map();  // order id -> the status line for its end
function orderEnded(update) {
  const id = String(update.order_id);
  let text = `Order ${id} ${update.status}.`;
  if (update.status === "expired") {
    // An IOC/FOK or market order with nothing more to trade at once.
    const none = isZero(update.filled_quantity ?? "0");
    text = `Order ${id} ended: ${none ? "nothing" : "only part of it"} could be traded at once.`;
  }
  if (ended.size > 1000) ended.clear();  // bounded: only the latest matter here
  ended.set(id, text);
  const line = $("#order-status").textContent;
  if (update.status === "expired" || line.startsWith(`Order ${id} `)) $("#order-status").textContent = text;
}

// Why the engine refused or ended a history row's order: the read's reason,
// else the one pushed (the read may lag).
function reasonOf(order) {
  return order.reason || statusAsPushed(order).reason || refusals.get(String(order.order_id));
}

// A form's button is unusable while its request is in flight: a double
// click (or Enter pressed twice) placed the order, or requested the
// withdrawal, twice. Disabled before the first await, so the second click
// of a double click meets a disabled button (which submits nothing).
async function inFlight(button, request) {
  button.disabled = true;
  try {
    await request();
  } finally {
    button.disabled = !state.user;
  }
}

$("#order-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("#order-error").textContent = "";
  $("#order-status").textContent = "";
  const form = new FormData(event.target);
  const type = form.get("type");
  const order = { market: state.market, side: form.get("side"), type,
                  quantity: String(form.get("quantity") || "").trim() };
  if (type === "limit") {
    order.price = String(form.get("price") || "").trim();
    order.time_in_force = form.get("time_in_force");
    order.post_only = form.get("post_only") === "on";
  } else if (form.get("time_in_force") !== "GTC") {
    order.time_in_force = form.get("time_in_force");
  }
  const problem = checkOrder(state.markets.get(state.market), order);
  for (const id of ["#order-price", "#order-quantity"]) $(id).removeAttribute("aria-invalid");
  if (problem) {
    $(`#order-${problem[0]}`).setAttribute("aria-invalid", "true");
    $(`#order-${problem[0]}`).focus();
    $("#order-error").textContent = problem[1];
    return;
  }
  await inFlight($("#order-submit"), async () => {
    try {
      const placed = await api("POST", "/orders", order);
      // The engine's refusal or the order's end may have been pushed already: they say the last word.
      const id = String(placed.order_id);
      if (ended.has(id)) $("#order-status").textContent = ended.get(id);
      else if (!refusals.has(id)) {
        $("#order-status").textContent =
          `Order ${id} accepted (${(STATUS_WORDS[placed.status] ?? placed.status).toLowerCase()}).`;
      }
    } catch (error) {
      $("#order-error").textContent = inWords(error);
    }
  });
  refreshOrders();
});

$("#deposit-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const found = await api("GET", `/deposit-addresses/${$("#deposit-asset").value}`);
    $("#deposit-address").textContent = found.address;
  } catch (error) { $("#deposit-address").textContent = inWords(error); }
});

$("#withdraw-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("#withdraw-error").textContent = "";
  $("#step-up").hidden = true;
  const body = { asset: $("#withdraw-asset").value, address: $("#withdraw-address").value.trim(),
                 amount: $("#withdraw-amount").value.trim(), ref: crypto.randomUUID() };
  const problems = checkWithdrawal(body, withdrawalRules(body.asset), state.available.get(body.asset));
  showProblems("withdraw", ["asset", "address", "amount"], problems);
  if (problems.length) return;  // nothing sent
  await inFlight($("#withdraw-form button[type=submit]"), async () => {
    try {
      const w = await api("POST", "/withdrawals", body);
      const status = statusText(WITHDRAWAL_STATUS_WORDS, w.status ?? "pending").toLowerCase();
      $("#withdraw-status").textContent = `Withdrawal ${w.withdrawal_id ?? ""} requested: ${status}.`;
      refreshWithdrawals();
    } catch (error) {
      const words = WITHDRAWAL_WORDS[error.code] ?? inWords(error);
      // An address the server refused (the gateway's grammar, or wallets'
      // check for the asset's chain) is said under the address, as the
      // page's own problems are.
      if (error.field === "address" || error.code === "INVALID_ADDRESS") {
        showProblems("withdraw", ["asset", "address", "amount"], [["address", words]]);
      } else {
        $("#withdraw-error").textContent = words;
      }
      if (String(error.code).startsWith("STRONG_AUTH")) $("#step-up").hidden = false;
    }
  });
});

// A form's problems found before sending, each under its field (which is
// marked aria-invalid and described by it), the first field focused; the
// other fields' problems cleared. A field's problem goes when it is edited.
function showProblems(form, fields, problems) {
  for (const field of fields) {
    const problem = problems.find(([name]) => name === field);
    const input = $(`#${form}-${field}`);
    if (problem) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
    $(`#${form}-${field}-error`).textContent = problem ? problem[1] : "";
  }
  if (problems.length) $(`#${form}-${problems[0][0]}`).focus();
}

for (const field of ["asset", "address", "amount"]) {
  $(`#withdraw-${field}`).addEventListener("input", () => {
    $(`#withdraw-${field}`).removeAttribute("aria-invalid");
    $(`#withdraw-${field}-error`).textContent = "";
    showWithdrawalTerms();
  });
}

// What the form knows of an asset's withdrawals: its GET /api/v1/assets
// entry, else the markets' decimals alone.
function withdrawalRules(asset) {
  return state.assets.get(asset) ?? { decimals: state.decimals.get(asset) };
}

function showWithdrawalTerms() {
  const asset = $("#withdraw-asset").value;
  $("#withdraw-terms").textContent =
    withdrawalTerms(asset, state.assets.get(asset), $("#withdraw-amount").value.trim());
}

// Step-up: sign in again on Keycloak's page asking for the one-time password
// (acr_values/prompt make Keycloak re-authenticate; the realm's TOTP applies).
$("#step-up").addEventListener("click", () => auth.signinRedirect({ prompt: "login", max_age: 0 }));

// An operator's approval moves no money, so no balances push tells of it
// (every other step does): while a withdrawal waits for approval the list
// is read again every WITHDRAWALS_REREAD_MS, one timer at a time.
const WITHDRAWALS_REREAD_MS = 15_000;
let withdrawalsReRead = null;

async function refreshWithdrawals() {
  if (!state.user) return;
  clearTimeout(withdrawalsReRead);
  withdrawalsReRead = null;
  try {
    const { withdrawals } = await api("GET", "/withdrawals");
    if (withdrawals.some((w) => w.status === "pending")) {
      clearTimeout(withdrawalsReRead);  // a read that overtook this one set it
      withdrawalsReRead = setTimeout(refreshWithdrawals, WITHDRAWALS_REREAD_MS);
    }
    $("#withdrawals").replaceChildren(...withdrawals.map((w) => {
      const li = document.createElement("li");
      const status = document.createElement("span");
      status.className = "status";
      status.textContent = statusText(WITHDRAWAL_STATUS_WORDS, w.status);
      status.dataset.status = w.status;
      li.append(`${shownAmount(w.amount)} ${w.asset} → ${w.address}: `, status);
      li.dataset.withdrawal = w.withdrawal_id;
      return li;
    }));
  } catch (error) { console.warn("withdrawals", error.message); }
}

// -- start ------------------------------------------------------------------------
state.user = await signedInUser();
showWho();
await loadMarkets();
connect();
const first = new URLSearchParams(location.hash.slice(1)).get("market") ?? sessionStorage.getItem("market");
selectMarket(state.markets.has(first) ? first : [...state.markets.keys()][0]);
