"use strict";
// Plain JS, no build step: every call goes to the same server that served this page. A server started
// with a token asked the browser for it when this page loaded (HTTP Basic: any user name, the token as
// the password); the browser then sends it with every call below, so this script never sees it.
const $ = (id) => document.getElementById(id);
const picked = new Map();          // item_id -> title, in pick order
let searchTimer = null, recsSeq = 0, simSeq = 0;

function headers() {
  return { "Content-Type": "application/json" };
}

async function api(path, body) {
  const res = await fetch(path, body === undefined ? { headers: headers() }
                                                   : { method: "POST", headers: headers(), body: JSON.stringify(body) });
  const data = await res.json().catch(() => ({ detail: res.statusText }));
  if (res.status === 401) throw new Error("401: the server needs its token: reload the page to enter it");
  if (!res.ok) throw new Error(`${res.status}: ${data.detail || res.statusText}`);
  return data;
}

function say(message) { $("status").textContent = message || ""; }

function filters() {
  const text = $("filter").value.trim();
  if (!text) return undefined;
  const at = text.indexOf("=");
  if (at < 1) { say("filter must look like attribute=value"); return null; }
  return { [text.slice(0, at).trim()]: text.slice(at + 1).trim() };
}

function label(item) { return item.title || item.item_id; }

function fillList(list, items, withScore, onPick) {
  list.replaceChildren();
  for (const item of items) {
    const li = document.createElement("li");
    li.dataset.itemId = item.item_id;
    const name = document.createElement("span");
    name.className = "title";
    name.textContent = label(item);
    li.append(name);
    if (withScore && item.score !== null && item.score !== undefined) {
      const s = document.createElement("span");
      s.className = "score";
      s.textContent = Number(item.score).toFixed(3);
      li.append(s);
    }
    if (item.explanation) {             // "because you liked X", under the item (text only: no HTML)
      const why = document.createElement("div");
      why.className = "why";
      why.textContent = item.explanation.sentence;
      why.title = item.explanation.method;
      li.append(why);
    }
    if (onPick) {
      const b = document.createElement("button");
      b.textContent = "+";
      b.title = "add to your picks";
      b.className = "pick";
      b.dataset.itemId = item.item_id;
      b.addEventListener("click", () => onPick(item));
      li.prepend(b, " ");
    }
    list.append(li);
  }
}

function pick(item) {
  if (picked.has(item.item_id)) return;
  picked.set(item.item_id, label(item));
  refresh();
}

function renderPicked() {
  const box = $("picked");
  box.replaceChildren();
  if (!picked.size) { box.innerHTML = '<span class="muted">pick a few items on the left</span>'; return; }
  for (const [id, title] of picked) {
    const chip = document.createElement("span");
    chip.className = "chip";
    chip.dataset.itemId = id;
    chip.textContent = title;
    const x = document.createElement("button");
    x.textContent = "×";
    x.title = "remove";
    x.addEventListener("click", () => { picked.delete(id); refresh(); });
    chip.append(x);
    box.append(chip);
  }
}

async function search() {
  try {
    const data = await api("/items?limit=15&q=" + encodeURIComponent($("search").value));
    fillList($("results"), data.items, false, pick);
    say("");
  } catch (e) { say(e.message); }
}

async function refresh() {
  renderPicked();
  const f = filters();
  if (f === null) return;
  const seq = ++recsSeq;
  try {
    const body = { history: [...picked.keys()], k: 10, explain: true };
    if (f) body.filters = f;
    const data = await api("/recommend", body);
    if (seq !== recsSeq) return;           // a newer request already answered
    fillList($("recs"), data.items, true, pick);
    $("fallback").textContent = data.fallback ? `(${data.fallback})` : "";
    say("");
  } catch (e) { if (seq === recsSeq) say(e.message); }
  const last = [...picked.keys()].pop();
  const sseq = ++simSeq;
  if (!last) { $("similar").replaceChildren(); $("similar-to").textContent = "…"; return; }
  $("similar-to").textContent = picked.get(last);
  try {
    const data = await api(`/items/${encodeURIComponent(last)}/similar?k=10`);
    if (sseq === simSeq) fillList($("similar"), data.items, true, pick);
  } catch (e) {
    if (sseq === simSeq) { $("similar").replaceChildren(); say(e.message); }
  }
}

async function loadInfo() {
  try {
    const info = await api("/info");
    const idx = info.index || {};
    const recall = idx.recall_at_10_vs_exact;
    $("info").textContent = `model ${info.model} · ${info.catalogue.items.toLocaleString()} items · index ${idx.kind}` +
      (recall !== null && recall !== undefined && idx.kind !== "exact" && idx.kind !== "model" ? ` (recall@10 ${recall.toFixed(3)})` : "") +
      (info.catalogue.attributes.length ? ` · filter on: ${info.catalogue.attributes.join(", ")}` : "");
  } catch (e) { $("info").textContent = e.message; }
}

$("search").addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(search, 150); });
$("filter").addEventListener("change", refresh);
loadInfo();
search();
refresh();
