// nbbuild review: the page. Plain JavaScript, no build step.
// State comes from GET /api/state (or window.NBBUILD_STATE in a static
// export); actions POST JSON with the page's CSRF token; server-sent
// events say when to read the state again.
"use strict";

const EXPORTED = typeof window.NBBUILD_STATE === "object";
const CSRF = (document.querySelector('meta[name="nbbuild-csrf"]') || {}).content || "";
let S = null;            // the state
let cur = null;          // current task id
let cursor = 1;          // selected candidate (1-based)
let busyMsg = "";
const $ = (sel, el = document) => el.querySelector(sel);

function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(e.dataset, v);
    else if (k === "style") e.style.cssText = v; // CSSOM: allowed by the CSP, unlike a style attribute
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined && k !== false) e.append(k.nodeType ? k : document.createTextNode(String(k)));
  return e;
}

const credits = (c) => (Math.abs(c - Math.round(c)) < 1e-9 ? String(Math.round(c)) : c.toFixed(1));
// An amount in its route's unit: G-Labs credits, or US dollars (--provider google).
const money = (c, unit, short) => (unit === "usd" ? `$${c.toFixed(2)}` : `${credits(c)} ${short ? "cr" : "credits"}`);
const plural = (n, w) => `${n} ${w}${n === 1 ? "" : "s"}`;
const canAct = () => S && !S.read_only && !EXPORTED;

function status(msg, kind = "") {
  const s = $("#status .msg");
  if (!s) return;
  s.textContent = msg;
  s.className = "msg " + kind;
}

async function api(path, body) {
  const r = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
    body: JSON.stringify(body),
    credentials: "same-origin",
  });
  let data = {};
  try { data = await r.json(); } catch (_) { /* empty */ }
  return { ok: r.ok, status: r.status, data };
}

let loading = null;
async function load() {
  if (EXPORTED) { S = window.NBBUILD_STATE; render(); return; }
  if (loading) { loading.again = true; return; }
  loading = { again: false };
  try {
    do {
      loading.again = false;
      const r = await fetch("/api/state", { credentials: "same-origin" });
      S = await r.json();
      render();
    } while (loading.again);
  } catch (e) {
    status("cannot reach nbbuild review: is it still running?", "err");
  } finally {
    loading = null;
  }
}

function tasks() { return S ? S.tasks : []; }
function taskById(id) { return tasks().find((t) => t.id === id); }
function order() {
  const byId = new Map(tasks().map((t) => [t.id, t]));
  return (S.tabs || []).flatMap((tab) => tab.tasks.map((id) => byId.get(id)).filter(Boolean));
}

const STATE_TEXT = {
  fresh: "fresh", stale: "stale", failed: "failed", flagged: "flagged",
  running: "running", in_flight: "in flight", skipped: "skipped", blocked: "blocked",
};

function render() {
  if (!S) return;
  document.title = `${S.flow ? S.flow.name : "nbbuild"} · review`;
  $("#flowname").textContent = S.flow ? `${S.flow.name}` : "nbbuild review";
  $("#flowname").title = S.flow ? S.flow.path : "";
  renderPlan();
  const note = $("#note");
  const notes = [];
  if (S.error) notes.push(S.error);
  if (S.store && S.store.note) notes.push(S.store.note);
  if (S.read_only || EXPORTED) notes.push(EXPORTED ? "static export: read-only" : "read-only");
  note.hidden = notes.length === 0;
  note.textContent = notes.join(" · ");
  note.title = notes.join("\n");
  if (!cur || !taskById(cur)) {
    const first = order().find((t) => t.pickable && !t.pick) || order()[0];
    cur = first ? first.id : null;
    cursor = defaultCursor(first);
  }
  renderInbox();
  renderView();
}

function renderPlan() {
  const p = S.plan;
  const box = $("#plan");
  box.replaceChildren();
  if (!p) return;
  const n = p.stale.length;
  if (n === 0) {
    box.append(el("span", { class: "zero", text: `all ${p.total} tasks fresh: a plain build spends nothing` }));
  } else {
    box.append("plain build: ", el("b", { text: plural(n, "task") }), " · ",
      el("b", { text: `${p.calls.image} image + ${p.calls.video} video` }), " calls · ",
      el("b", { text: `~${money(p.credits, p.unit)}` }));
    box.title = "A plain nbbuild would build:\n" + p.stale.map((s) => `${s.kind} ${s.name}: ${s.reason} (${plural(s.calls, "call")})`).join("\n");
  }
}

function renderInbox() {
  const nav = $("#inbox");
  nav.replaceChildren();
  const byId = new Map(tasks().map((t) => [t.id, t]));
  for (const tab of S.tabs || []) {
    const list = tab.tasks.map((id) => byId.get(id)).filter(Boolean);
    if (!list.length) continue;
    const open = list.filter((t) => t.pickable && !t.pick).length;
    nav.append(el("h3", {}, el("span", { text: tab.name }), el("span", { text: open ? `${open} to pick` : "" })));
    const ul = el("ul");
    for (const t of list) {
      const li = el("li", {
        class: "item" + (t.id === cur ? " current" : ""),
        dataset: { task: t.name, kind: t.kind, id: t.id, state: t.state },
        title: `${t.title}\n${STATE_TEXT[t.state] || t.state}${t.reason ? ": " + t.reason : ""}`,
        onclick: () => select(t.id),
      },
        el("span", { class: "kind", text: t.kind === "video" ? "▶" : "■" }),
        el("div", {}, el("div", { class: "name", text: t.name }), el("div", { class: "title", text: t.title })),
        el("span", { class: "right" },
          el("span", { class: `pill st-${t.state}`, text: STATE_TEXT[t.state] || t.state }),
          el("span", { class: "pickdot " + (!t.pickable ? "none" : t.pick ? "on" : ""), title: t.pick ? "picked" : "no pick yet" })));
      ul.append(li);
    }
    nav.append(ul);
  }
  const c = $(".item.current", nav);
  if (c) c.scrollIntoView({ block: "nearest" });
}

function defaultCursor(t) {
  if (!t || !t.candidates.length) return 1;
  const p = t.candidates.find((c) => c.picked) || t.candidates.find((c) => c.auto_pick) || t.candidates[0];
  return p.k;
}

function select(id) {
  if (id === cur) return;
  cur = id;
  cursor = defaultCursor(taskById(id));
  renderInbox();
  renderView();
}

function renderView() {
  const v = $("#view");
  const t = taskById(cur);
  v.replaceChildren();
  if (!t) {
    v.append(el("div", { class: "empty", text: S.findings && S.findings.length ? "The flow has errors:\n" + S.findings.join("\n") : "No generation task in this flow." }));
    return;
  }
  const byYou = t.candidates.filter((c) => c.flagged && c.qa && c.qa.human).length;
  const byQa = t.candidates.filter((c) => c.flagged && !(c.qa && c.qa.human)).length;
  const reason = t.state === "flagged"
    ? [byYou ? `${byYou} flagged by you` : "", byQa ? `${byQa} flagged by QA` : ""].filter(Boolean).join(", ")
    : t.reason;
  const why = t.state === "fresh" ? "fresh: nothing to build"
    : `${STATE_TEXT[t.state] || t.state}${reason ? ": " + reason : ""}${t.calls ? ` (a plain build: ${plural(t.calls, "call")}, ~${money(t.credits, t.unit)})` : ""}`;
  const head = el("div", { class: "head", dataset: { task: t.name, kind: t.kind, id: t.id } },
    el("div", {},
      el("h1", {}, t.name, el("span", { class: "kindtag", text: t.kind === "video" ? "clip" : "still" })),
      el("div", { class: "sub" }, `${t.tab_name} #${t.node_id} · ${t.title} · `, el("code", { text: t.model }),
        t.key_short ? [" · key ", el("code", { text: t.key_short, title: t.key })] : null,
        t.gates.length ? ` · feeds ${t.gates.map((g) => g.title).join(", ")}` : " · feeds no approve gate"),
      el("div", { class: `why st-${t.state}`, text: why })),
    el("div", { class: "actions" },
      el("button", { dataset: { action: "reroll" }, disabled: !canAct() || !!S.busy, onclick: () => openReroll(), title: "Re-roll at a quoted cost (r)" }, "Re-roll ", el("kbd", { text: "r" }))));
  v.append(head);
  if (t.error) v.append(el("div", { class: "errorbox", text: t.error }));
  if (S.busy) {
    const log = el("div", { class: "log", id: "busylog", text: (S.busy.log || []).slice(-8).join("\n") || "starting…" });
    v.append(el("div", { class: "card" }, el("h4", { text: `re-roll running: ${S.busy.tasks.join(", ")}` }), log));
  }
  if (t.earlier_key && t.candidates.length) {
    v.append(el("div", { class: "muted", style: "margin:-4px 0 10px", text: "These takes were made with earlier inputs: the next plain build replaces them (you can still pick one)." }));
  }
  if (!t.candidates.length) {
    v.append(el("div", { class: "empty", text: t.status === "fresh" ? "No candidates." : "Not built yet: a plain nbbuild builds it." }));
  } else {
    const grid = el("div", { class: "grid", style: `--n:${Math.min(Math.max(t.candidates.length, 3), 4)}` });
    const wide = /16:9|4:3/.test(t.title) ? " wide" : "";
    for (const c of t.candidates) grid.append(candidate(t, c, wide));
    v.append(grid);
    if (t.kind === "video") v.append(scrubber());
  }
  v.append(details(t));
}

function candidate(t, c, wide) {
  const media = t.kind === "video"
    ? el("video", { src: c.src, muted: true, loop: true, playsinline: true, preload: "auto" })
    : el("img", { src: c.src, alt: `${t.name} candidate ${c.k}`, decoding: "async" });
  if (t.kind === "video") media.muted = true;
  const qa = c.qa;
  let qaText = t.kind === "video" ? "clips get no visual QA" : "not reviewed", qaClass = "qa";
  if (qa) {
    const who = qa.human ? "you" : "QA";
    if (qa.verdict === "flagged") { qaText = `flagged by ${who}${qa.tells && qa.tells.length ? ": " + qa.tells.join(", ") : ""}`; qaClass = "qa bad"; }
    else if (qa.verdict === "clean") { qaText = qa.human ? "accepted by you" : `QA clean${qa.confidence != null ? ` (${Math.round(qa.confidence * 100)}%)` : ""}`; qaClass = "qa ok"; }
    else qaText = "QA could not review";
  }
  const badges = el("div", { class: "badges" },
    c.picked ? el("span", { class: "badge pick", text: "PICK" }) : null,
    c.auto_pick && !t.pick ? el("span", { class: "badge auto", text: "auto-pick", title: "what consumers get without a pick" }) : null,
    c.flagged ? el("span", { class: "badge bad", text: "flagged" }) : null);
  const fig = el("figure", {
    class: "cand" + wide + (c.k === cursor ? " cursor" : "") + (c.picked ? " picked" : "") + (c.flagged ? " flagged" : ""),
    dataset: { candidate: String(c.k), object: c.object },
    onmouseenter: () => setCursor(c.k, false),
  },
    el("div", { class: "media", onclick: () => { setCursor(c.k, false); lightbox(c.k); } }, media),
    el("span", { class: "k", text: c.k }),
    badges,
    el("figcaption", {},
      el("div", { class: qaClass, text: qaText, title: qa ? `reviewer: ${qa.reviewer}` : "" }),
      el("div", { class: "btns" },
        t.pickable ? el("button", { dataset: { action: "pick" }, disabled: !canAct() || c.picked, onclick: () => pick(c.k), title: `Pick candidate ${c.k} (${c.k})` }, c.picked ? "Picked" : "Pick ", c.picked ? null : el("kbd", { text: String(c.k) })) : null,
        t.earlier_key ? null : c.flagged
          ? el("button", { dataset: { action: "unflag" }, disabled: !canAct(), onclick: () => flag(c.k, false), title: "Unflag (x): accept it, over automatic QA" }, "Unflag ", el("kbd", { text: "x" }))
          : el("button", { dataset: { action: "flag" }, disabled: !canAct(), onclick: () => flag(c.k, true), title: "Flag (x): the next plain build re-rolls it" }, "Flag ", el("kbd", { text: "x" })))));
  return fig;
}

function scrubber() {
  const range = el("input", { type: "range", min: 0, max: 1000, value: 0, "aria-label": "scrub all clips" });
  const time = el("span", { class: "t", text: "0.0 s" });
  const btn = el("button", { onclick: () => playPause() }, "Play ", el("kbd", { text: "space" }));
  range.addEventListener("input", () => {
    const vids = [...document.querySelectorAll(".cand video")];
    for (const v of vids) if (v.duration) { v.pause(); v.currentTime = (range.value / 1000) * v.duration; }
    btn.firstChild.textContent = "Play ";
  });
  const tick = () => {
    const lead = document.querySelector(".cand video");
    if (!lead || !document.body.contains(range)) return;
    if (lead.duration) {
      range.value = Math.round((lead.currentTime / lead.duration) * 1000);
      time.textContent = `${lead.currentTime.toFixed(1)} / ${lead.duration.toFixed(1)} s`;
      if (!lead.paused) {
        for (const v of document.querySelectorAll(".cand video")) {
          if (v !== lead && v.duration && Math.abs(v.currentTime - lead.currentTime) > 0.08) v.currentTime = lead.currentTime;
        }
      }
    }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
  return el("div", { class: "scrub" }, btn, range, time);
}

function playPause() {
  const vids = [...document.querySelectorAll(".cand video")];
  if (!vids.length) return;
  const playing = vids.some((v) => !v.paused);
  const lead = vids[0];
  for (const v of vids) {
    if (playing) v.pause();
    else { v.currentTime = lead.currentTime; v.play().catch(() => {}); }
  }
  const b = $(".scrub button");
  if (b) b.firstChild.textContent = playing ? "Play " : "Pause ";
}

function details(t) {
  const prompt = el("div", { class: "card prompt" }, el("h4", { text: "Resolved prompt" }), el("pre", { text: t.prompt }));
  const lin = el("div", { class: "card lineage" }, el("h4", { text: t.kind === "video" ? "Starts from" : "Inputs" }));
  if (!t.lineage.from.length) lin.append(el("div", { class: "muted", text: "no image input" }));
  for (const f of t.lineage.from) {
    const thumb = f.src ? el("img", { src: f.src, alt: f.what }) : el("div", { class: "noimg" });
    const txt = f.task ? el("span", { class: "linklike", text: f.text, onclick: () => select(f.task) }) : el("span", { text: f.text });
    lin.append(el("div", { class: "src" }, thumb, el("div", {}, el("div", { class: "what", text: f.what }), el("div", { class: "txt" }, txt))));
  }
  if (t.kind === "image") {
    lin.append(el("h4", { text: "Its pick is consumed by", style: "margin-top:12px" }));
    const cons = t.lineage.consumers.map((id) => taskById(id)).filter(Boolean);
    if (!cons.length) lin.append(el("div", { class: "muted", text: "nothing downstream" }));
    else lin.append(el("div", { class: "consumers" }, cons.map((c) => el("span", { class: "chip", onclick: () => select(c.id), text: `${c.kind === "video" ? "▶" : "■"} ${c.name}` }))));
  }
  if (t.pick) {
    lin.append(el("h4", { text: "Pick", style: "margin-top:12px" }),
      el("div", { class: "txt muted", text: (t.pick.candidate ? `candidate ${t.pick.candidate}: ` : "not one of the current candidates: ") + t.pick.value }));
  }
  const hist = el("div", { class: "card history" }, el("h4", { text: "Earlier takes" }));
  if (!t.history.length) hist.append(el("div", { class: "muted", text: "none: these are the first takes under this key" }));
  for (const h of t.history) {
    const when = new Date(h.replaced).toLocaleString();
    hist.append(el("div", { class: "set" }, el("div", { class: "meta", text: `${h.reason || "replaced"} · ${when}` }),
      el("div", { class: "thumbs" }, h.candidates.map((c) => t.kind === "video"
        ? el("video", { src: c.src, muted: true, preload: "metadata", class: c.flagged ? "flag" : null, title: `c${c.k}`, onclick: (e) => showMedia(c.src, "video") })
        : el("img", { src: c.src, class: c.flagged ? "flag" : null, title: `c${c.k}${c.flagged ? " (flagged)" : ""}`, onclick: () => showMedia(c.src, "image") })))));
  }
  return el("div", { class: "details" }, prompt, el("div", { style: "display:flex;flex-direction:column;gap:14px;min-width:0" }, lin, hist));
}

function setCursor(k, scroll = true) {
  const t = taskById(cur);
  if (!t || !t.candidates.some((c) => c.k === k)) return;
  cursor = k;
  for (const f of document.querySelectorAll(".cand")) f.classList.toggle("cursor", Number(f.dataset.candidate) === k);
  if (scroll) { const f = document.querySelector(`.cand[data-candidate="${k}"]`); if (f) f.scrollIntoView({ block: "nearest" }); }
}

function lightbox(k) {
  const t = taskById(cur);
  const c = t && t.candidates.find((x) => x.k === k);
  if (c) showMedia(c.src, t.kind);
}

function showMedia(src, kind) {
  const lb = $("#lightbox");
  lb.replaceChildren(kind === "video" ? el("video", { src, controls: true, autoplay: true, loop: true, muted: true }) : el("img", { src, alt: "full size" }));
  lb.hidden = false;
  lb.onclick = () => { lb.hidden = true; lb.replaceChildren(); };
}

function move(delta) {
  const o = order();
  const i = o.findIndex((t) => t.id === cur);
  const n = o[Math.min(Math.max(i + delta, 0), o.length - 1)];
  if (n) select(n.id);
}

function nextUnpicked() {
  const o = order();
  const i = o.findIndex((t) => t.id === cur);
  const rest = o.slice(i + 1).concat(o.slice(0, i + 1));
  const n = rest.find((t) => t.pickable && !t.pick && t.candidates.length);
  if (n) select(n.id); else status("every gate has a pick", "ok");
}

async function pick(k) {
  const t = taskById(cur);
  if (!t || !canAct()) return;
  if (!t.pickable) { status(`${t.name} feeds no approve gate: nothing to pick`, "err"); return; }
  setCursor(k);
  status(`picking candidate ${k} of ${t.name}…`);
  const r = await api("/api/pick", { task: t.id, candidate: k, rev: S.flow.rev });
  if (r.ok) {
    const p = r.data.plan;
    status(`picked ${t.name} c${k}. A plain build would now build ${plural(p.stale.length, "task")}: ${p.calls.image} image + ${p.calls.video} video calls, ~${money(p.credits, p.unit)}`, "ok");
    document.body.dataset.lastAction = `pick:${t.id}:${k}`;
  } else {
    status(r.data.error || `pick refused (${r.status})`, "err");
    document.body.dataset.lastAction = `refused:${r.status}`;
  }
  await load();
}

async function flag(k, flagged) {
  const t = taskById(cur);
  if (!t || !canAct()) return;
  const r = await api("/api/flag", { task: t.id, candidate: k, flagged });
  if (r.ok) {
    status(`${flagged ? "flagged" : "unflagged"} ${t.name} c${k}${flagged ? ": the next plain build re-rolls it" : ""}`, "ok");
    document.body.dataset.lastAction = `${flagged ? "flag" : "unflag"}:${t.id}:${k}`;
  } else status(r.data.error || `refused (${r.status})`, "err");
  await load();
}

// ---- re-roll with a quote

let quoteId = null;
let quoteTimer = null;

function openReroll() {
  const t = taskById(cur);
  if (!t || !canAct() || S.busy) return;
  const dlg = $("#reroll");
  $("#reroll-title").textContent = `Re-roll ${t.name} (${t.kind === "video" ? "clip" : "still"})`;
  const ta = $("#reroll-prompt");
  ta.value = t.prompt;
  ta.readOnly = !t.prompt_editable;
  $("#reroll-hint").textContent = t.prompt_editable
    ? "Same prompt, or edit it: the new text is written into the prompt node's text (with a backup) when you confirm."
    : "This prompt comes from a template or dynamic rows: edit it in PatchWork; here it is re-rolled as it is.";
  dlg.hidden = false;
  dlg.dataset.task = t.id;
  $("#reroll-go").focus();
  requestQuote();
}

function closeReroll() { $("#reroll").hidden = true; quoteId = null; }

async function requestQuote() {
  const t = taskById($("#reroll").dataset.task);
  const box = $("#reroll-quote");
  const go = $("#reroll-go");
  go.disabled = true;
  quoteId = null;
  box.textContent = "quoting…";
  const prompt = $("#reroll-prompt").value;
  const r = await api("/api/quote", { task: t.id, prompt: prompt === t.prompt ? null : prompt });
  if ($("#reroll").hidden) return;
  if (!r.ok) { box.textContent = r.data.error || `no quote (${r.status})`; return; }
  showQuote(r.data);
}

function showQuote(q) {
  const box = $("#reroll-quote");
  const go = $("#reroll-go");
  const rows = [];
  rows.push(el("tr", {}, el("td", { class: "sec", colspan: 3, text: "spent now" })));
  for (const s of q.spend.tasks) rows.push(el("tr", {}, el("td", { text: `${s.kind} ${s.name}` }), el("td", { class: "n", text: plural(s.calls, "call") }), el("td", { class: "n", text: money(s.credits, q.unit, true) })));
  rows.push(el("tr", {}, el("td", { class: "sec", colspan: 3, text: "then stale for the next plain build" })));
  if (!q.invalidates.tasks.length) rows.push(el("tr", {}, el("td", { class: "muted", colspan: 3, text: "nothing (no consumer takes this task's candidates)" })));
  for (const s of q.invalidates.tasks) rows.push(el("tr", {}, el("td", { text: `${s.kind} ${s.name}: ${s.reason}` }), el("td", { class: "n", text: plural(s.calls, "call") }), el("td", { class: "n", text: money(s.credits, q.unit, true) })));
  const calls = q.spend.calls.image + q.spend.calls.video;
  rows.push(el("tr", { class: "total" }, el("td", { text: "re-roll now" }), el("td", { class: "n", text: plural(calls, "call") }), el("td", { class: "n", text: money(q.spend.credits, q.unit, true) })));
  rows.push(el("tr", {}, el("td", { class: "muted", text: "with what it invalidates" }), el("td", {}), el("td", { class: "n muted", text: money(q.total_credits, q.unit, true) })));
  box.replaceChildren(el("table", {}, rows));
  box.dataset.quote = q.id;
  box.dataset.calls = String(calls);
  box.dataset.credits = String(q.spend.credits);
  quoteId = q.id;
  go.disabled = false;
}

async function confirmReroll() {
  const t = taskById($("#reroll").dataset.task);
  if (!quoteId || !t) return;
  const prompt = $("#reroll-prompt").value;
  const go = $("#reroll-go");
  go.disabled = true;
  const r = await api("/api/reroll", { task: t.id, prompt: prompt === t.prompt ? null : prompt, quote: quoteId, rev: S.flow.rev });
  if (r.ok) {
    closeReroll();
    status(`re-rolling ${t.name}: candidates appear as they land`);
    document.body.dataset.lastAction = `reroll:${t.id}`;
  } else if (r.data.stale_quote) {
    showQuote(r.data.quote);
    status("the cost changed since the quote: check the new quote and confirm again", "err");
    document.body.dataset.lastAction = "stale-quote";
  } else {
    status(r.data.error || `re-roll refused (${r.status})`, "err");
    if (r.data.reload) { closeReroll(); }
    go.disabled = false;
  }
  await load();
}

$("#reroll-cancel").addEventListener("click", closeReroll);
$("#reroll-go").addEventListener("click", confirmReroll);
$("#reroll-prompt").addEventListener("input", () => {
  clearTimeout(quoteTimer);
  $("#reroll-go").disabled = true;
  quoteTimer = setTimeout(requestQuote, 350);
});
$("#help-btn").addEventListener("click", () => { $("#help").hidden = false; });
$("#help").addEventListener("click", () => { $("#help").hidden = true; });

document.addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey) {
    if (!$("#reroll").hidden && e.key === "Enter") { e.preventDefault(); confirmReroll(); }
    return;
  }
  if (!$("#reroll").hidden) {
    if (e.key === "Escape") { e.preventDefault(); closeReroll(); }
    else if (e.key === "Enter" && document.activeElement !== $("#reroll-prompt")) { e.preventDefault(); confirmReroll(); }
    return;
  }
  if (e.target && /^(INPUT|TEXTAREA|SELECT)$/.test(e.target.tagName) && e.target.type !== "range") return;
  const lb = $("#lightbox"), help = $("#help");
  if (e.key === "Escape") { lb.hidden = true; lb.replaceChildren(); help.hidden = true; return; }
  if (!lb.hidden && e.key !== "z") { lb.hidden = true; lb.replaceChildren(); }
  const t = taskById(cur);
  switch (e.key) {
    case "ArrowDown": case "j": e.preventDefault(); move(1); break;
    case "ArrowUp": case "k": e.preventDefault(); move(-1); break;
    case "ArrowRight": e.preventDefault(); if (t) setCursor(Math.min(cursor + 1, t.candidates.length)); break;
    case "ArrowLeft": e.preventDefault(); if (t) setCursor(Math.max(cursor - 1, 1)); break;
    case "n": nextUnpicked(); break;
    case "x": if (t) { const c = t.candidates.find((c) => c.k === cursor); if (c) flag(c.k, !c.flagged); } break;
    case "z": if (!lb.hidden) { lb.hidden = true; lb.replaceChildren(); } else lightbox(cursor); break;
    case "r": e.preventDefault(); openReroll(); break;
    case " ": e.preventDefault(); playPause(); break;
    case "?": help.hidden = !help.hidden; break;
    default:
      if (/^[1-9]$/.test(e.key) && t) {
        const k = Number(e.key);
        if (!t.candidates.some((c) => c.k === k)) return;
        if (t.pickable && canAct()) pick(k); else setCursor(k);
      }
  }
});

document.getElementById("status").append(
  el("span", { class: "msg" }),
  el("span", { class: "hintkeys" }, el("kbd", { text: "↑↓" }), " tasks  ", el("kbd", { text: "1–4" }), " pick  ", el("kbd", { text: "x" }), " flag  ", el("kbd", { text: "z" }), " zoom  ", el("kbd", { text: "r" }), " re-roll  ", el("kbd", { text: "?" }), " keys"));

if (!EXPORTED) {
  const es = new EventSource("/api/events");
  let t = null;
  const soon = () => { clearTimeout(t); t = setTimeout(load, 120); };
  es.addEventListener("changed", soon);
  es.addEventListener("progress", (ev) => {
    try {
      const line = JSON.parse(ev.data).line;
      const log = $("#busylog");
      if (log) { log.textContent += (log.textContent ? "\n" : "") + line; log.scrollTop = log.scrollHeight; }
    } catch (_) { /* ignore */ }
  });
  es.addEventListener("build", (ev) => {
    try {
      const d = JSON.parse(ev.data);
      status(d.running ? `a build is running (process ${d.pid}): the page follows it live; actions wait until it ends` : "the build ended: refreshed", d.running ? "" : "ok");
    } catch (_) { /* ignore */ }
  });
  es.addEventListener("done", (ev) => {
    try { const d = JSON.parse(ev.data); status(d.message, d.ok ? "ok" : "err"); document.body.dataset.lastAction = d.ok ? "reroll-done" : "reroll-failed"; } catch (_) { /* ignore */ }
    soon();
  });
}
load();
