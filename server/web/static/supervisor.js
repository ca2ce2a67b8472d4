// The supervisor console: live calls (transcript, listen-in), history (filters, search in both languages,
// transcript with the bot's decisions, recording, export) and the dashboard (inline SVG, no library).
"use strict";
(() => {
  const { el, lang, pill, secs, topicName, transcriptLine } = Hotline;
  const $ = (id) => document.getElementById(id);
  const S = { ws: null, watching: null, listening: false, player: new Hotline.Player(), liveCalls: [] };
  window.hotlineSupervisor = S;

  // ------------------------------------------------------------------ live
  function renderLive(calls) {
    S.liveCalls = calls;
    const rows = calls.map((c) => el("tr", { class: `clickable${S.watching === c.call_id ? " selected" : ""}`, "data-call": c.call_id,
      onclick: () => watch(c.call_id) },
      el("td", { class: "small muted", text: c.call_id.slice(0, 8) }), el("td", {}, pill(c.state)), el("td", {}, lang(c.language)),
      el("td", { text: topicName(c.topic) }), el("td", { text: secs(c.waiting_s) }), el("td", { text: c.agent || "—" }),
      el("td", { text: secs(c.duration_s) }), el("td", {}, el("button", { class: "btn", text: "Watch" }))));
    $("live-calls").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { class: "empty", colspan: 8, text: "No calls right now" }))]));
  }
  function renderAgents(agents) {
    const rows = (agents || []).map((a) => el("tr", {}, el("td", { text: a.name }), el("td", {}, ...a.languages.map(lang)),
      el("td", {}, pill(a.state)), el("td", { text: secs(a.since_s) })));
    $("agents").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { class: "empty", colspan: 4, text: "No agents signed in" }))]));
  }
  function watch(callId) {
    S.watching = callId;
    S.ws.sendJson({ type: "watch", call_id: callId });
    $("listen").disabled = false;
    $("watch-hint").textContent = `Following call ${callId.slice(0, 8)} — caller data masked, view audited.`;
    renderLive(S.liveCalls);
  }
  function toggleListen() {
    if (!S.watching) return;
    S.listening = !S.listening;
    S.player.ensure();
    S.ws.sendJson(S.listening ? { type: "listen", call_id: S.watching } : { type: "unlisten" });
    $("listen").textContent = S.listening ? "Stop listening" : "Listen in";
  }
  function onAudio(buf) {
    const bytes = new Uint8Array(buf);
    // One channel byte, then PCM16: copy to an aligned buffer.
    const pcm = bytes.slice(1).buffer;
    S.player.play(pcm, bytes[0]);
  }
  function onEvent(ev) {
    switch (ev.event) {
      case "hello": $("me").replaceChildren(el("b", { text: ev.user.name }), " ", el("span", { class: "muted", text: ev.user.role })); break;
      case "live": renderLive(ev.calls); break;
      case "queue": renderAgents(ev.agents); break;
      case "watching": $("live-transcript").replaceChildren(...ev.transcript.map(transcriptLine)); break;
      case "transcript": if (ev.call_id === S.watching) { const b = $("live-transcript"); b.append(transcriptLine(ev)); b.scrollTop = b.scrollHeight; } break;
      case "decision": if (ev.call_id === S.watching) $("live-transcript").append(el("div", { class: "msg decision", text: `decision: ${ev.route} · ${topicName(ev.topic)}` })); break;
      case "call.ended": if (ev.call_id === S.watching) $("live-transcript").append(el("div", { class: "msg decision", text: `call ended: ${ev.state} (${ev.reason})` })); break;
    }
  }

  // ------------------------------------------------------------------ history
  function query() {
    const p = new URLSearchParams();
    for (const [k, v] of new FormData($("filters")).entries()) if (v) p.set(k, v);
    return p;
  }
  async function search(e) {
    if (e) e.preventDefault();
    const r = await (await Hotline.api(`/api/calls?${query()}`)).json();
    $("result-count").textContent = `${r.total} call${r.total === 1 ? "" : "s"}`;
    const rows = r.items.map((c) => el("tr", { class: "clickable", "data-call": c.call_id, onclick: (ev) => {
        document.querySelectorAll("#results tr").forEach((t) => t.classList.remove("selected"));
        ev.currentTarget.classList.add("selected");
        detail(c.call_id);
      } },
      el("td", { class: "small", text: (c.started_at || "").replace("T", " ").slice(0, 16) }), el("td", {}, lang(c.language)),
      el("td", { text: topicName(c.topic) }), el("td", { text: c.route || "—" }), el("td", {}, pill(c.queue_outcome || c.state)),
      el("td", { text: c.wait_s === null ? "—" : secs(c.wait_s) }), el("td", { text: c.agent || "—" })));
    $("results").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { class: "empty", colspan: 7, text: "No calls match" }))]));
  }
  async function detail(callId) {
    const d = await (await Hotline.api(`/api/calls/${callId}`)).json();
    const c = d.call;
    const facts = el("div", { class: "facts" },
      ...[["Started", (c.started_at || "").replace("T", " ").slice(0, 19)], ["Duration", secs(c.duration_s)], ["Final state", c.state],
        ["Reason", c.reason], ["Queue", c.queue_outcome || "—"], ["Wait", c.wait_s === null ? "—" : secs(c.wait_s)],
        ["Agent", c.agent || "—"], ["Disposition", c.disposition || "—"]]
        .map(([k, v]) => el("div", { class: "fact" }, el("span", { class: "k", text: k }), el("span", { class: "v", text: v ?? "—" }))));
    const audio = el("audio", { controls: true, id: "recording" });
    if (d.recording) {
      Hotline.api(`/api/calls/${callId}/recording`).then((r) => r.blob()).then((b) => { audio.src = URL.createObjectURL(b); }).catch(() => {});
    }
    const turns = d.turns.map(transcriptLine);
    const decisions = d.decisions.filter((x) => x.kind !== "ended").map((x) => el("div", { class: "msg decision",
      text: `${secs(x.at_s)} · ${x.kind}${x.route ? ": " + x.route : ""}${x.topic ? " / " + topicName(x.topic) : ""}${x.reason ? " (" + x.reason + ")" : ""}${x.outcome ? ": " + x.outcome : ""}${x.agent ? " · " + x.agent : ""}` }));
    $("detail").replaceChildren(el("div", { class: "offer-head" }, el("h2", { style: "margin:0", text: `Call ${callId.slice(0, 8)}` }),
        el("span", { class: "spacer" }), lang(c.language)), facts,
      d.recording ? audio : el("p", { class: "muted small", text: "No recording." }),
      c.note ? el("p", { class: "small" }, el("b", { text: "Note: " }), c.note) : null,
      el("div", { class: "transcript", id: "detail-transcript", style: "max-height:52vh" }, ...turns),
      decisions.length ? el("details", { style: "margin-top:10px" }, el("summary", { class: "small muted", text: `Bot decisions and events (${decisions.length})` }), ...decisions) : null);
  }

  // ------------------------------------------------------------------ dashboard (inline SVG)
  const C = { bot: "#0b5cab", esc: "#b7791f", other: "#9aa7b8", bad: "#c0392b" };
  function svg(w, h, children) {
    const s = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    s.setAttribute("viewBox", `0 0 ${w} ${h}`); s.setAttribute("width", "100%");
    s.innerHTML = children; return s;
  }
  const esc = (t) => String(t).replace(/[&<>]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;" }[c]));
  function dayChart(days) {
    const W = 640, H = 220, L = 34, B = 28, n = days.length || 1;
    const top = Math.max(1, ...days.map((d) => d.calls));
    const max = Math.max(4, Math.ceil(top / 4) * 4); // four whole-number gridlines
    const bw = (W - L - 10) / n;
    let out = "";
    for (let i = 0; i <= 4; i++) {
      const y = H - B - (H - B - 10) * i / 4;
      out += `<line x1="${L}" x2="${W}" y1="${y}" y2="${y}" stroke="#eef1f5"/><text x="${L - 6}" y="${y + 4}" font-size="10" text-anchor="end" fill="#6b7788">${Math.round(max * i / 4)}</text>`;
    }
    days.forEach((d, i) => {
      const x = L + i * bw + 3, scale = (H - B - 10) / max;
      const parts = [[d.bot_only, C.bot], [d.escalated, C.esc], [d.calls - d.bot_only - d.escalated, C.other]];
      let y = H - B;
      for (const [v, color] of parts) { if (v > 0) { const h = v * scale; y -= h; out += `<rect x="${x}" y="${y}" width="${bw - 6}" height="${h}" fill="${color}" rx="2"/>`; } }
      if (i % Math.ceil(n / 10) === 0) out += `<text x="${x + (bw - 6) / 2}" y="${H - 10}" font-size="10" text-anchor="middle" fill="#6b7788">${d.day.slice(5)}</text>`;
    });
    return svg(W, H, out);
  }
  function barChart(entries, color) {
    const W = 420, row = 26, H = Math.max(1, entries.length) * row + 6;
    const max = Math.max(1, ...entries.map((e) => e[1]));
    let out = "";
    entries.forEach(([k, v], i) => {
      const y = i * row + 4, w = (W - 170) * v / max;
      out += `<text x="0" y="${y + 15}" font-size="11" fill="#1b2533">${esc(k.replace(/_/g, " ")).slice(0, 24)}</text>` +
        `<rect x="150" y="${y + 3}" width="${Math.max(2, w)}" height="16" rx="3" fill="${color}"/>` +
        `<text x="${156 + w}" y="${y + 15}" font-size="11" fill="#6b7788">${v}</text>`;
    });
    if (!entries.length) out = `<text x="0" y="18" font-size="12" fill="#6b7788">No data</text>`;
    return svg(W, H, out);
  }
  function card(title, body, legend) {
    return el("div", { class: "card" }, el("h2", { text: title }), body, legend || null);
  }
  async function dashboard() {
    const d = await (await Hotline.api("/api/dashboard?days=14")).json();
    const pct = d.bot_only_share === null ? "—" : `${Math.round(d.bot_only_share * 100)}%`;
    const kpi = (k, v) => el("div", { class: "card kpi" }, el("div", { class: "k", text: k }), el("div", { class: "v", text: v }));
    $("kpis").replaceChildren(kpi("Calls (14 days)", d.calls), kpi("Answered by Waibot alone", pct), kpi("Escalations", d.escalations),
      kpi("Average wait", d.wait_avg_s === null ? "—" : secs(d.wait_avg_s)), kpi("95th percentile wait", d.wait_p95_s === null ? "—" : secs(d.wait_p95_s)),
      kpi("Abandoned in queue", d.abandoned));
    const legend = el("div", { class: "legend" }, el("span", {}, el("i", { style: `background:${C.bot}` }), "Waibot alone"),
      el("span", {}, el("i", { style: `background:${C.esc}` }), "Escalated"), el("span", {}, el("i", { style: `background:${C.other}` }), "Other"));
    $("charts").replaceChildren(card("Calls per day", dayChart(d.per_day), legend),
      card("Escalations — why", barChart(Object.entries(d.escalation_reasons), C.esc)),
      card("Calls by language", barChart(Object.entries(d.by_language), C.bot)),
      card("Calls by topic", barChart(Object.entries(d.by_topic), "#3d7fc1")),
      card("Queue outcomes", barChart(Object.entries(d.queue_outcomes), C.other)));
  }

  // ------------------------------------------------------------------ start
  function tab(name, callId) {
    for (const t of ["live", "history", "dashboard", "missed", "knowledge"]) {
      $(t).classList.toggle("hidden", t !== name);
      $(`tab-${t}`).classList.toggle("active", t === name);
    }
    if (name === "history") search();
    if (name === "history" && callId) detail(callId);
    if (name === "dashboard") dashboard();
    if (window.hotlineKnowledge) window.hotlineKnowledge.onTab(name);
  }
  S.show = tab; // knowledge.js: links from missed questions to their calls
  function start(user) {
    $("app").replaceChildren(document.getElementById("console").content.cloneNode(true));
    $("signout").onclick = () => Hotline.signOut();
    document.querySelectorAll(".tab").forEach((b) => { b.onclick = () => tab(b.dataset.tab); });
    $("filters").onsubmit = search;
    if (window.hotlineKnowledge) window.hotlineKnowledge.bind();
    $("listen").onclick = toggleListen;
    $("export-csv").onclick = () => Hotline.download(`/api/calls/export?format=csv&${query()}`, "calls.csv");
    $("export-json").onclick = () => Hotline.download(`/api/calls/export?format=json&${query()}`, "calls.json");
    // Reconnects by itself (console-common.js); on each reconnection the call followed is asked for again.
    S.ws = Hotline.socket("/ws/supervisor", onEvent, onAudio, (e, final) => { if (final) Hotline.signOut(); }, (again) => {
      if (!again || !S.watching) return;
      S.ws.sendJson({ type: "watch", call_id: S.watching });
      if (S.listening) S.ws.sendJson({ type: "listen", call_id: S.watching });
    });
  }
  (async () => {
    const user = await Hotline.me();
    if (user && (user.role === "supervisor" || user.role === "admin")) start(user);
    else Hotline.loginForm($("app"), "Supervisor sign-in", (u) => {
      if (u.role !== "supervisor" && u.role !== "admin") throw new Error("This console is for supervisors. Agents: /agent");
      start(u);
    });
  })();
})();
