// The supervisor console's knowledge side: missed questions (grouped across languages, with links to the calls)
// and the knowledge editor (list, search, edit, add, preview with the voice, publish, history, roll-back).
// From a missed-question group: choose the entry, then "Add as variant" on one of its questions; the group's
// questions are routed again at once and the panel says how many would now be answered, before publishing.
"use strict";
(() => {
  const { el, lang, topicName } = Hotline;
  const $ = (id) => document.getElementById(id);
  const K = { entries: [], topics: [], groups: [], current: null, missedSeq: 0 };
  window.hotlineKnowledge = K;

  const post = (path, body, method = "POST") => Hotline.api(path, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  const json = async (p) => (await p).json();
  const enc = encodeURIComponent;
  function flash(id, text, bad) { const n = $(id); if (n) { n.textContent = text; n.classList.toggle("error", !!bad); } }

  // ------------------------------------------------------------------ missed questions
  async function loadMissed(e) {
    if (e) e.preventDefault();
    const p = new URLSearchParams();
    for (const [k, v] of new FormData($("missed-filters")).entries()) if (v) p.set(k, v);
    if (!K.entries.length) await loadEntries();
    const seq = ++K.missedSeq;
    const r = await json(Hotline.api(`/api/knowledge/missed?${p}`));
    if (seq !== K.missedSeq) return; // a later request is on its way: only the newest answer is shown
    K.groups = r.groups;
    $("missed-count").textContent = `${r.turns} missed question${r.turns === 1 ? "" : "s"} in ${r.groups.length} group${r.groups.length === 1 ? "" : "s"}`;
    $("missed-groups").replaceChildren(...(r.groups.length ? r.groups.map(groupCard) : [el("p", { class: "muted", text: "No missed questions in this period." })]));
  }

  function entrySelect(selected) {
    return el("select", { class: "group-entry" }, ...K.entries.map((x) => {
      const o = el("option", { value: x.id, text: x.id });
      if (x.id === selected) o.selected = true;
      return o;
    }));
  }

  function groupCard(g) {
    const select = entrySelect(g.entry_id);
    const result = el("div", { class: "group-result small" });
    const examples = g.examples.map((x) => el("li", { class: "example", "data-turn": x.turn_id, "data-language": x.language },
      lang(x.language), " ", el("span", { class: "example-text", text: x.text }), " ",
      el("span", { class: "muted small", text: `${x.reason.replace(/_/g, " ")}${x.score === null ? "" : " · " + x.score.toFixed(2)}` }), " ",
      el("a", { href: "#", class: "call-link small", "data-call": x.call_id, text: `call ${x.call_id.slice(0, 8)}`, onclick: (ev) => { ev.preventDefault(); openCall(x.call_id); } }), " ",
      el("button", { class: "btn add-variant", text: "Add as variant", onclick: () => addVariant(g, x, select.value, result) }), " ",
      el("button", { class: "btn ghost new-entry", text: "New entry", onclick: () => newEntry(g, x) })));
    return el("div", { class: "card group", "data-group": g.key },
      el("div", { class: "offer-head" }, el("h2", { style: "margin:0", text: `${g.count} × ${topicName(g.topic)}` }), el("span", { class: "spacer" }),
        ...Object.entries(g.languages).map(([k, v]) => el("span", { class: "small" }, lang(k), ` ${v} `))),
      el("p", { class: "muted small", text: `${g.calls} call(s) · ${Object.entries(g.reasons).map(([k, v]) => `${k.replace(/_/g, " ")} ${v}`).join(", ")}` +
        `${g.score === null ? "" : ` · mean score ${g.score.toFixed(2)}`} · ${g.first_at.slice(0, 10)} – ${g.last_at.slice(0, 10)}` }),
      el("ul", { class: "examples" }, ...examples),
      el("div", { class: "small" }, "Entry for “Add as variant”: ", select), result);
  }

  function openCall(callId) {
    const S = window.hotlineSupervisor;
    if (S && S.show) S.show("history", callId);
  }

  async function addVariant(g, example, entryId, result) {
    try {
      await post(`/api/knowledge/entries/${enc(entryId)}/variants`, { language: example.language === "zh" ? "zh" : "en", text: example.text });
      const r = await json(post("/api/knowledge/preview", { turn_ids: g.turn_ids }));
      result.textContent = `Draft saved in ${entryId}. ${r.group.answered_now} of ${r.group.examples} questions of this group would now be answered (now published: ${r.group.answered_before}). Publish in the Knowledge tab.`;
      result.classList.remove("error");
      result.dataset.answeredNow = r.group.answered_now;
      await loadEntries();
    } catch (x) { result.textContent = x.message; result.classList.add("error"); }
  }

  function newEntry(g, example) {
    const topic = g.topic && g.topic !== "out_of_scope" && g.topic !== "human_agent" ? g.topic : "hotline_info";
    const questions = { en: [], zh: [] };
    questions[example.language === "zh" ? "zh" : "en"].push(example.text);
    edit({ id: `${topic}.new_${Date.now() % 100000}`, topic, isNew: true,
      document: { confidence: "medium", questions, answer: { en: "", zh: "" }, source: [] } });
    show("knowledge");
  }

  // ------------------------------------------------------------------ entries
  async function loadEntries() {
    const p = new URLSearchParams();
    if ($("kb-q") && $("kb-q").value.trim()) p.set("q", $("kb-q").value.trim());
    if ($("kb-overdue") && $("kb-overdue").checked) p.set("overdue", "true");
    const r = await json(Hotline.api(`/api/knowledge/entries?${p}`));
    if (!p.toString()) K.entries = r.items;
    K.topics = r.topics;
    $("kb-status").replaceChildren(el("span", { text: `version ${r.version} (serving ${r.served_version}) · ` }),
      el("span", { id: "kb-drafts", "data-count": r.drafts, text: `${r.drafts} draft${r.drafts === 1 ? "" : "s"}` }), " · ",
      el("span", { id: "kb-overdue-count", class: r.overdue ? "overdue" : "", "data-count": r.overdue, text: `${r.overdue} past review-by` }));
    $("kb-publish").disabled = !r.drafts;
    const rows = r.items.map((x) => el("tr", { class: `clickable${K.current && K.current.id === x.id ? " selected" : ""}`, "data-entry": x.id, onclick: () => edit(x) },
      el("td", { class: "small", text: x.id }), el("td", { text: (x.document.questions.en || [])[0] || "" }),
      el("td", {}, x.draft ? el("span", { class: "pill draft", text: "draft" }) : null, x.overdue ? el("span", { class: "pill overdue", text: "review overdue" }) : null)));
    $("kb-entries").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { class: "empty", colspan: 3, text: "No entries match" }))]));
  }

  const lines = (t) => t.split("\n").map((s) => s.trim()).filter(Boolean);
  function sourcesText(src) { return (src || []).map((s) => typeof s === "string" ? s : `${s.title} | ${s.url}`).join("\n"); }
  function parseSources(t) { return lines(t).map((l) => l.includes("|") ? { title: l.split("|")[0].trim(), url: l.split("|").slice(1).join("|").trim() } : l); }

  function field(label, input) { return el("label", { class: "field wide" }, label, input); }

  function edit(x) {
    K.current = { id: x.id, topic: x.topic, isNew: !!x.isNew };
    const d = x.document;
    const topic = el("select", { id: "kb-topic" }, ...K.topics.map((t) => { const o = el("option", { value: t, text: t }); if (t === x.topic) o.selected = true; return o; }));
    const conf = el("select", { id: "kb-confidence" }, ...["high", "medium", "low"].map((c) => { const o = el("option", { value: c, text: c }); if (c === d.confidence) o.selected = true; return o; }));
    const ta = (id, v, rows = 4) => { const t = el("textarea", { id, rows }); t.value = v || ""; return t; };
    const inp = (id, v, type = "text") => { const i = el("input", { id, type }); i.value = v || ""; return i; };
    $("kb-editor").replaceChildren(
      el("div", { class: "offer-head" }, el("h2", { style: "margin:0", text: x.isNew ? "New entry" : x.id }), el("span", { class: "spacer" }),
        x.draft ? el("span", { class: "pill draft", text: "draft" }) : null, x.overdue ? el("span", { class: "pill overdue", text: "review overdue" }) : null),
      el("div", { class: "filters" }, field("Id", inp("kb-id", x.id)), field("Topic", topic), field("Confidence", conf),
        field("Valid from", inp("kb-valid-from", d.valid_from, "date")), field("Review by", inp("kb-review-by", d.review_by, "date"))),
      field("Questions (English, one per line)", ta("kb-q-en", (d.questions.en || []).join("\n"))),
      field("Questions (中文, one per line)", ta("kb-q-zh", (d.questions.zh || []).join("\n"))),
      field("Answer (English)", ta("kb-a-en", d.answer.en, 3)), el("button", { class: "btn", id: "kb-play-en", type: "button", text: "▶ Play English", onclick: () => play("en") }),
      field("Answer (中文)", ta("kb-a-zh", d.answer.zh, 3)), el("button", { class: "btn", id: "kb-play-zh", type: "button", text: "▶ 播放中文", onclick: () => play("zh") }),
      field("Sources (a key, or “title | https://…”, one per line)", ta("kb-sources", sourcesText(d.source), 2)),
      field("Note", ta("kb-note", d.note, 2)),
      el("audio", { id: "kb-audio", controls: true }),
      el("div", { class: "actions" }, el("button", { class: "btn primary", id: "kb-save", type: "button", text: "Save draft", onclick: save }),
        el("button", { class: "btn", id: "kb-discard", type: "button", text: "Discard draft", onclick: discard })),
      el("div", { class: "small", id: "kb-message" }),
      el("h3", { text: "Preview" }),
      field("Test questions (one per line; routed on the published base plus every draft)", ta("kb-test", (d.questions.en || [])[0] || "", 3)),
      el("button", { class: "btn", id: "kb-preview", type: "button", text: "Preview", onclick: preview }),
      el("div", { id: "kb-preview-results" }),
      el("h3", { text: "History" }), el("div", { id: "kb-history", class: "small" }));
    if (!x.isNew) history(x.id);
    document.querySelectorAll("#kb-entries tr").forEach((t) => t.classList.toggle("selected", t.dataset.entry === x.id));
  }

  function documentFromForm() {
    const doc = { id: $("kb-id").value.trim(), confidence: $("kb-confidence").value,
      questions: { en: lines($("kb-q-en").value), zh: lines($("kb-q-zh").value) },
      answer: { en: $("kb-a-en").value.trim(), zh: $("kb-a-zh").value.trim() }, source: parseSources($("kb-sources").value) };
    if ($("kb-valid-from").value) doc.valid_from = $("kb-valid-from").value;
    if ($("kb-review-by").value) doc.review_by = $("kb-review-by").value;
    if ($("kb-note").value.trim()) doc.note = $("kb-note").value.trim();
    return doc;
  }

  async function save() {
    const doc = documentFromForm();
    try {
      const r = await json(post(`/api/knowledge/entries/${enc(doc.id)}`, { topic: $("kb-topic").value, document: doc, create: K.current.isNew }, "PUT"));
      flash("kb-message", `Draft saved (revision ${r.revision}). Preview, then publish.`);
      K.current = { id: doc.id, topic: r.topic, isNew: false };
      await loadEntries();
      history(doc.id);
    } catch (x) { flash("kb-message", x.message, true); }
  }

  async function discard() {
    if (!K.current || K.current.isNew) return;
    await post(`/api/knowledge/entries/${enc(K.current.id)}/draft`, undefined, "DELETE");
    flash("kb-message", "Draft discarded.");
    await loadEntries();
    const x = K.entries.find((e) => e.id === K.current.id);
    if (x) edit(x);
  }

  async function play(language) {
    const text = $(language === "zh" ? "kb-a-zh" : "kb-a-en").value.trim();
    if (!text) return;
    try {
      const blob = await (await post("/api/knowledge/speech", { text, language })).blob();
      const audio = $("kb-audio");
      audio.src = URL.createObjectURL(blob);
      audio.dataset.played = language;
      await audio.play().catch(() => {});
    } catch (x) { flash("kb-message", x.message, true); }
  }

  async function preview() {
    const questions = lines($("kb-test").value).map((text) => ({ text, language: "auto" }));
    try {
      const r = await json(post("/api/knowledge/preview", { questions }));
      $("kb-preview-results").replaceChildren(...r.decisions.map((d) => el("div", { class: "msg bot preview-result", "data-route": d.route, "data-entry": d.entry_id || "" },
        el("div", { class: "meta" }, el("b", { text: d.text }), lang(d.language), el("span", { text: `· ${d.route} / ${d.entry_id || topicName(d.topic)} (${d.score.toFixed(2)})` }),
          d.before_entry_id !== d.entry_id || d.before_route !== d.route ? el("span", { class: "muted", text: ` · published now: ${d.before_route} / ${d.before_entry_id || "—"}` }) : null),
        el("div", { class: "text", text: d.answer }))));
    } catch (x) { flash("kb-message", x.message, true); }
  }

  async function publish() {
    try {
      const r = await json(post("/api/knowledge/publish"));
      flash("kb-publish-message", r.changed.length ? `Published version ${r.version}: ${r.changed.join(", ")}` : "Nothing to publish.");
      await loadEntries();
      if (K.current && !K.current.isNew) history(K.current.id);
    } catch (x) { flash("kb-publish-message", x.message, true); }
  }

  async function history(entryId) {
    const rows = await json(Hotline.api(`/api/knowledge/entries/${enc(entryId)}/history`));
    const latestPublished = rows.find((r) => !r.draft);
    $("kb-history").replaceChildren(...rows.map((r) => el("div", { class: "revision", "data-revision": r.revision },
      el("b", { text: `#${r.revision}` }), ` ${r.action} by ${r.author} · ${r.created_at.replace("T", " ").slice(0, 16)} · `,
      r.draft ? el("span", { class: "pill draft", text: "draft" }) : el("span", { text: `published v${r.kb_version} by ${r.published_by}` }), " ",
      el("span", { class: "muted", text: `“${(r.document.answer.en || "").slice(0, 60)}…”` }), " ",
      !r.draft && r !== latestPublished ? el("button", { class: "btn rollback", "data-revision": r.revision, text: "Roll back to this", onclick: () => rollback(entryId, r.revision) }) : null)));
  }

  async function rollback(entryId, revision) {
    try {
      const r = await json(post(`/api/knowledge/entries/${enc(entryId)}/rollback`, { revision }));
      flash("kb-publish-message", `Rolled ${entryId} back to revision ${revision}: version ${r.version} is live.`);
      await loadEntries();
      const x = K.entries.find((e) => e.id === entryId);
      if (x) edit(x);
    } catch (x) { flash("kb-publish-message", x.message, true); }
  }

  // ------------------------------------------------------------------ wiring
  function show(name) {
    const S = window.hotlineSupervisor;
    if (S && S.show) S.show(name);
  }
  K.onTab = (name) => {
    if (name === "missed") loadMissed();
    if (name === "knowledge") loadEntries();
  };
  K.bind = () => {
    $("missed-filters").onsubmit = loadMissed;
    $("kb-search").onsubmit = (e) => { e.preventDefault(); loadEntries(); };
    $("kb-new").onclick = () => edit({ id: "hotline_info.new_entry", topic: "hotline_info", isNew: true, document: { confidence: "medium", questions: { en: [], zh: [] }, answer: { en: "", zh: "" }, source: [] } });
    $("kb-publish").onclick = publish;
  };
})();
