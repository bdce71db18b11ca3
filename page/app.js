// Draws on #pad and sends the picture (or a chosen or dropped photo) to POST /predict?images=1; shows the answer,
// each digit's ten probabilities and the 28x28 images the model saw. All reading is done by the server.
const pad = document.getElementById("pad");
const pen = pad.getContext("2d");
const answer = document.getElementById("answer");
const status = document.getElementById("status");
const digits = document.getElementById("digits");

function clearPad() {
  pen.fillStyle = "#fff";
  pen.fillRect(0, 0, pad.width, pad.height);
  answer.textContent = "-";
  status.textContent = "";
  digits.replaceChildren();
}

function show(result) {
  digits.replaceChildren();
  if (result.error) {
    answer.textContent = "?";
    status.textContent = result.error;
    return;
  }
  answer.textContent = result.number;
  status.textContent = "";
  result.digits.forEach((digit, i) => {
    const row = document.createElement("div");
    row.className = "digit";
    const seen = document.createElement("img");
    seen.src = result.seen[i];
    seen.alt = `the 28x28 image the model read as ${digit.digit}`;
    const bars = document.createElement("div");
    bars.className = "bars";
    digit.probabilities.forEach((p, d) => {
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.innerHTML = `<span style="width:${(100 * p).toFixed(1)}%"></span>`;
      bars.append(Object.assign(document.createElement("b"), {textContent: d}), bar,
                  Object.assign(document.createElement("span"), {textContent: `${(100 * p).toFixed(1)}%`}));
    });
    row.append(seen, bars);
    digits.append(row);
  });
}

async function send(blob) {
  status.textContent = "reading...";
  try {
    const response = await fetch("/predict?images=1", {method: "POST", body: blob});
    show(await response.json());
  } catch (error) {
    status.textContent = `the server did not answer (${error})`;
  }
}

let last = null;  // the previous point of the stroke being drawn
pad.addEventListener("pointerdown", (event) => {
  pad.setPointerCapture(event.pointerId);
  last = [event.offsetX, event.offsetY];
});
pad.addEventListener("pointermove", (event) => {
  if (!last) return;
  pen.lineWidth = 18;
  pen.lineCap = pen.lineJoin = "round";
  pen.strokeStyle = "#000";
  pen.beginPath();
  pen.moveTo(...last);
  pen.lineTo(event.offsetX, event.offsetY);
  pen.stroke();
  last = [event.offsetX, event.offsetY];
});
function endStroke() {
  if (!last) return;
  last = null;
  pad.toBlob(send, "image/png");  // a stroke ended: read what is drawn so far
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

document.getElementById("clear").addEventListener("click", clearPad);
document.getElementById("file").addEventListener("change", (event) => {
  if (event.target.files.length) send(event.target.files[0]);
});
const drop = document.getElementById("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  if (event.dataTransfer.files.length) send(event.dataTransfer.files[0]);
});
clearPad();
