// The page of nets/serve.py: a photo goes to POST /predict, and every face found comes back drawn
// on the photo (a box and "age (range) gender") with the answer's JSON below. Plain JavaScript, no
// build step and nothing fetched from elsewhere.
"use strict";

const COLORS = {  // the colours of nets/inference/predict.py draw_predictions, as RGB
  F: "rgb(230, 60, 60)",
  M: "rgb(40, 120, 230)",
  none: "rgb(60, 200, 60)",
  doubtful: "rgb(128, 128, 128)",
};
const LARGEST_CANVAS = 2400;  // pixels on the longer side: a 50 MP photo is drawn on a smaller copy

const $ = (id) => document.getElementById(id);
let latest = null;  // the latest photo's request: an earlier one is cancelled, and its answer not drawn
let camera = null;   // the webcam's stream while it is open

// "34 (28-41) F": the age, its range where the answer has one, the gender, and "?" for a doubtful face.
function labelFor(face) {
  let label = String(Math.round(face.age));
  if (face.age_low != null && face.age_high != null) {
    label += ` (${Math.round(face.age_low)}-${Math.round(face.age_high)})`;
  }
  if (face.gender) label += ` ${face.gender}`;
  if (face.warning) label += " ?";
  return label;
}

function colorFor(face) {
  if (face.warning) return COLORS.doubtful;
  return COLORS[face.gender] || COLORS.none;
}

function say(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

// Draws the photo and, on every face, its box and label. Box coordinates are in the pixels the server
// decoded (answer.width x answer.height); the photo may be shown at another size.
function drawAnswer(photo, answer) {
  const canvas = $("canvas");
  const fit = Math.min(1, LARGEST_CANVAS / Math.max(photo.width, photo.height));
  canvas.width = Math.round(photo.width * fit);
  canvas.height = Math.round(photo.height * fit);
  $("result").hidden = false;  // shown first: its displayed width sets the size of lines and text
  const ctx = canvas.getContext("2d");
  ctx.drawImage(photo, 0, 0, canvas.width, canvas.height);

  const toCanvas = canvas.width / answer.width;
  const perScreenPixel = canvas.width / Math.max(1, canvas.clientWidth);  // canvas pixels per CSS pixel
  const line = Math.max(3, 2.5 * perScreenPixel);
  ctx.textBaseline = "top";

  const list = $("faces");
  list.replaceChildren();
  for (const face of answer.faces) {
    const [x1, y1, x2, y2] = face.box.map((v) => v * toCanvas);
    const color = colorFor(face);
    const label = labelFor(face);
    ctx.strokeStyle = color;
    ctx.lineWidth = line;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);

    // 12 to 16 px on the screen, however the photo is scaled: smaller on small faces
    const screenFont = Math.min(16, Math.max(12, (x2 - x1) / perScreenPixel / 4));
    const fontSize = Math.round(screenFont * perScreenPixel);
    ctx.font = `bold ${fontSize}px system-ui, sans-serif`;
    const pad = Math.round(fontSize * 0.25);
    const width = ctx.measureText(label).width + 2 * pad;
    const height = fontSize + 2 * pad;
    // above the box, else below it, else inside its top: never over the face where there is room
    const above = y1 - line / 2 - height;
    const below = y2 + line / 2;
    const top = above >= 0 ? above : below + height <= canvas.height ? below : y1 + line / 2;
    const left = Math.min(Math.max(0, x1 - line / 2), canvas.width - width);
    ctx.fillStyle = color;
    ctx.fillRect(left, top, width, height);
    ctx.fillStyle = "#fff";
    ctx.fillText(label, left + pad, top + pad);

    list.append(faceItem(face, label, color));
  }
  canvas.dataset.faces = String(answer.faces.length);  // for tests and scripts: drawing is done
}

function faceItem(face, label, color) {
  const item = document.createElement("li");
  item.className = "face";
  item.dataset.age = String(face.age);
  const swatch = document.createElement("span");
  swatch.className = "swatch";
  swatch.style.background = color;
  const text = document.createElement("span");
  text.className = "face-label";
  text.textContent = label;
  item.append(swatch, text);
  const details = [];
  if (face.gender) details.push(`${face.gender === "F" ? "female" : "male"} ${face.gender_prob.toFixed(2)}`);
  if (face.warning) details.push(`doubtful: ${face.warning}`);
  if (details.length) item.append(` ${details.join(", ")}`);
  return item;
}

// Indented JSON with every list of numbers on one line (a face's box, landmarks and distribution).
function readableJson(value) {
  return JSON.stringify(value, null, 2).replace(/\[\s+([-\d.e+,\s]+?)\s+\]/g,
    (_, numbers) => `[${numbers.split(/,\s*/).join(", ")}]`);
}

function showJson(answer) {
  $("json").textContent = readableJson(answer);
  $("answer").hidden = false;
}

async function readAnswer(response) {
  try {
    return await response.json();
  } catch {
    return { detail: `the server answered ${response.status} ${response.statusText} without JSON` };
  }
}

async function onPhoto(blob, name) {
  if (latest) latest.abort();
  const request = new AbortController();
  latest = request;
  const started = performance.now();
  say(`Looking for faces in ${name}…`);
  const form = new FormData();
  form.append("image", blob, name);
  // decoded while the server works; EXIF orientation applied, as the server does
  const decoding = createImageBitmap(blob).catch(() => null);
  let response, answer;
  try {
    response = await fetch("/predict", { method: "POST", body: form, signal: request.signal });
    answer = await readAnswer(response);
  } catch (error) {
    if (error.name !== "AbortError") say(`The server cannot be reached (${error.message}).`, true);
    return;
  }
  if (latest !== request) return;
  showJson(answer);
  if (!response.ok) {
    $("result").hidden = true;
    say(`${response.status}: ${answer.detail}`, true);
    return;
  }
  const photo = await decoding;
  if (latest !== request) return;
  if (!photo) {
    $("result").hidden = true;
    say(`${answer.faces.length} face(s) found, but this browser cannot show the photo; see the JSON below.`);
    return;
  }
  drawAnswer(photo, answer);
  const seconds = ((performance.now() - started) / 1000).toFixed(2);
  const count = answer.faces.length;
  say(count ? `${count} face${count > 1 ? "s" : ""} found in ${seconds} s.` : `No face found in this photo (${seconds} s).`);
}

function firstImage(files) {
  return Array.from(files || []).find((file) => file.type.startsWith("image/")) || (files && files[0]);
}

function setUpDropping() {
  const drop = $("drop");
  $("file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) onPhoto(file, file.name);
    event.target.value = "";  // the same file chosen again is sent again
  });
  // The whole page takes a dropped photo; the box lights up while one is dragged over it.
  document.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  document.addEventListener("dragleave", (event) => {
    if (!event.relatedTarget) drop.classList.remove("over");
  });
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = firstImage(event.dataTransfer.files);
    if (file) onPhoto(file, file.name);
  });
  document.addEventListener("paste", (event) => {
    const file = firstImage(event.clipboardData && event.clipboardData.files);
    if (file) onPhoto(file, file.name || "pasted image");
  });
}

function closeCamera() {
  if (camera) camera.getTracks().forEach((track) => track.stop());
  camera = null;
  $("webcam").hidden = true;
}

function setUpWebcam() {
  // Browsers give the camera to secure pages only (https, or this server on localhost).
  if (!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia)) return;
  $("camera").hidden = false;
  $("camera").addEventListener("click", async () => {
    try {
      camera = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "user" }, audio: false });
    } catch (error) {
      say(`The webcam cannot be opened (${error.name}: ${error.message}).`, true);
      return;
    }
    $("video").srcObject = camera;
    $("webcam").hidden = false;
  });
  $("close-camera").addEventListener("click", closeCamera);
  $("snap").addEventListener("click", () => {
    const video = $("video");
    if (!video.videoWidth) return;  // no frame yet
    const frame = document.createElement("canvas");
    frame.width = video.videoWidth;
    frame.height = video.videoHeight;
    frame.getContext("2d").drawImage(video, 0, 0);
    frame.toBlob((blob) => onPhoto(blob, "webcam.jpg"), "image/jpeg", 0.92);
  });
}

async function showModel() {
  try {
    const model = await (await fetch("/model")).json();
    const mae = model.card && model.card.validation_mae;
    $("model").textContent = `Model ${model.name}` + (mae ? `, ${mae.toFixed(2)} years mean error on its validation faces.` : ".");
  } catch {
    // the model's line is a courtesy; the page works without it
  }
}

// For tests and the browser's console.
window.C3AE = { labelFor, colorFor, drawAnswer, onPhoto };

setUpDropping();
setUpWebcam();
showModel();
