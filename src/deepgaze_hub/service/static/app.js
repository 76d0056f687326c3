// The page of `deepgaze-hub serve`: upload an image, show its overlay, toggle layers, download.
// When the service has a token, the page asks for it (kept in sessionStorage, for this tab only)
// and sends it as "Authorization: Bearer <token>"; images and downloads are then fetched with it.
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "deepgaze-hub-token";
let current = null; // {file, id, seed, stem, kept}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function authHeaders() {
  return token() ? { Authorization: `Bearer ${token()}` } : {};
}

function askForToken(message) {
  $("access").hidden = false;
  $("token").focus();
  showError(message);
}

// fetch() with the token; a 401 shows the token field.
async function call(url, options = {}) {
  const response = await fetch(url, { ...options, headers: { ...(options.headers || {}), ...authHeaders() } });
  if (response.status === 401) {
    askForToken(token() ? "The access token was not accepted; enter the right one." :
      "This service needs an access token; enter it above.");
  }
  return response;
}

// A URL the page can show or download: the API URL itself without a token, a blob: URL with one
// (an <img> or a link cannot send the Authorization header).
async function usableUrl(url, previous) {
  if (!token()) return url;
  const response = await call(url);
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  if (previous && previous.startsWith("blob:")) URL.revokeObjectURL(previous);
  return URL.createObjectURL(await response.blob());
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function options() {
  return {
    show_density: $("show-density").checked,
    show_contours: $("show-contours").checked,
    show_fixations: $("show-fixations").checked,
    fixations: Math.max(0, parseInt($("fixation-count").value, 10) || 0),
  };
}

function overlayUrl() {
  const o = options();
  const params = new URLSearchParams({
    show_density: o.show_density,
    show_contours: o.show_contours,
    fixations: o.show_fixations ? o.fixations : 0,
    seed: current.seed,
  });
  return `/v1/predictions/${current.id}/overlay.png?${params}`;
}

function fixationsCsv(fixations) {
  const rows = fixations.x.map((x, i) => `${x},${fixations.y[i]}`);
  return new Blob([["x,y", ...rows].join("\n") + "\n"], { type: "text/csv" });
}

async function predict(file) {
  showError("");
  $("status").textContent = `Predicting ${file.name}…`;
  const o = options();
  const params = new URLSearchParams({ ...o, log_density: false, overlay: true });
  let response, body;
  try {
    response = await call(`/v1/predict?${params}`, {
      method: "POST",
      body: file,
      headers: { "Content-Type": file.type || "application/octet-stream" },
    });
    body = await response.json();
  } catch (error) {
    $("status").textContent = "";
    showError(`The service did not answer (${error}).`);
    return;
  }
  $("status").textContent = "";
  if (!response.ok) {
    if (response.status !== 401) showError(body.error ? body.error.message : `HTTP ${response.status}`);
    return;
  }
  await show(file, body);
}

async function show(file, body) {
  const stem = file.name.replace(/\.[^.]*$/, "") || "image";
  current = { file, id: body.id, seed: body.fixations ? body.fixations.seed : 0, stem, kept: Boolean(body.links) };
  $("overlay").src = `data:image/png;base64,${body.overlay_png}`;
  const scaled = body.scaling ? ` Scale: ${body.scaling.text}.` : "";
  $("caption").textContent = `${file.name}: ${body.width} x ${body.height} pixels, ${body.image_format}, model ${body.model}.${scaled}`;
  $("download-overlay").href = $("overlay").src;
  $("download-overlay").download = `${stem}-overlay.png`;
  $("download-density").hidden = !current.kept;
  if (current.kept) {
    try {
      $("download-density").href = await usableUrl(body.links.log_density, $("download-density").href);
    } catch (error) {
      $("download-density").hidden = true;
    }
    $("download-density").download = `${stem}-log-density.npy`;
  }
  const csv = $("download-fixations");
  if (csv.href.startsWith("blob:")) URL.revokeObjectURL(csv.href);
  csv.hidden = !body.fixations;
  if (body.fixations) {
    csv.href = URL.createObjectURL(fixationsCsv(body.fixations));
    csv.download = `${stem}-fixations.csv`;
  }
  $("result").hidden = false;
}

async function redraw() {
  if (!current) return;
  if (!current.kept) {
    predict(current.file); // the service did not keep this large result: ask again
    return;
  }
  try {
    const url = await usableUrl(overlayUrl(), $("overlay").src);
    $("overlay").src = url;
    $("download-overlay").href = url;
  } catch (error) {
    showError(`The overlay could not be redrawn (${error.message}).`);
  }
}

function chosen(files) {
  if (files && files.length) predict(files[0]);
}

async function loadModelInfo() {
  try {
    const response = await call("/v1/models");
    if (!response.ok) {
      $("model-info").textContent = "Model information unavailable.";
      return;
    }
    const info = await response.json();
    const model = info.models[0];
    $("model-info").textContent = `Model ${model.name}: ${model.config.backbone.name} backbone, ` +
      `${model.num_members} member(s), on ${model.device}.`;
    const limits = info.limits;
    $("limits").textContent = `${limits.image_formats.join(", ")}; up to ${(limits.max_upload_bytes / 2 ** 20).toFixed(0)} MiB ` +
      `and ${(limits.max_pixels / 1e6).toFixed(1)} megapixels. Larger photos are shrunk to the model's ` +
      `working size${limits.full_size ? " (this service predicts at full size)" : ""}; the density comes back at the photo's size.`;
    showError("");
  } catch (error) {
    $("model-info").textContent = "Model information unavailable.";
  }
}

$("file").addEventListener("change", (event) => chosen(event.target.files));
for (const id of ["show-density", "show-contours", "show-fixations"]) $(id).addEventListener("change", redraw);
$("fixation-count").addEventListener("change", () => current && predict(current.file));
$("token").value = token();
$("access").hidden = !token();
$("token").addEventListener("change", () => {
  const value = $("token").value.trim();
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
  loadModelInfo();
});

const zone = $("dropzone");
zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("dragging"); });
zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
zone.addEventListener("drop", (event) => {
  event.preventDefault();
  zone.classList.remove("dragging");
  chosen(event.dataTransfer.files);
});
zone.addEventListener("keydown", (event) => { if (event.key === "Enter") $("file").click(); });

loadModelInfo();
