// The browser softphone: one call over the native protocol (GET /ws/call).
//   microphone -> AudioWorklet (resample to 16 kHz PCM16, 20 ms frames) -> binary websocket frames
//   binary frames from the server (16 kHz PCM16) -> AudioBuffers scheduled back to back (gapless)
//   JSON events -> status line and transcript (partials in grey, finals with their language, answers with route/topic)

const RATE = 16000;
const FRAME_SAMPLES = 320; // 20 ms
const JITTER_S = 0.06; // cushion before the first frame of a stretch, so network jitter does not cause gaps

const $ = (id) => document.getElementById(id);
const ui = {
  status: $("status"), statusText: $("status-text"), timer: $("timer"), call: $("call"), hangup: $("hangup"),
  mute: $("mute"), language: $("language"), transcript: $("transcript"), empty: $("empty"), level: $("level"),
  callId: $("call-id"), sent: $("sent"), heard: $("heard"), keys: $("keys"),
};

const LANG_NAMES = { en: "EN", zh: "中文", unknown: "?" };
const ROUTE_NAMES = { answer: "Answer · 解答", clarify: "Clarify · 澄清", agent: "Agent · 转人工" };
const END_REASONS = {
  hangup: "You hung up · 您已挂断", goodbye: "Goodbye · 再见", no_input: "No input · 无应答",
  transferred: "Transferred · 已转接", error: "Error · 错误",
};

const CLOSE_REASONS = {
  1003: "Audio format refused · 音频格式不支持", 1008: "Closed by the service · 服务端关闭",
  1009: "Message too large · 消息过大", 1011: "Service error · 服务错误",
  1013: "Service is starting, try again shortly · 服务启动中，请稍后再试",
};

// Exposed for the headless tests (Playwright reads it); nothing here is secret.
const stats = { framesSent: 0, framesReceived: 0, events: [], state: "idle", callId: null };
window.hotline = stats;

let call = null; // the current call's resources, null when idle

function setStatus(state, text) {
  stats.state = state;
  ui.status.dataset.state = state;
  ui.statusText.textContent = text;
}

function languageLabel(code) {
  if (!code) return "?";
  const base = String(code).replace(/^other:/, "");
  return LANG_NAMES[base] || base.toUpperCase();
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function chip(text, cls) { return el("span", `chip ${cls || ""}`.trim(), text); }

function append(node) {
  if (ui.empty) { ui.empty.remove(); ui.empty = null; }
  ui.transcript.appendChild(node);
  ui.transcript.scrollTop = ui.transcript.scrollHeight;
  return node;
}

function systemLine(text, isError) { return append(el("p", isError ? "system error" : "system", text)); }

function message(role, whoText) {
  const node = el("div", `msg ${role}`);
  const who = el("div", "who");
  who.appendChild(el("span", "name", whoText));
  node.appendChild(who);
  node.appendChild(el("div", "text"));
  return node;
}

// ------------------------------------------------------------------ transcript

function onPartial(ev) {
  let node = call.partial;
  if (!node) {
    node = call.partial = append(message("caller partial", "You · 您 …"));
  }
  const text = node.querySelector(".text");
  text.textContent = ev.text || "";
  if (ev.unstable) {
    text.appendChild(document.createTextNode(" "));
    text.appendChild(el("span", "unstable", ev.unstable));
  }
  ui.transcript.scrollTop = ui.transcript.scrollHeight;
}

function onFinal(ev) {
  const node = call.partial || append(message("caller", "You · 您"));
  call.partial = null;
  node.className = "msg caller final";
  // An unserved language arrives as "other" with its own code (ja, ru ...): show the code, never hide it.
  const lang = ev.language === "other" && ev.language_code ? ev.language_code : ev.language;
  node.dataset.language = lang || "unknown";
  const who = node.querySelector(".who");
  who.querySelector(".name").textContent = "You · 您";
  const prob = typeof ev.language_probability === "number" ? ` ${Math.round(ev.language_probability * 100)}%` : "";
  who.appendChild(chip(`${languageLabel(lang)}${prob}`, "lang"));
  if (ev.mixed) who.appendChild(chip("mixed · 夹杂英文"));
  node.querySelector(".text").textContent = ev.text || "(no words · 无内容)";
}

function botMessage(text, language) {
  const node = append(message("bot", "Waibot"));
  node.dataset.language = language || "";
  node.querySelector(".who").appendChild(chip(languageLabel(language), "lang"));
  node.querySelector(".text").textContent = text || "";
  return node;
}

function onAnswer(ev) {
  const node = botMessage(ev.text, ev.language);
  node.dataset.route = ev.route || "";
  node.dataset.topic = ev.topic || "";
  const who = node.querySelector(".who");
  if (ev.route) who.appendChild(chip(ROUTE_NAMES[ev.route] || ev.route, `route-${ev.route}`));
  if (ev.topic) who.appendChild(chip(ev.topic, "topic"));
  call.lastBot = { node, text: ev.text || "", spoken: false };
}

function onAudioStart(ev) {
  const last = call.lastBot;
  let node;
  if (last && !last.spoken && (!ev.text || ev.text === last.text)) {
    node = last.node; // the answer we already show is now being spoken
  } else {
    node = botMessage(ev.text, ev.language); // a prompt: greeting, please-hold, goodbye ...
    node.classList.add("prompt");
  }
  call.lastBot = { node, text: ev.text || "", spoken: true };
  call.speakingNode = node;
  node.classList.add("speaking");
  setStatus("speaking", "Waibot speaking · 正在播报");
}

function stopSpeakingUi(interrupted) {
  if (call.speakingNode) {
    call.speakingNode.classList.remove("speaking");
    if (interrupted) call.speakingNode.classList.add("interrupted");
    call.speakingNode = null;
  }
  if (stats.state === "speaking") setStatus("in-call", "In call · 通话中");
}

// ------------------------------------------------------------------ audio out

function playFrame(buffer) {
  if (!call.ctx || buffer.byteLength < 2 || buffer.byteLength % 2) return;
  const pcm = new Int16Array(buffer);
  const audio = call.ctx.createBuffer(1, pcm.length, RATE); // WebAudio resamples 16 kHz to the device rate
  const channel = audio.getChannelData(0);
  for (let i = 0; i < pcm.length; i++) channel[i] = pcm[i] / 32768;
  const source = call.ctx.createBufferSource();
  source.buffer = audio;
  source.connect(call.ctx.destination);
  const now = call.ctx.currentTime;
  if (call.playHead < now + 0.01) call.playHead = now + JITTER_S; // a new stretch (or we ran dry)
  source.start(call.playHead);
  call.playHead += audio.duration;
  call.sources.add(source);
  source.onended = () => call && call.sources.delete(source);
}

function clearPlayback() {
  // Barge-in: stop what is playing and drop what is queued, at once.
  for (const source of call.sources) {
    try { source.stop(); } catch (_) { /* already stopped */ }
  }
  call.sources.clear();
  call.playHead = 0;
}

// ------------------------------------------------------------------ audio in

function onCaptured({ pcm, level }) {
  ui.level.style.width = `${Math.min(100, Math.round(level * 140))}%`;
  const ws = call && call.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN || !call.started) return;
  // Muted still sends frames (of silence): the line stays alive and the server's clock keeps running.
  ws.send(call.muted ? new ArrayBuffer(FRAME_SAMPLES * 2) : pcm);
  stats.framesSent += 1;
  if (stats.framesSent % 10 === 0) ui.sent.textContent = stats.framesSent;
}

// ------------------------------------------------------------------ call lifecycle

function send(event) {
  if (call && call.ws && call.ws.readyState === WebSocket.OPEN) call.ws.send(JSON.stringify(event));
}

function onEvent(ev) {
  stats.events.push(ev.event);
  switch (ev.event) {
    case "call.started":
      stats.callId = ev.call_id || null;
      ui.callId.textContent = ev.call_id || "—";
      setStatus("in-call", "In call · 通话中");
      systemLine(`Connected · 已接通${ev.languages ? ` (${ev.languages.map(languageLabel).join(" / ")})` : ""}`);
      startTimer();
      break;
    case "transcript.partial": onPartial(ev); break;
    case "transcript.final": onFinal(ev); break;
    case "answer": onAnswer(ev); break;
    case "audio.start": onAudioStart(ev); break;
    case "audio.end": {
      // The server has sent the whole stretch; the speaking mark goes when it has actually played out.
      // Each stretch un-highlights itself when played out, even if the next one has started arriving meanwhile.
      const wait = Math.max(0, (call.playHead - call.ctx.currentTime) * 1000);
      const node = call.speakingNode;
      setTimeout(() => {
        if (node) node.classList.remove("speaking");
        if (call && call.speakingNode === node) stopSpeakingUi(false);
      }, wait);
      break;
    }
    case "audio.clear": clearPlayback(); stopSpeakingUi(true); break;
    case "call.ended":
      call.endedReason = ev.reason || "ended";
      break;
    case "error":
      systemLine(`Error · 错误: ${ev.code || ""} ${ev.message || ""}`.trim(), true);
      break;
    default:
      break; // unknown events are ignored: newer servers may send more
  }
}

async function startCall() {
  if (call) return;
  ui.call.disabled = true;
  setStatus("connecting", "Connecting · 正在连接…");
  call = {
    ws: null, ctx: null, stream: null, node: null, started: false, muted: false, sources: new Set(), playHead: 0,
    partial: null, lastBot: null, speakingNode: null, endedReason: null, timer: null, t0: 0,
  };
  try {
    call.ctx = new AudioContext({ latencyHint: "interactive" });
    await call.ctx.resume();
    await call.ctx.audioWorklet.addModule("/softphone/capture-worklet.js");
    call.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
  } catch (err) {
    const denied = err && err.name === "NotAllowedError";
    finish(denied ? "Microphone blocked · 麦克风被拒绝" : `Audio unavailable · 音频不可用 (${err && err.name})`, true);
    return;
  }
  const source = call.ctx.createMediaStreamSource(call.stream);
  call.node = new AudioWorkletNode(call.ctx, "pcm16-capture", {
    processorOptions: { targetRate: RATE, frameSamples: FRAME_SAMPLES },
  });
  call.node.port.onmessage = (e) => onCaptured(e.data);
  const sink = call.ctx.createGain(); // a silent sink keeps the worklet pulled by the render graph
  sink.gain.value = 0;
  source.connect(call.node).connect(sink).connect(call.ctx.destination);

  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/ws/call`);
  ws.binaryType = "arraybuffer";
  call.ws = ws;
  ws.onopen = () => {
    const start = { event: "call.start", sample_rate: RATE };
    if (ui.language.value) start.language = ui.language.value;
    ws.send(JSON.stringify(start));
    call.started = true;
    ui.hangup.disabled = false;
    ui.mute.disabled = false;
    for (const key of ui.keys.querySelectorAll("button")) key.disabled = false;
  };
  ws.onmessage = (e) => {
    if (typeof e.data === "string") {
      let ev;
      try { ev = JSON.parse(e.data); } catch (_) { return; }
      // Events are named by "event" (server/call/transports/native.py); "type" is accepted as an alias.
      if (ev && typeof ev.event !== "string" && typeof ev.type === "string") ev.event = ev.type;
      if (ev && typeof ev.event === "string") onEvent(ev);
    } else {
      stats.framesReceived += 1;
      if (stats.framesReceived % 10 === 1) ui.heard.textContent = stats.framesReceived;
      playFrame(e.data);
    }
  };
  ws.onclose = (e) => {
    const reason = call && call.endedReason;
    if (reason) finish(`Call ended · 通话结束: ${END_REASONS[reason] || reason}`, false);
    else if (e.code === 1000 || e.code === 1001) finish("Call ended · 通话结束", false);
    else finish(`${CLOSE_REASONS[e.code] || "Connection lost · 连接中断"} (${e.code})`, true);
  };
}

function hangUp() {
  if (!call || !call.ws) return;
  ui.hangup.disabled = true;
  send({ event: "hangup" });
  clearPlayback();
  // The server answers with call.ended and closes; if it does not within 2 s, close from our side.
  const ws = call.ws;
  setTimeout(() => { if (ws.readyState === WebSocket.OPEN) ws.close(1000, "hangup"); }, 2000);
}

function finish(text, isError) {
  if (!call) return;
  const ending = call;
  call.started = false;
  systemLine(text, isError);
  setStatus(isError ? "error" : "ended", isError ? "Not connected · 未连接" : "Call ended · 通话结束");
  clearInterval(ending.timer);
  if (ending.stream) for (const track of ending.stream.getTracks()) track.stop();
  if (ending.node) ending.node.port.onmessage = null;
  // Let a goodbye that is still queued play out before the audio context closes.
  const tail = ending.ctx ? Math.max(0, ending.playHead - ending.ctx.currentTime) : 0;
  setTimeout(() => { if (ending.ctx) ending.ctx.close().catch(() => {}); }, tail * 1000 + 100);
  call = null;
  ui.level.style.width = "0";
  ui.call.disabled = false;
  ui.hangup.disabled = true;
  ui.mute.disabled = true;
  ui.mute.setAttribute("aria-pressed", "false");
  for (const key of ui.keys.querySelectorAll("button")) key.disabled = true;
}

function startTimer() {
  call.t0 = performance.now();
  const tick = () => {
    const s = Math.floor((performance.now() - call.t0) / 1000);
    ui.timer.textContent = `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
  };
  tick();
  call.timer = setInterval(() => call && tick(), 500);
}

ui.call.addEventListener("click", startCall);
ui.hangup.addEventListener("click", hangUp);
ui.mute.addEventListener("click", () => {
  if (!call) return;
  call.muted = !call.muted;
  ui.mute.setAttribute("aria-pressed", String(call.muted));
  ui.mute.textContent = call.muted ? "Unmute · 取消静音" : "Mute · 静音";
});
ui.keys.addEventListener("click", (e) => {
  const digit = e.target && e.target.dataset && e.target.dataset.digit;
  if (digit && call) send({ event: "dtmf", digit });
});
for (const key of ui.keys.querySelectorAll("button")) key.disabled = true;
window.addEventListener("beforeunload", () => { if (call) send({ event: "hangup" }); });
