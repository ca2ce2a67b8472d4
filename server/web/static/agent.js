// The agent console: availability, queue, offers with the call's context, live audio both ways, typed replies
// spoken by the synthesizer, hand-back, wrap-up. Talks to GET /ws/agent (see server/people/consoles.py).
"use strict";
(() => {
  const { el, lang, pill, secs, topicName, transcriptLine } = Hotline;
  const $ = (id) => document.getElementById(id);
  const state = { ws: null, user: null, offer: null, call: null, mic: null, muted: false, player: new Hotline.Player(),
    timer: null, framesIn: 0, framesOut: 0, wanted: null };
  window.hotlineAgent = state; // for tests and debugging

  function show(id, on) { $(id).classList.toggle("hidden", !on); }
  function idleText() {
    const s = $("state").textContent;
    $("idle-text").innerHTML = s === "available" ? "Waiting for a call in your languages…" :
      "Choose <b>Available</b> to receive calls in your languages.";
  }

  function renderQueue(ev) {
    const rows = ev.queue.map((q) => el("tr", { "data-call": q.call_id },
      el("td", { text: q.position }), el("td", {}, lang(q.language)), el("td", { text: topicName(q.topic) }),
      el("td", { text: secs(q.wait_s) })));
    $("queue").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { class: "empty", colspan: 4, text: "No callers waiting" }))]));
    const tasks = ev.callback_tasks.map((t) => el("tr", {}, el("td", {}, lang(t.language)),
      el("td", { class: "small muted", text: `waited ${secs(t.wait_s)}` }),
      el("td", {}, el("button", { class: "btn", text: "Done", onclick: () => state.ws.sendJson({ type: "complete_callback", task_id: t.task_id }) }))));
    $("callbacks").replaceChildren(...(tasks.length ? tasks : [el("tr", {}, el("td", { class: "empty", text: "No call-backs owed" }))]));
  }

  async function loadHistory() {
    try {
      const r = await (await Hotline.api("/api/agent/calls?limit=8")).json();
      const rows = r.items.map((c) => el("tr", {}, el("td", {}, lang(c.language)), el("td", { text: topicName(c.topic) }),
        el("td", {}, pill(c.queue_outcome)), el("td", { class: "small muted", text: (c.started_at || "").slice(11, 16) })));
      $("history").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { class: "empty", text: "No calls yet" }))]));
    } catch (_) {}
  }

  function fillTranscript(box, lines) {
    box.replaceChildren(...lines.map(transcriptLine));
    box.scrollTop = box.scrollHeight;
  }

  function onOffer(ev) {
    state.offer = ev;
    $("offer-language").replaceChildren(lang(ev.language));
    $("offer-topic").textContent = topicName(ev.topic);
    $("offer-wait").textContent = secs(ev.wait_s);
    fillTranscript($("offer-transcript"), ev.transcript);
    const until = Date.now() + ev.expires_in_s * 1000;
    clearInterval(state.offerTimer);
    state.offerTimer = setInterval(() => { $("offer-countdown").textContent = `rings ${secs((until - Date.now()) / 1000)}`; }, 250);
    show("offer", true); show("idle", false);
  }

  function clearOffer() { state.offer = null; clearInterval(state.offerTimer); show("offer", false); }

  async function onConnected(ev) {
    clearOffer();
    const resumed = ev.resumed && state.call && state.call.call_id === ev.call_id;
    state.call = ev;
    $("call-language").replaceChildren(lang(ev.language));
    $("call-topic").textContent = topicName(ev.topic);
    $("call-wait").textContent = secs(ev.wait_s);
    fillTranscript($("call-transcript"), ev.transcript);
    show("call", true); show("wrapup", false); show("idle", false);
    if (resumed && state.mic) return; // back after a reconnection: the call, its timer and the microphone go on
    const started = Date.now();
    state.timer = setInterval(() => { $("call-timer").textContent = secs((Date.now() - started) / 1000); }, 500);
    state.player.ensure();
    try {
      state.mic = await Hotline.microphone((pcm) => {
        if (!state.muted && state.call && state.ws.readyState === 1) { state.ws.send(pcm); state.framesOut++; }
      }, (level) => { $("mic-level").style.width = `${Math.min(100, level * 300)}%`; });
    } catch (e) {
      $("mic-level").parentElement.replaceWith(el("span", { class: "small muted", text: "no microphone" }));
    }
  }

  function onTranscript(ev) {
    if (!state.call || ev.call_id !== state.call.call_id) return;
    const box = $("call-transcript");
    box.append(transcriptLine(ev));
    box.scrollTop = box.scrollHeight;
  }

  function endCallUi(ev) {
    if (state.mic) { state.mic.stop(); state.mic = null; }
    clearInterval(state.timer);
    state.call = null;
    show("call", false);
    show("wrapup", true);
    loadHistory();
  }

  function onEvent(ev) {
    switch (ev.event) {
      case "hello":
        $("me").replaceChildren(el("b", { text: ev.user.name }), " ", ...ev.user.languages.map(lang));
        // A new process (or the grace period passed): say again what the agent had chosen.
        if (!ev.resumed && state.wanted === "available") state.ws.sendJson({ type: "availability", state: "available" });
        break;
      case "agent.state":
        $("state").replaceWith(Object.assign(pill(ev.state), { id: "state" }));
        if (ev.state === "available" || ev.state === "away") $("availability").value = ev.state;
        if (ev.state === "available") show("wrapup", false);
        idleText();
        show("idle", !state.offer && !state.call && $("wrapup").classList.contains("hidden"));
        break;
      case "agent.set_away": toast(`Set away after ${ev.missed_offers} missed offers`); break;
      case "queue": renderQueue(ev); break;
      case "offer": onOffer(ev); break;
      case "offer.withdrawn": if (state.offer && state.offer.call_id === ev.call_id) clearOffer(); show("idle", !state.call); break;
      case "call.connected": onConnected(ev); break;
      case "transcript": onTranscript(ev); break;
      case "call.ended": if (ev.wrap_up || (state.call && ev.call_id === state.call.call_id)) endCallUi(ev); break;
      case "reply.sent": $("reply").value = ""; $("speak").disabled = false; break;
      case "wrap_up.saved": show("wrapup", false); $("note").value = ""; break;
      case "callback.task": break;
      case "error": toast(ev.message || ev.code); $("speak").disabled = false; break;
      case "session.replaced": toast("Signed in on another console"); break;
    }
  }

  function toast(text) {
    const t = el("div", { class: "card small", style: "position:fixed;right:20px;bottom:20px;z-index:9;border-color:#c0392b", text });
    document.body.append(t);
    setTimeout(() => t.remove(), 5000);
  }

  function connect() {
    state.ws = Hotline.socket("/ws/agent", onEvent, (buf) => { state.framesIn++; state.player.play(buf, 0); },
      (e, final) => { if (final) Hotline.signOut(); });
  }

  function start(user) {
    state.user = user;
    $("app").replaceChildren(document.getElementById("console").content.cloneNode(true));
    $("signout").onclick = () => Hotline.signOut();
    $("availability").onchange = (e) => {
      state.wanted = e.target.value;
      state.ws.sendJson({ type: "availability", state: e.target.value });
    };
    $("accept").onclick = () => { state.player.ensure(); state.ws.sendJson({ type: "accept", call_id: state.offer.call_id }); };
    $("decline").onclick = () => state.ws.sendJson({ type: "decline", call_id: state.offer.call_id });
    $("end").onclick = () => state.call && state.ws.sendJson({ type: "end", call_id: state.call.call_id });
    $("handback").onclick = () => state.call && state.ws.sendJson({ type: "hand_back", call_id: state.call.call_id });
    $("mute").onclick = () => { state.muted = !state.muted; $("mute").textContent = state.muted ? "Unmute microphone" : "Mute microphone"; };
    $("reply-form").onsubmit = (e) => {
      e.preventDefault();
      const text = $("reply").value.trim();
      if (!text || !state.call) return;
      $("speak").disabled = true;
      state.ws.sendJson({ type: "reply", text });
    };
    $("save-wrapup").onclick = () => state.ws.sendJson({ type: "wrap_up", disposition: $("disposition").value, note: $("note").value });
    connect();
    loadHistory();
  }

  (async () => {
    const user = await Hotline.me();
    if (user && user.role === "agent") start(user);
    else Hotline.loginForm($("app"), "Agent sign-in", (u) => {
      if (u.role !== "agent") throw new Error("This console is for agents. Supervisors: /supervisor");
      start(u);
    });
  })();
})();
