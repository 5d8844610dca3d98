// Portal behaviour: split sum check, charts, Sign-In with Ethereum, wallet signatures.
// Loaded as a file (the CSP allows no inline script); data comes from JSON script blocks.
"use strict";

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

async function postJSON(url, body) {
  const response = await fetch(url, {
    method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRFToken": csrfToken()},
    body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((data.error && data.error.message) || response.statusText);
  return data;
}

// ---------------------------------------------------------------- split table
function setupSplit() {
  const table = document.getElementById("split-table");
  if (!table) return;
  const output = document.getElementById("split-sum");
  const max = parseInt(table.dataset.max, 10) || 32;
  const update = () => {
    let sum = 0;
    table.querySelectorAll("input.bps").forEach((input) => { sum += parseInt(input.value, 10) || 0; });
    output.textContent = sum.toLocaleString("en-US") + " / 10,000" + (sum === 10000 ? " ✓" : "");
    output.className = sum === 10000 ? "ok" : "bad";
  };
  table.addEventListener("input", update);
  document.getElementById("add-payee").addEventListener("click", () => {
    const rows = table.querySelectorAll("tbody tr.split-row");
    if (rows.length >= max) { output.textContent = "at most " + max + " payees"; return; }
    const copy = rows[rows.length - 1].cloneNode(true);
    const index = rows.length;
    copy.querySelectorAll("input").forEach((input) => {
      input.name = input.name.replace(/payees-\d+-/, "payees-" + index + "-");
      input.id = input.id.replace(/payees-\d+-/, "payees-" + index + "-");
      input.value = "";
      input.removeAttribute("aria-invalid");
    });
    copy.querySelectorAll("small.error").forEach((el) => el.remove());
    rows[rows.length - 1].after(copy);
    update();
  });
  update();
}

// ---------------------------------------------------------------- charts
function setupCharts() {
  const source = document.getElementById("chart-data");
  if (!source || typeof Chart === "undefined") return;
  const data = JSON.parse(source.textContent);
  const timeCanvas = document.getElementById("time-chart");
  let timeChart = null;
  const drawTime = (granularity) => {
    const s = data[granularity];
    if (timeChart) timeChart.destroy();
    timeChart = new Chart(timeCanvas, {
      data: {
        labels: s.labels,
        datasets: [
          {type: "bar", label: "Plays", data: s.plays, yAxisID: "plays"},
          {type: "line", label: "Earnings ($)", data: s.earnings.map(Number), yAxisID: "usd"},
        ],
      },
      options: {animation: false, scales: {plays: {position: "left", beginAtZero: true},
                                           usd: {position: "right", beginAtZero: true, grid: {drawOnChartArea: false}}}},
    });
    timeCanvas.dataset.granularity = granularity;
    document.querySelectorAll(".chart-switch button").forEach((b) => {
      b.classList.toggle("outline", b.dataset.granularity !== granularity);
    });
  };
  if (timeCanvas) {
    drawTime(document.querySelector(".chart-switch") ? "day" : "month");
    document.querySelectorAll(".chart-switch button").forEach((button) => {
      button.addEventListener("click", () => drawTime(button.dataset.granularity));
    });
  }
  const territoryCanvas = document.getElementById("territory-chart");
  if (territoryCanvas) {
    const t = data.territory;
    new Chart(territoryCanvas, {
      type: "bar",
      data: {labels: t.labels, datasets: [{label: "Plays", data: t.plays}]},
      options: {animation: false, indexAxis: "y"},
    });
  }
  document.body.dataset.chartsReady = "1";
}

// ---------------------------------------------------------------- Sign-In with Ethereum (EIP-4361)
function setupSiwe() {
  const button = document.getElementById("siwe-button");
  if (!button) return;
  const status = document.getElementById("siwe-status");
  button.addEventListener("click", async () => {
    if (!window.ethereum) { status.textContent = "No Ethereum wallet found in this browser."; return; }
    try {
      const [address] = await window.ethereum.request({method: "eth_requestAccounts"});
      const chainId = parseInt(await window.ethereum.request({method: "eth_chainId"}), 16);
      const url = button.dataset.nonceUrl + "?address=" + encodeURIComponent(address) + "&chainId=" + chainId;
      const prepared = await (await fetch(url, {credentials: "same-origin"})).json();
      if (!prepared.message) throw new Error((prepared.error && prepared.error.message) || "no message");
      const message = prepared.message;
      const signature = await window.ethereum.request({method: "personal_sign", params: [message, address]});
      const result = await postJSON(button.dataset.verifyUrl, {message, signature});
      window.location.assign(result.redirect);
    } catch (err) {
      status.textContent = "Not signed in: " + err.message;
    }
  });
}

// ---------------------------------------------------------------- wallet-signed gasless actions
function setupActionSigning() {
  document.querySelectorAll("button.sign-action").forEach((button) => {
    button.addEventListener("click", async () => {
      if (!window.ethereum) { button.textContent = "No wallet found"; return; }
      try {
        const typed = await (await fetch(button.dataset.typedUrl, {credentials: "same-origin"})).json();
        const [address] = await window.ethereum.request({method: "eth_requestAccounts"});
        const signature = await window.ethereum.request(
          {method: "eth_signTypedData_v4", params: [address, JSON.stringify(typed)]});
        await postJSON(button.dataset.signatureUrl, {signature});
        window.location.reload();
      } catch (err) {
        button.textContent = "Failed: " + err.message;
      }
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupSplit();
  setupCharts();
  setupSiwe();
  setupActionSigning();
});
