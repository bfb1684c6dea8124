// sdr-tosc monitor page: one server-sent-events stream of snapshots; every figure is updated in place.
"use strict";
const CFG = {displayModeBar: false, responsive: true};
const M = {l: 55, r: 50, t: 34, b: 42};
const pct = (x) => (x === null || x === undefined) ? "–" : (100 * x).toFixed(2) + " %";
let snapshots = 0;
window.monitorSnapshots = () => snapshots;
window.monitorLast = null;
window.monitorFramesSeen = [];  // frame counts the page has drawn (the browser test reads it)

function lay(title, xt, yt, extra) {
  return Object.assign({title: {text: title, font: {size: 13}}, margin: M, uirevision: "keep",
    xaxis: {title: {text: xt}}, yaxis: {title: {text: yt}}, legend: {orientation: "h", y: -0.25, font: {size: 10}}}, extra || {});
}

function draw(s) {
  const classes = (s.status && s.status.classes) || null;
  const name = (c) => (c < 0 ? "?" : (classes && classes[c]) || String(c));
  document.getElementById("acc").textContent = pct(s.accuracy);
  document.getElementById("accrx").textContent = pct(s.accuracy_received);
  document.getElementById("loss").textContent = pct(s.frame_loss);
  document.getElementById("frames").textContent = s.frames;
  document.getElementById("sent").textContent = s.sent === null ? "–" : s.sent;
  document.getElementById("source").textContent = (s.status && s.status.source) || "waiting for events…";
  document.getElementById("state").textContent = s.end ? "run finished" : (s.frames ? "running" : "");
  const ser = s.series;
  const lossPct = ser.frame_loss.map((v) => v === null ? null : 100 * v);
  const lossTop = Math.max(5, 1.1 * Math.max(0, ...lossPct.filter((v) => v !== null)));
  Plotly.react("f_acc", [
    {x: ser.frame, y: ser.accuracy.map((v) => v === null ? null : 100 * v), name: "running accuracy (received, %)", mode: "lines"},
    {x: ser.frame, y: lossPct, name: "frames lost (%)", mode: "lines", yaxis: "y2"},
  ], lay("accuracy and frame loss", "images received", "accuracy (%)",
         {yaxis2: {overlaying: "y", side: "right", title: {text: "lost (%)"}, range: [0, lossTop], showgrid: false}}), CFG);
  Plotly.react("f_snr", [
    {x: ser.t_s, y: ser.snr_db, name: "estimated (frame SNR)", mode: "lines+markers", marker: {size: 3}},
    {x: s.truth.t_s, y: s.truth.snr_db, name: "true (channel simulator)", mode: "markers", marker: {size: 6, symbol: "diamond"}},
  ], lay("SNR: estimated vs true", "received stream time (s)", "SNR (dB)"), CFG);
  Plotly.react("f_k", [{x: ser.t_s, y: ser.k, name: "symbols per image", mode: "lines", line: {shape: "hv"}}],
    lay("symbols per image (adaptive)", "received stream time (s)", "complex symbols / image"), CFG);
  const c = s.constellation;
  const key = JSON.stringify([c && c.evm_pct, c && c.snr_db, s.spectrum && s.spectrum.psd_db[0], s.waterfall.length]);
  const sameSlow = key === lastSlowKey;
  lastSlowKey = key;
  const ct = [];
  if (c) {
    if (c.tx) ct.push({x: c.tx[0], y: c.tx[1], name: "transmitted", mode: "markers", marker: {size: 4, color: "#333", symbol: "x"}});
    ct.push({x: c.rx[0], y: c.rx[1], name: "received (equalised)", mode: "markers", marker: {size: 4, opacity: 0.6}});
  }
  const evm = c && c.evm_pct !== null ? ` EVM ${c.evm_pct.toFixed(1)} %` : "";
  const csnr = c && c.snr_db !== null ? ` at ${c.snr_db.toFixed(1)} dB` : "";
  if (!sameSlow) Plotly.react("f_const", ct, lay("constellation" + csnr + evm, "I", "Q",
    {yaxis: {title: {text: "Q"}, scaleanchor: "x"}}), CFG);
  const sp = s.spectrum;
  if (!sameSlow) Plotly.react("f_spec", sp ? [{x: sp.f_khz, y: sp.psd_db, mode: "lines", name: "PSD"}] : [],
    lay("spectrum of the last received " + (sp && sp.burst ? "burst" : "chunk"), "frequency (kHz)", "PSD (dB/Hz)"), CFG);
  if (!sameSlow) Plotly.react("f_wf", sp ? [{z: s.waterfall, x: sp.f_khz, type: "heatmap", colorscale: "Viridis", showscale: false}] : [],
    lay("waterfall (newest at the top)", "frequency (kHz)", "row", {yaxis: {autorange: true, title: {text: "row"}}}), CFG);
  const st = ["encode", "modulate", "air", "demodulate", "decode", "end_to_end"];
  const L = s.latency_ms;
  Plotly.react("f_lat", [
    {x: st, y: st.map((k) => L.p50[k]), type: "bar", name: "p50"},
    {x: st, y: st.map((k) => L.p99[k]), type: "bar", name: "p99"},
  ], lay("latency per image and stage", "", "ms", {barmode: "group", yaxis: {type: "log", title: {text: "ms (log)"}}}), CFG);
  const box = document.getElementById("images");
  box.replaceChildren();
  for (const im of s.images.slice().reverse()) {
    const [h, w, ch] = im.shape;
    const bytes = Uint8Array.from(atob(im.data), (x) => x.charCodeAt(0));
    const cv = document.createElement("canvas");
    cv.width = w; cv.height = h;
    const ctx = cv.getContext("2d");
    const id = ctx.createImageData(w, h);
    for (let i = 0; i < w * h; i++) {
      for (let j = 0; j < 3; j++) id.data[4 * i + j] = bytes[i * ch + (ch === 3 ? j : 0)];
      id.data[4 * i + 3] = 255;
    }
    ctx.putImageData(id, 0, 0);
    const d = document.createElement("div");
    const wrong = im.pred !== im.label;
    d.className = "img" + (wrong ? " wrong" : "");
    d.appendChild(cv);
    d.appendChild(document.createElement("br"));
    d.appendChild(document.createTextNode(`#${im.index} ${name(im.label)}`));
    d.appendChild(document.createElement("br"));
    d.appendChild(document.createTextNode((wrong ? "✗ " : "✓ ") + name(im.pred)));
    box.appendChild(d);
  }
  const rows = [];
  const cnt = (s.status && s.status.counters) || {};
  for (const side of Object.keys(cnt)) for (const [k, v] of Object.entries(cnt[side])) rows.push([`${side} ${k}`, v]);
  rows.push(["events received", s.messages], ["events malformed", s.bad_messages]);
  if (s.status && s.status.events_dropped !== undefined) rows.push(["events dropped at the link", s.status.events_dropped]);
  rows.push(["history kept (frames)", s.history]);
  const tb = document.getElementById("counters");
  tb.replaceChildren();
  for (const [k, v] of rows) {
    const tr = tb.insertRow();
    tr.insertCell().textContent = k;
    tr.insertCell().textContent = String(v);
  }
  const msg = document.getElementById("c_msg");
  if (s.channel) {
    msg.textContent = `now: SNR ${s.channel.snr_db} dB, CFO ${s.channel.cfo_hz} Hz, ${s.channel.multipath}, fading ${s.channel.fading}`;
    if (!controlsLoaded) {
      document.getElementById("c_snr").value = s.channel.snr_db;
      document.getElementById("c_cfo").value = s.channel.cfo_hz;
      document.getElementById("c_mp").value = s.channel.multipath;
      controlsLoaded = true;
    }
  }
  snapshots += 1;
  const seen = window.monitorFramesSeen;
  if (seen.length === 0 || seen[seen.length - 1] !== s.frames) seen.push(s.frames);
  if (seen.length > 1000) seen.shift();
  window.monitorLast = s;
}
let controlsLoaded = false;
let lastSlowKey = null;

document.getElementById("c_apply").addEventListener("click", async () => {
  document.getElementById("c_ans").textContent = "applying…";
  const body = {snr_db: parseFloat(document.getElementById("c_snr").value),
                cfo_hz: parseFloat(document.getElementById("c_cfo").value),
                multipath: document.getElementById("c_mp").value};
  const r = await fetch("/api/channel", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  const j = await r.json();
  document.getElementById("c_ans").textContent = j.ok ? "applied" : "refused: " + j.error;
});

// draw only the newest snapshot, when the previous drawing is done (a slow machine skips, never lags)
let pending = null;
let drawing = false;
function drawPending() {
  if (pending === null) { drawing = false; return; }
  const data = pending;
  pending = null;
  const t0 = performance.now();
  try { draw(JSON.parse(data)); } finally { window.monitorDrawMs = performance.now() - t0; }
  setTimeout(drawPending, 50);
}
const es = new EventSource("/events");
es.onmessage = (e) => {
  pending = e.data;
  if (!drawing) { drawing = true; setTimeout(drawPending, 0); }
};
