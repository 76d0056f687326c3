// The page of `deepgaze-hub serve`: upload an image, show its overlay, toggle layers, download.
"use strict";

const $ = (id) => document.getElementById(id);
let current = null; // {file, id, seed, fixations, stem}

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
    response = await fetch(`/v1/predict?${params}`, {
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
    showError(body.error ? body.error.message : `HTTP ${response.status}`);
    return;
  }
  const stem = file.name.replace(/\.[^.]*$/, "") || "image";
  current = { file, id: body.id, seed: body.fixations ? body.fixations.seed : 0, stem, kept: Boolean(body.links) };
  $("overlay").src = `data:image/png;base64,${body.overlay_png}`;
  $("caption").textContent = `${file.name}: ${body.width} x ${body.height} pixels, ${body.image_format}, model ${body.model}`;
  $("download-overlay").href = $("overlay").src;
  $("download-overlay").download = `${stem}-overlay.png`;
  $("download-density").hidden = !current.kept;
  if (current.kept) {
    $("download-density").href = body.links.log_density;
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

function redraw() {
  if (!current) return;
  if (!current.kept) {
    predict(current.file); // the service did not keep this large result: ask again
    return;
  }
  const url = overlayUrl();
  $("overlay").src = url;
  $("download-overlay").href = url;
}

function chosen(files) {
  if (files && files.length) predict(files[0]);
}

$("file").addEventListener("change", (event) => chosen(event.target.files));
for (const id of ["show-density", "show-contours", "show-fixations"]) $(id).addEventListener("change", redraw);
$("fixation-count").addEventListener("change", () => current && predict(current.file));

const zone = $("dropzone");
zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("dragging"); });
zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
zone.addEventListener("drop", (event) => {
  event.preventDefault();
  zone.classList.remove("dragging");
  chosen(event.dataTransfer.files);
});
zone.addEventListener("keydown", (event) => { if (event.key === "Enter") $("file").click(); });

fetch("/v1/models").then((r) => r.json()).then((info) => {
  const model = info.models[0];
  $("model-info").textContent = `Model ${model.name}: ${model.config.backbone.name} backbone, ` +
    `${model.num_members} member(s), on ${model.device}.`;
  const limits = info.limits;
  $("limits").textContent = `${limits.image_formats.join(", ")}; up to ${(limits.max_upload_bytes / 2 ** 20).toFixed(0)} MiB ` +
    `and ${(limits.max_pixels / 1e6).toFixed(1)} megapixels.`;
}).catch(() => { $("model-info").textContent = "Model information unavailable."; });
