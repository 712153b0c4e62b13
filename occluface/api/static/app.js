// occluface web page: plain JavaScript over the REST API, no build step.
"use strict";

const $ = (id) => document.getElementById(id);

document.querySelectorAll("nav button").forEach((btn) =>
  btn.addEventListener("click", () => {
    document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("active", b === btn));
    document.querySelectorAll("section").forEach((s) => s.classList.toggle("active", s.id === btn.dataset.tab));
    if (btn.dataset.tab === "enroll") loadSubjects();
  })
);

function setStatus(id, text, isError) {
  const el = $(id);
  el.textContent = text;
  el.className = "status" + (isError ? " error" : "");
}

// ---------------------------------------------------------------- the API key
// One key for the whole page, kept in this tab's sessionStorage only (gone when the tab closes, never in a URL
// or a cookie) and sent in the X-API-Key header of every call.
const KEY_SLOT = "occluface-api-key";

function apiKey() { return sessionStorage.getItem(KEY_SLOT) || ""; }

function showKeyState() {
  $("key-state").textContent = apiKey() ? "key in use (this tab)" : "no key";
}

$("key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const key = $("api-key").value.trim();
  if (key) sessionStorage.setItem(KEY_SLOT, key); else sessionStorage.removeItem(KEY_SLOT);
  $("api-key").value = "";
  showKeyState();
});
$("key-forget").addEventListener("click", () => { sessionStorage.removeItem(KEY_SLOT); $("api-key").value = ""; showKeyState(); });
showKeyState();

function withKey(options) {
  const opts = Object.assign({}, options || {});
  opts.headers = Object.assign({}, opts.headers || {});
  const key = apiKey();
  if (key) opts.headers["X-API-Key"] = key;
  return opts;
}

// The name rule of the server (gallery.store.validate_name): NFC, trimmed, not empty, at most 128 characters,
// every character printable (no control, format, private-use, unassigned or separator characters but the space).
const MAX_NAME_LENGTH = 128;
const UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}]|(?! )\p{Zs}/u;

function checkName(raw) {
  const name = raw.normalize("NFC").trim();
  if (!name) return { error: "subject name is empty" };
  const length = [...name].length;
  if (length > MAX_NAME_LENGTH) return { error: `subject name is ${length} characters long; at most ${MAX_NAME_LENGTH} are allowed` };
  if (UNPRINTABLE.test(name)) return { error: "subject name contains control characters or other unprintable characters (tabs, line breaks, direction marks, ...)" };
  return { name };
}

async function callApi(url, options) {
  const resp = await fetch(url, withKey(options));
  let body = null;
  try { body = await resp.json(); } catch (e) { body = { error: resp.statusText }; }
  if (!resp.ok) {
    let message = body && body.error ? body.error : "request failed (" + resp.status + ")";
    if (resp.status === 401) message += ": enter an API key at the top of the page";
    if (resp.status === 429) message += ` (try again in ${resp.headers.get("Retry-After") || "a few"} s)`;
    throw new Error(message);
  }
  return body;
}

function wireDrop(dropId, inputId, onFile) {
  const drop = $(dropId), input = $(inputId);
  drop.addEventListener("click", () => input.click());
  input.addEventListener("change", () => input.files.length && onFile(input.files[0]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault(); drop.classList.remove("over");
    if (e.dataTransfer.files.length) onFile(e.dataTransfer.files[0]);
  });
}

function drawBoxes(canvasId, file, boxes) {
  // boxes: [{box:[x1,y1,x2,y2], text, ok}]
  const img = new Image();
  img.onload = () => {
    const canvas = $(canvasId);
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const scale = Math.max(img.naturalWidth, img.naturalHeight) / 800;
    ctx.lineWidth = Math.max(2, 3 * scale);
    ctx.font = `${Math.max(12, Math.round(18 * scale))}px sans-serif`;
    boxes.forEach((b) => {
      const [x1, y1, x2, y2] = b.box;
      const colour = b.ok ? "#1e9e3e" : "#d62d2d";
      ctx.strokeStyle = colour; ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      const h = Math.max(16, 22 * scale), w = ctx.measureText(b.text).width + 8;
      const ty = y1 - h >= 0 ? y1 - h : y2;
      ctx.fillStyle = colour; ctx.fillRect(x1, ty, w, h);
      ctx.fillStyle = "#fff"; ctx.fillText(b.text, x1 + 4, ty + h - 5);
    });
    URL.revokeObjectURL(img.src);
  };
  img.src = URL.createObjectURL(file);
}

// ---------------------------------------------------------------- identify
wireDrop("identify-drop", "identify-file", async (file) => {
  setStatus("identify-status", "Looking for faces…");
  const tbody = $("identify-results").querySelector("tbody");
  tbody.innerHTML = "";
  const form = new FormData(); form.append("file", file);
  try {
    const res = await callApi("/api/identify", { method: "POST", body: form });
    setStatus("identify-status", `${res.faces.length} face(s) found (threshold ${res.threshold.toFixed(3)})`);
    res.faces.forEach((f, i) => {
      const tr = document.createElement("tr");
      const next = f.candidates.slice(1, 3).map((c) => `${c.name} ${c.similarity.toFixed(2)}`).join(", ");
      tr.innerHTML = `<td>${i + 1}</td><td class="${f.name ? "known" : "unknown"}"></td><td>${f.similarity.toFixed(3)}</td><td></td><td></td>`;
      tr.children[1].textContent = f.label;
      tr.children[3].textContent = f.mask ? `${f.mask.label} ${f.mask.prob.toFixed(2)}` : "-";
      tr.children[4].textContent = next;
      tbody.appendChild(tr);
    });
    drawBoxes("identify-canvas", file, res.faces.map((f) => ({ box: f.box, text: `${f.label} ${f.similarity.toFixed(2)}`, ok: !!f.name })));
  } catch (e) { setStatus("identify-status", e.message, true); }
});

// ------------------------------------------------------------------ enrol
async function loadSubjects() {
  const tbody = $("subjects").querySelector("tbody");
  try {
    const res = await callApi("/api/subjects");
    tbody.innerHTML = "";
    res.subjects.forEach((s) => {
      const tr = document.createElement("tr");
      tr.innerHTML = "<td></td><td></td><td></td>";
      tr.children[0].textContent = s.name; tr.children[1].textContent = s.embeddings; tr.children[2].textContent = s.created;
      tbody.appendChild(tr);
    });
  } catch (e) { setStatus("enroll-status", e.message, true); }
}

$("enroll-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const checked = checkName($("enroll-name").value);
  if (checked.error) { setStatus("enroll-status", checked.error, true); return; }
  const form = new FormData();
  form.append("name", checked.name);
  for (const f of $("enroll-files").files) form.append("files", f);
  setStatus("enroll-status", "Enrolling…");
  try {
    const res = await callApi("/api/subjects", { method: "POST", body: form });
    setStatus("enroll-status", `Enrolled ${res.name} from ${res.images} photo(s).`);
    loadSubjects();
  } catch (e) { setStatus("enroll-status", e.message, true); }
});

// --------------------------------------------------------------- roll-call
wireDrop("rollcall-drop", "rollcall-file", async (file) => {
  setStatus("rollcall-status", "Running the roll-call…");
  $("rollcall-lists").innerHTML = "";
  const form = new FormData();
  form.append("file", file);
  form.append("roster", $("rollcall-roster").value);
  try {
    const res = await callApi("/api/rollcall", { method: "POST", body: form });
    setStatus("rollcall-status", `${res.faces.length} face(s); ${res.present.length} present, ${res.absent.length} absent, ${res.unresolved.length} to check.`);
    const lists = $("rollcall-lists");
    [["present", res.present], ["absent", res.absent], ["unresolved", res.unresolved]].forEach(([title, names]) => {
      const p = document.createElement("p");
      p.id = "rollcall-" + title;
      p.innerHTML = `<b>${title}:</b> `;
      names.forEach((n) => { const s = document.createElement("span"); s.textContent = n; p.appendChild(s); });
      lists.appendChild(p);
    });
    drawBoxes("rollcall-canvas", file, res.faces.filter((f) => f.box).map((f) => ({
      box: f.box, ok: f.status === "present",
      text: `${f.identity || (f.candidate ? f.candidate + "?" : "?")} ${f.confidence.toFixed(2)}`,
    })));
  } catch (e) { setStatus("rollcall-status", e.message, true); }
});

// -------------------------------------------------------------- mask check
wireDrop("maskcheck-drop", "maskcheck-file", async (file) => {
  setStatus("maskcheck-status", "Checking masks…");
  const tbody = $("maskcheck-results").querySelector("tbody");
  tbody.innerHTML = "";
  $("maskcheck-cam").removeAttribute("src");
  const form = new FormData(); form.append("file", file); form.append("cam", "true");
  try {
    const res = await callApi("/api/mask-check", { method: "POST", body: form });
    const masked = res.faces.filter((f) => f.label === "masked" || f.label === "correct").length;
    setStatus("maskcheck-status", `${res.faces.length} face(s), ${masked} wearing a mask`);
    res.faces.forEach((f, i) => {
      const tr = document.createElement("tr");
      tr.innerHTML = "<td></td><td></td><td></td>";
      tr.children[0].textContent = i + 1; tr.children[1].textContent = f.label; tr.children[2].textContent = f.prob.toFixed(3);
      tbody.appendChild(tr);
    });
    if (res.cam_png) $("maskcheck-cam").src = "data:image/png;base64," + res.cam_png;
  } catch (e) { setStatus("maskcheck-status", e.message, true); }
});

callApi("/api/health").then((h) => { $("health").textContent = `model ${h.model} · detector ${h.detector}`; }).catch(() => {});

// ---------------------------------------------------------------- check-ins: followed live (server-sent events)
let checkinsAbort = null, previewTimer = null;

async function refreshPreview() {
  // the camera's latest annotated frame, fetched with the key in a header (an <img src> could not send it)
  const img = $("checkins-preview"), camera = encodeURIComponent($("checkins-camera").value.trim() || "camera-1");
  try {
    const resp = await fetch(`/api/cameras/${camera}/preview.jpg`, withKey());
    if (!resp.ok) { img.style.display = "none"; return; }
    const old = img.src;
    img.src = URL.createObjectURL(await resp.blob());
    img.style.display = "block";
    if (old.startsWith("blob:")) URL.revokeObjectURL(old);
  } catch (e) { img.style.display = "none"; }
}

function addCheckinRow(c) {
  const tr = document.createElement("tr");
  const cells = [c.time.replace("T", " ").slice(0, 19), c.camera, c.name || "unknown person",
                 c.similarity.toFixed(3), c.mask || "", String(c.frames)];
  cells.forEach((text) => { const td = document.createElement("td"); td.textContent = text; tr.appendChild(td); });
  if (!c.name) tr.style.color = "#b45309";
  $("checkins-table").querySelector("tbody").prepend(tr);
}

async function followCheckins() {
  if (checkinsAbort) checkinsAbort.abort();
  checkinsAbort = new AbortController();
  if (previewTimer) clearInterval(previewTimer);
  previewTimer = setInterval(refreshPreview, 1000);
  refreshPreview();
  $("checkins-table").querySelector("tbody").innerHTML = "";
  setStatus("checkins-status", "connecting...");
  try {
    // fetch (not EventSource) so the key travels in a header, never in a URL
    const resp = await fetch("/api/checkins/stream?after_id=0", withKey({ signal: checkinsAbort.signal }));
    if (!resp.ok) {
      let body = {}; try { body = await resp.json(); } catch (e) { /* not JSON */ }
      throw new Error(body.error || "request failed (" + resp.status + ")");
    }
    setStatus("checkins-status", "following: new check-ins appear here as they are stored");
    const reader = resp.body.getReader(), decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
        block.split("\n").filter((l) => l.startsWith("data: ")).forEach((l) => addCheckinRow(JSON.parse(l.slice(6))));
      }
    }
    setStatus("checkins-status", "the server closed the stream", true);
  } catch (e) {
    if (e.name !== "AbortError") setStatus("checkins-status", e.message, true);
  }
}

$("checkins-follow").addEventListener("click", followCheckins);
