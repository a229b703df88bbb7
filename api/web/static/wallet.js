// @ts-check
// The web market's wallet flow (EIP-1193), the only script of the pages besides the vendored htmx.
// A wallet user never logs in: the page asks the bridge's JSON API for the transaction (X-Wallet-Address),
// the wallet signs and sends it (eth_sendTransaction), the page shows the hash and follows the result.
// Type-checked in CI (.ci/test.d/wallet-types.sh, TypeScript pinned in contracts/package.json): tsc --allowJs --checkJs --noEmit --strict
//   --target es2022 --lib dom,dom.iterable,es2022 api/web/static/wallet.js

/**
 * @typedef {{ request(args: { method: string, params?: unknown[] }): Promise<unknown> }} Eip1193Provider
 * @typedef {{ to: string, data: string, value: string, gas: string, nonce: number, chainId: number,
 *   type: number, from: string, gasPrice?: string, maxFeePerGas?: string, maxPriorityFeePerGas?: string }} UnsignedTx
 */

const WALLET_KEY = "cl_wallet_address"; // the address only (public), never a key

/** @returns {Eip1193Provider | null} */
function provider() {
  const eth = /** @type {{ ethereum?: Eip1193Provider }} */ (/** @type {unknown} */ (window)).ethereum;
  return eth ?? null;
}

/** @returns {string | null} */
function walletAddress() {
  return sessionStorage.getItem(WALLET_KEY);
}

/** @param {string} text */
function say(text) {
  const el = document.getElementById("wallet-result") ?? document.getElementById("wallet-state");
  if (el) el.textContent = text;
}

function showActing() {
  const addr = walletAddress();
  const state = document.getElementById("wallet-state");
  const button = document.getElementById("wallet-connect");
  if (addr && state) {
    state.textContent = "";
    state.append("Acting as wallet ");
    const code = document.createElement("span");
    code.className = "mono";
    code.id = "acting-address";
    code.textContent = addr;
    state.append(code, " — every write is signed in your wallet.");
    if (button) button.textContent = "Disconnect wallet";
  }
}

async function connect() {
  const eth = provider();
  if (!eth) {
    say("No browser wallet found (EIP-1193 window.ethereum).");
    return;
  }
  if (walletAddress()) {
    sessionStorage.removeItem(WALLET_KEY);
    location.reload();
    return;
  }
  const accounts = /** @type {string[]} */ (await eth.request({ method: "eth_requestAccounts" }));
  if (!accounts.length) return;
  sessionStorage.setItem(WALLET_KEY, accounts[0]);
  showActing();
}

/** @param {number | string} n */
function hex(n) {
  return typeof n === "string" ? n : "0x" + n.toString(16);
}

/**
 * The bridge's unsigned transaction in the shape eth_sendTransaction takes.
 * @param {UnsignedTx} tx
 */
function forWallet(tx) {
  /** @type {Record<string, string>} */
  const out = { from: tx.from, to: tx.to, data: tx.data, value: tx.value, gas: tx.gas, nonce: hex(tx.nonce), chainId: hex(tx.chainId) };
  if (tx.maxFeePerGas) out.maxFeePerGas = tx.maxFeePerGas;
  if (tx.maxPriorityFeePerGas) out.maxPriorityFeePerGas = tx.maxPriorityFeePerGas;
  if (tx.gasPrice) out.gasPrice = tx.gasPrice;
  return out;
}

/**
 * Ask the JSON API for the transaction, have the wallet send it. An ERC-20 lease first needs the escrow's
 * allowance: the bridge answers 409 approval_required with the approve transaction; the wallet sends it, and
 * the same request (same Idempotency-Key) is asked again.
 * @param {string} path @param {Record<string, unknown>} body @returns {Promise<string>} the transaction hash
 */
async function walletWrite(path, body) {
  const eth = provider();
  const from = walletAddress();
  if (!eth || !from) throw new Error("connect a wallet first");
  const key = crypto.randomUUID();
  const ask = () => fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Wallet-Address": from, "Idempotency-Key": key },
    body: JSON.stringify(body),
  });
  let resp = await ask();
  let answer = await resp.json();
  if (resp.status === 409 && answer?.detail?.code === "approval_required") {
    say("Approve the token transfer in your wallet first…");
    await eth.request({ method: "eth_sendTransaction", params: [forWallet(answer.detail.details.unsignedTx)] });
    resp = await ask();
    answer = await resp.json();
  }
  if (!resp.ok) throw new Error(answer?.detail?.message ?? `refused (${resp.status})`);
  if (answer.status !== "unsigned" || !answer.unsignedTx) throw new Error("the bridge did not answer a transaction to sign");
  return /** @type {string} */ (await eth.request({ method: "eth_sendTransaction", params: [forWallet(answer.unsignedTx)] }));
}

/** @param {HTMLFormElement} form */
async function onWalletSubmit(form) {
  const action = form.dataset.walletAction ?? "";
  const data = new FormData(form);
  const hours = Number(data.get("hours") ?? "0");
  const leaseMatch = form.action.match(/\/web\/leases\/(\d+)\//);
  let path = "";
  /** @type {Record<string, unknown>} */
  let body = {};
  if (action === "open") {
    path = "/v1/leases";
    body = { offerId: Number(form.dataset.offer), durationS: Math.round(hours * 3600) };
  } else if (leaseMatch) {
    const id = leaseMatch[1];
    path = `/v1/leases/${id}/${action}`;
    if (action === "rate") body = { stars: Number(data.get("stars")) };
    if (action === "top-up") {
      const lease = await (await fetch(`/v1/leases/${id}`)).json();
      body = { amountWei: (BigInt(lease.pricePerGpuSecond) * BigInt(lease.gpuCount) * BigInt(Math.round(hours * 3600))).toString() };
    }
  }
  if (!path) return;
  say("Waiting for your wallet…");
  const hash = await walletWrite(path, body);
  say(`Sent: transaction ${hash}`);
  if (action === "open") {
    const from = walletAddress() ?? "";
    const list = await (await fetch(`/v1/leases?buyer=${from}&limit=500`)).json();
    const newest = list.leases[list.leases.length - 1];
    if (newest) location.assign(`/web/leases/${newest.leaseId}`);
  } else {
    location.reload();
  }
}

/** The account page, for a wallet: its leases as a buyer, from the JSON API. */
async function listWalletLeases() {
  const box = document.getElementById("wallet-leases");
  const from = walletAddress();
  if (!box || !from) return;
  const list = await (await fetch(`/v1/leases?buyer=${from}&limit=500`)).json();
  box.textContent = list.leases.length ? "" : "This wallet has no lease yet.";
  const ul = document.createElement("ul");
  for (const l of /** @type {{ leaseId: number, state: string, offerId: number }[]} */ (list.leases)) {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = `/web/leases/${l.leaseId}`;
    a.textContent = `Lease #${l.leaseId}`;
    li.append(a, ` on offer #${l.offerId}: ${l.state}`);
    ul.append(li);
  }
  box.append(ul);
}

document.addEventListener("DOMContentLoaded", () => {
  showActing();
  listWalletLeases().catch((e) => say(String(e.message ?? e)));
  document.getElementById("wallet-connect")?.addEventListener("click", () => { connect().catch((e) => say(String(e.message ?? e))); });
  for (const form of document.querySelectorAll("form[data-wallet-action]")) {
    form.addEventListener("submit", (/** @type {Event} */ ev) => {
      if (!walletAddress() || document.body.dataset.managed === "1") return; // a managed session posts the form
      ev.preventDefault();
      onWalletSubmit(/** @type {HTMLFormElement} */ (form)).catch((e) => say(`Refused: ${e.message ?? e}`));
    });
  }
});
