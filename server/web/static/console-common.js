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

  // The session token never goes into a URL: the page asks for a one-time ticket (valid ~30 s) and opens the
  // websocket with it. The returned object is usable at once; it sends nothing until the socket is open.
  function socket(path, onEvent, onAudio, onClose) {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const holder = {
      ws: null,
      get readyState() { return this.ws ? this.ws.readyState : 0; },
      send(data) { if (this.ws && this.ws.readyState === 1) this.ws.send(data); },
      sendJson(obj) { return this.readyState === 1 && this.ws.send(JSON.stringify(obj)); },
      close(code) { if (this.ws) this.ws.close(code); },
    };
    api("/api/ws-ticket", { method: "POST" }).then((r) => r.json()).then((body) => {
      const ws = new WebSocket(`${proto}://${location.host}${path}?ticket=${encodeURIComponent(body.ticket)}`);
      ws.binaryType = "arraybuffer";
      ws.onmessage = (m) => {
        if (typeof m.data === "string") onEvent(JSON.parse(m.data));
        else if (onAudio) onAudio(m.data);
      };
      ws.onclose = (e) => onClose && onClose(e);
      holder.ws = ws;
    }).catch(() => onClose && onClose({ code: 1008, reason: "no ticket" }));
    return holder;
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
