// Shared by the agent and supervisor consoles: sign-in, the API with the bearer token, the console websocket,
// PCM16 playback (16 kHz, scheduled with WebAudio) and microphone capture (the softphone's worklet).
"use strict";

const Hotline = (() => {
  const KEY = "hotline_token";
  let token = sessionStorage.getItem(KEY);

  async function api(path, options = {}) {
    const headers = Object.assign({ "Content-Type": "application/json" }, options.headers || {});
    if (token) headers.Authorization = `Bearer ${token}`;
    const r = await fetch(path, Object.assign({}, options, { headers }));
    if (r.status === 401) { signOutLocal(); throw new Error("signed out"); }
    if (!r.ok) {
      let detail = r.statusText;
      try { detail = (await r.json()).detail || detail; } catch (_) {}
      // A 422 lists its errors ({loc, msg, type}): show their messages.
      if (Array.isArray(detail)) detail = detail.map((e) => (e && e.msg) || JSON.stringify(e)).join("; ");
      throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
    }
    return r;
  }

  async function signIn(name, password) {
    const r = await fetch("/api/auth/login", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name, password }) });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.detail || "sign-in failed");
    token = body.token;
    sessionStorage.setItem(KEY, token);
    return body.user;
  }

  function signOutLocal() { token = null; sessionStorage.removeItem(KEY); }

  async function signOut() {
    try { await api("/api/auth/logout", { method: "POST" }); } catch (_) {}
    signOutLocal();
    location.reload();
  }

  async function me() {
    if (!token) return null;
    try { return await (await api("/api/me")).json(); } catch (_) { return null; }
  }

  // The console websocket, reconnecting by itself with back-off (0.5 s doubling to 10 s, with jitter) when its
  // process goes away: the same URL, so a load balancer sends it to a live process. The session token never goes
  // into a URL: every (re)connection asks for a one-time ticket (valid ~30 s) and opens the websocket with it.
  // Stops for good when the sign-in is refused (1008, no ticket because signed out) or after close().
  // `onOpen(reconnected)` runs on every (re)connection; `onClose(event, final)` on every close.
  function socket(path, onEvent, onAudio, onClose, onOpen) {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    let ws = null, failures = 0, stopped = false, opens = 0;
    const conn = {
      get readyState() { return ws ? ws.readyState : 0; },
      get reconnects() { return Math.max(0, opens - 1); },
      send(data) { if (ws && ws.readyState === 1) ws.send(data); },
      sendJson(obj) { if (ws && ws.readyState === 1) { ws.send(JSON.stringify(obj)); return true; } return false; },
      close(code) { stopped = true; if (ws) ws.close(code); },
    };
    function banner(text) {
      let b = document.getElementById("reconnecting");
      if (!text) { if (b) b.remove(); return; }
      if (!b) {
        b = el("div", { id: "reconnecting", class: "card small", role: "status",
          style: "position:fixed;left:50%;top:12px;transform:translateX(-50%);z-index:10;border-color:#e67e22" });
        document.body.append(b);
      }
      b.textContent = text;
    }
    function retry() {
      const delay = Math.min(10000, 500 * 2 ** failures) * (0.75 + Math.random() * 0.5);
      failures++;
      banner(`Connection lost — reconnecting in ${Math.ceil(delay / 1000)} s…`);
      setTimeout(() => { if (!stopped) open(); }, delay);
    }
    async function ticket() {
      // null: signed out (the ticket is refused); undefined: the service is unreachable (try again later).
      if (!token) return null;
      try {
        return (await (await api("/api/ws-ticket", { method: "POST" })).json()).ticket;
      } catch (_) {
        return token ? undefined : null; // api() forgets the token on a 401: signed out
      }
    }
    async function open() {
      const t = await ticket();
      if (stopped) return;
      if (t === null) { banner(null); if (onClose) onClose({ code: 1008, reason: "signed out" }, true); return; }
      if (t === undefined) { retry(); return; }
      let opened = false;
      ws = new WebSocket(`${proto}://${location.host}${path}?ticket=${encodeURIComponent(t)}`);
      ws.binaryType = "arraybuffer";
      ws.onopen = () => { opened = true; failures = 0; opens++; banner(null); if (onOpen) onOpen(opens > 1); };
      ws.onmessage = (m) => {
        if (typeof m.data === "string") onEvent(JSON.parse(m.data));
        else if (onAudio) onAudio(m.data);
      };
      ws.onclose = async (e) => {
        let final = stopped || e.code === 1008;
        if (!final && !opened && !(await me())) final = true; // refused because the sign-in is gone
        if (onClose) onClose(e, final);
        if (final) { banner(null); return; }
        retry();
      };
    }
    open();
    return conn;
  }

  // Plays 16 kHz PCM16 frames gap-free: each frame is scheduled right after the previous one of its channel.
  class Player {
    constructor() { this.ctx = null; this.cursor = {}; this.frames = 0; }
    ensure() {
      if (!this.ctx) this.ctx = new (window.AudioContext || window.webkitAudioContext)();
      if (this.ctx.state === "suspended") this.ctx.resume();
      return this.ctx;
    }
    play(buffer, channel = 0) {
      const ctx = this.ensure();
      const pcm = new Int16Array(buffer);
      if (!pcm.length) return;
      const audio = ctx.createBuffer(1, pcm.length, 16000);
      const data = audio.getChannelData(0);
      for (let i = 0; i < pcm.length; i++) data[i] = pcm[i] / 32768;
      const src = ctx.createBufferSource();
      src.buffer = audio;
      src.connect(ctx.destination);
      const now = ctx.currentTime;
      let at = this.cursor[channel] || 0;
      if (at < now + 0.05) at = now + 0.08; // fell behind (or first frame): a small jitter buffer
      src.start(at);
      this.cursor[channel] = at + audio.duration;
      this.frames++;
    }
  }

  // Microphone -> 16 kHz PCM16 frames of 20 ms, resampled on the audio thread by the softphone's worklet.
  async function microphone(onFrame, onLevel) {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true } });
    const ctx = new (window.AudioContext || window.webkitAudioContext)();
    await ctx.audioWorklet.addModule("/softphone/capture-worklet.js");
    const source = ctx.createMediaStreamSource(stream);
    const node = new AudioWorkletNode(ctx, "pcm16-capture", { processorOptions: { targetRate: 16000, frameSamples: 320 } });
    node.port.onmessage = (e) => { onFrame(e.data.pcm); if (onLevel) onLevel(e.data.level); };
    source.connect(node);
    return { stop() { stream.getTracks().forEach((t) => t.stop()); node.disconnect(); ctx.close(); } };
  }

  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c.nodeType ? c : document.createTextNode(String(c)));
    return e;
  }

  const LANG = { en: "EN", zh: "中文" };
  function lang(code) {
    const c = (code || "?").split(":").pop();
    return el("span", { class: `lang ${c}`, text: LANG[c] || c.toUpperCase(), "data-language": code || "" });
  }
  function pill(state) { return el("span", { class: `pill ${state || ""}`, text: (state || "—").replace(/_/g, " ") }); }
  function secs(s) {
    if (s === null || s === undefined) return "—";
    s = Math.max(0, Math.round(s));
    return s >= 60 ? `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}` : `${s}s`;
  }
  function topicName(t) { return t ? t.replace(/_/g, " ") : "—"; }

  function transcriptLine(t) {
    const who = t.speaker === "caller" ? "Caller" : t.speaker === "agent" ? `Agent${t.agent ? " " + t.agent : ""}` : "Waibot";
    const meta = el("div", { class: "meta" }, el("b", { text: who }), lang(t.language),
      t.at_s !== undefined ? el("span", { text: `${secs(t.at_s ?? t.at)}` }) : t.at !== undefined ? el("span", { text: secs(t.at) }) : null,
      t.route ? el("span", { text: `· ${t.route}${t.topic ? " / " + topicName(t.topic) : ""}` }) : null);
    return el("div", { class: `msg ${t.speaker}`, "data-language": t.language || "" }, meta, el("div", { class: "text", text: t.text }));
  }

  async function download(path, fallbackName) {
    const r = await api(path);
    const blob = await r.blob();
    const cd = r.headers.get("Content-Disposition") || "";
    const name = (cd.match(/filename="([^"]+)"/) || [])[1] || fallbackName;
    const a = el("a", { href: URL.createObjectURL(blob), download: name });
    document.body.append(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }

  function loginForm(root, title, onDone) {
    const err = el("div", { class: "error" });
    const name = el("input", { type: "text", id: "login-name", placeholder: "User name", autocomplete: "username" });
    const pass = el("input", { type: "password", id: "login-password", placeholder: "Password", autocomplete: "current-password" });
    const form = el("form", { class: "card login", onsubmit: async (e) => {
      e.preventDefault();
      err.textContent = "";
      try { onDone(await signIn(name.value.trim(), pass.value)); } catch (x) { err.textContent = x.message; }
    } },
      el("div", { class: "brand" }, el("span", { class: "logo", text: "W" }), el("span", { text: "Foreign Talent Hotline" })),
      el("h1", { text: title }), name, pass, el("button", { class: "btn primary", type: "submit", id: "login-submit", text: "Sign in" }), err);
    root.replaceChildren(el("div", { class: "login-wrap" }, form));
    name.focus();
  }

  return { api, signIn, signOut, me, socket, Player, microphone, el, lang, pill, secs, topicName, transcriptLine,
    download, loginForm, get token() { return token; } };
})();
